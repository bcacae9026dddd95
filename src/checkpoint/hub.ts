/**
 * Model references and the Hugging Face hub: `hf:OWNER/REPO[/PATH][@REVISION]` is downloaded into a local cache
 * (`<cache>/hf/<owner>/<repo>/<revision>/…`); anything else is a local path; no reference means the default
 * model, stories260K, found in $GENEPRUNE_MODELS, the cache, or the hub, in that order.
 *
 * Downloads land in a temp file beside their target and are renamed into place only once complete, so the cache
 * never holds a file that looks complete but is not. Files already cached are not fetched again, and optional
 * files the hub answered 404 for are remembered, so a second resolve makes no requests at all.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { type FileHandle, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join, posix, resolve } from 'node:path';
import { fileError, flagError, GenepruneError } from '../errors.js';
import { makeDirectory, removeStaleTemps, writeTextAtomic } from '../util/fs.js';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';

export interface HfModelRef {
  owner: string;
  repo: string;
  /** A file or folder inside the repository, `/`-separated. */
  path?: string;
  revision: string;
}

export type ModelRef = ({ kind: 'hf' } & HfModelRef) | { kind: 'local'; path: string };

/** The default model: llama2.c's stories260K with its 512-token tokenizer. */
export const DEFAULT_MODEL = {
  name: 'stories260K',
  owner: 'karpathy',
  repo: 'tinyllamas',
  revision: 'main',
  folder: 'stories260K',
  file: 'stories260K.bin',
  tokenizer: 'tok512.bin',
  sha256: 'b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696',
} as const;

const NAME_PART = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const REVISION = /^[A-Za-z0-9._/-]+$/;

function checkRelativePath(path: string, what: string, fail: (msg: string) => Error): void {
  const parts = path.split('/');
  if (path.startsWith('/') || path.includes('\\') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw fail(`${what} "${path}" must be a relative path without empty, "." or ".." parts`);
  }
}

/** Parse `hf:OWNER/REPO[/PATH][@REVISION]`; anything else is a local path. */
export function parseModelRef(ref: string): ModelRef {
  if (!ref.startsWith('hf:')) return { kind: 'local', path: ref };
  const bad = (why: string) =>
    flagError('--model', `bad model reference "${ref}": ${why} (expected hf:OWNER/REPO[/PATH][@REVISION])`);
  let body = ref.slice(3);
  let revision = 'main';
  const at = body.lastIndexOf('@');
  if (at >= 0) {
    revision = body.slice(at + 1);
    body = body.slice(0, at);
    if (!REVISION.test(revision) || revision.split('/').some((p) => p === '' || p === '.' || p === '..')) {
      throw bad(`revision "${revision}" is not valid`);
    }
  }
  body = body.replace(/\/+$/, '');
  const [owner, repo, ...rest] = body.split('/');
  if (!owner || !repo) throw bad('it needs both an owner and a repository');
  if (!NAME_PART.test(owner) || !NAME_PART.test(repo))
    throw bad('owner and repository may hold only letters, digits, ".", "_" and "-"');
  const path = rest.length > 0 ? rest.join('/') : undefined;
  if (path !== undefined) checkRelativePath(path, 'path', bad);
  return { kind: 'hf', owner, repo, path, revision };
}

/** The cache root: $GENEPRUNE_CACHE, else $XDG_CACHE_HOME/geneprune, else ~/.cache/geneprune. */
export function cacheDir(): string {
  const own = process.env.GENEPRUNE_CACHE;
  if (own) return resolve(own);
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg) return resolve(xdg, 'geneprune');
  return join(homedir(), '.cache', 'geneprune');
}

/** Where a repository revision is cached. Revisions like `refs/pr/1` become one folder name. */
export function hfCacheDir(ref: HfModelRef): string {
  return join(cacheDir(), 'hf', ref.owner, ref.repo, ref.revision.replaceAll('/', '--'));
}

export type ProgressFn = (file: string, bytesDone: number, bytesTotal: number) => void;

export interface DownloadOptions {
  /** Hub address; default $HF_ENDPOINT, else https://huggingface.co. */
  endpoint?: string;
  fetchImpl?: typeof fetch;
  /** Called as bytes arrive; bytesTotal is NaN when the server does not say. */
  onProgress?: ProgressFn;
  /** More optional files to fetch beside the model (e.g. `tok512.bin` beside a llama2.c .bin). */
  extraFiles?: string[];
}

function describeCause(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code) return cause.code;
  if (cause?.message) return cause.message;
  return (err as Error)?.message ?? String(err);
}

function networkError(url: string, reason: string, cause?: unknown): GenepruneError {
  return new GenepruneError(
    'network',
    `could not download the model: ${reason}; use a local path with --model instead, or set GENEPRUNE_MODELS ` +
      'to a folder that holds the model',
    url,
    { cause },
  );
}

function httpError(url: string, status: number, statusText: string): GenepruneError {
  let why = `HTTP ${status} ${statusText}`.trim();
  if (status === 401 || status === 403) {
    why += process.env.HF_TOKEN
      ? ': access denied even with HF_TOKEN (does the token have access to this repository?)'
      : ': access denied (a private or gated repository? set HF_TOKEN to a token that can read it)';
  } else if (status === 404) {
    why += ': not found (check the owner/repo, the path inside it and the revision)';
  }
  return new GenepruneError('network', why, url);
}

/** Optional files the hub answered 404 for, per cached revision, so later runs need no network. */
const ABSENT_LIST = '.geneprune-absent.json';

async function readAbsent(root: string): Promise<Set<string>> {
  try {
    const parsed: unknown = JSON.parse(await readFile(join(root, ABSENT_LIST), 'utf8'));
    return new Set(Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : []);
  } catch {
    return new Set();
  }
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

interface Fetcher {
  /** Ensure a repository file is in the cache; false when optional and absent on the hub. */
  get(file: string, required: boolean): Promise<boolean>;
  localPath(file: string): string;
}

function hubFetcher(ref: HfModelRef, opts: DownloadOptions): Fetcher {
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_HF_ENDPOINT).replace(/\/+$/, '');
  const fetchImpl = opts.fetchImpl ?? fetch;
  const root = hfCacheDir(ref);
  const localPath = (file: string) => join(root, ...file.split('/'));
  let absent: Set<string> | undefined;

  const urlOf = (file: string) =>
    `${endpoint}/${encodeURIComponent(ref.owner)}/${encodeURIComponent(ref.repo)}/resolve/` +
    `${encodeURIComponent(ref.revision)}/${file.split('/').map(encodeURIComponent).join('/')}`;

  async function download(file: string, url: string, res: Response): Promise<void> {
    const target = localPath(file);
    await makeDirectory(dirname(target));
    // Partial downloads of processes that died (killed mid-transfer) are swept before a new one starts.
    await removeStaleTemps(dirname(target), basename(target));
    const tmp = join(
      dirname(target),
      `.${basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
    );
    // A compressed transfer's content-length counts compressed bytes, so it cannot check completeness.
    const encoding = res.headers.get('content-encoding');
    const lengthHeader = res.headers.get('content-length');
    const total =
      lengthHeader !== null && (!encoding || encoding === 'identity') ? Number(lengthHeader) : Number.NaN;
    let done = 0;
    let fh: FileHandle | undefined = await open(tmp, 'w');
    try {
      if (!res.body) throw new Error('empty response body');
      const reader = res.body.getReader();
      for (;;) {
        const { done: finished, value } = await reader.read();
        if (finished) break;
        await fh.write(value);
        done += value.byteLength;
        opts.onProgress?.(file, done, total);
      }
      if (Number.isFinite(total) && done !== total)
        throw new Error(`connection closed after ${done} of ${total} bytes`);
      await fh.sync();
      await fh.close();
      fh = undefined;
      await rename(tmp, target);
    } catch (err) {
      await fh?.close().catch(() => {});
      await rm(tmp, { force: true });
      if (err instanceof GenepruneError) throw err;
      const of = Number.isFinite(total) ? ` of ${total}` : '';
      throw networkError(
        url,
        `the transfer of ${file} was interrupted after ${done}${of} bytes (${describeCause(err)})`,
        err,
      );
    }
  }

  async function get(file: string, required: boolean): Promise<boolean> {
    if (await isFile(localPath(file))) return true;
    absent ??= await readAbsent(root);
    if (!required && absent.has(file)) return false;
    const url = urlOf(file);
    const headers: Record<string, string> = {};
    if (process.env.HF_TOKEN) headers.Authorization = `Bearer ${process.env.HF_TOKEN}`;
    let res: Response;
    try {
      res = await fetchImpl(url, { headers, redirect: 'follow' });
    } catch (err) {
      throw networkError(url, `cannot reach the server (${describeCause(err)})`, err);
    }
    if (res.status === 404 && !required) {
      await res.body?.cancel().catch(() => {});
      absent.add(file);
      await makeDirectory(root);
      await writeTextAtomic(join(root, ABSENT_LIST), JSON.stringify([...absent].sort()));
      return false;
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      throw httpError(url, res.status, res.statusText);
    }
    await download(file, url, res);
    return true;
  }

  return { get, localPath };
}

/** Shard file names from a model.safetensors.index.json, validated. */
async function shardsOf(indexPath: string, folder: string): Promise<string[]> {
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch (err) {
    throw fileError(indexPath, `not a valid safetensors index: ${(err as Error).message}`, err);
  }
  const map = (index as { weight_map?: unknown })?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw fileError(indexPath, 'not a valid safetensors index: no "weight_map" object');
  }
  const shards = new Set<string>();
  for (const value of Object.values(map)) {
    if (typeof value !== 'string') throw fileError(indexPath, 'weight_map values must be shard file names');
    checkRelativePath(value, 'shard', (msg) => fileError(indexPath, msg));
    shards.add(value);
  }
  if (shards.size === 0) throw fileError(indexPath, 'weight_map names no shards');
  return [...shards].map((s) => (folder ? `${folder}/${s}` : s));
}

/**
 * Download a hub model into the cache and return its local path: the folder for a repository or folder
 * (config.json, tokenizer files, safetensors with shards), the file for a llama2.c `.bin`.
 */
export async function downloadHfModel(ref: string | HfModelRef, opts: DownloadOptions = {}): Promise<string> {
  let hf: HfModelRef;
  if (typeof ref === 'string') {
    const parsed = parseModelRef(ref);
    if (parsed.kind !== 'hf') throw flagError('--model', `"${ref}" is not an hf: reference`);
    hf = parsed;
  } else {
    hf = ref;
  }
  const hub = hubFetcher(hf, opts);
  const extra = opts.extraFiles ?? [];
  for (const f of extra) checkRelativePath(f, 'extra file', (msg) => flagError('--model', msg));

  if (hf.path?.toLowerCase().endsWith('.bin')) {
    // llama2.c checkpoint: the file, then a tokenizer beside it.
    await hub.get(hf.path, true);
    const folder = posix.dirname(hf.path);
    for (const name of ['tokenizer.bin', ...extra])
      await hub.get(folder === '.' ? name : `${folder}/${name}`, false);
    return hub.localPath(hf.path);
  }

  const folder = hf.path ?? '';
  const inFolder = (name: string) => (folder ? `${folder}/${name}` : name);
  await hub.get(inFolder('config.json'), true);
  // A BERT-family repository may have only vocab.txt (read as the equivalent WordPiece tokenizer.json), a
  // CodeT5 / RoBERTa one only vocab.json + merges.txt (byte-level BPE) with its special tokens beside them.
  if (!(await hub.get(inFolder('tokenizer.json'), false))) {
    if (!(await hub.get(inFolder('vocab.txt'), false)) && (await hub.get(inFolder('vocab.json'), false))) {
      await hub.get(inFolder('merges.txt'), true);
      await hub.get(inFolder('special_tokens_map.json'), false);
      await hub.get(inFolder('added_tokens.json'), false);
    }
  }
  await hub.get(inFolder('tokenizer_config.json'), false);
  const indexFile = inFolder('model.safetensors.index.json');
  if (await hub.get(indexFile, false)) {
    for (const shard of await shardsOf(hub.localPath(indexFile), folder)) await hub.get(shard, true);
  } else {
    await hub.get(inFolder('model.safetensors'), true);
  }
  for (const name of extra) await hub.get(inFolder(name), false);
  return hub.localPath(folder);
}

export interface ResolvedModel {
  modelPath: string;
  tokenizerPath?: string;
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function checkDefaultModel(modelPath: string, tokenizerPath: string): Promise<ResolvedModel> {
  const actual = await sha256Of(modelPath);
  if (actual !== DEFAULT_MODEL.sha256) {
    throw fileError(
      modelPath,
      `sha256 ${actual} differs from the published ${DEFAULT_MODEL.name} checkpoint (${DEFAULT_MODEL.sha256}): ` +
        'a corrupt or different file; replace it or pass --model',
    );
  }
  return { modelPath, tokenizerPath };
}

async function findDefaultIn(dir: string): Promise<{ model: string; tokenizer: string } | string> {
  const model = join(dir, DEFAULT_MODEL.file);
  const tokenizer = join(dir, DEFAULT_MODEL.tokenizer);
  if (!(await isFile(model))) return `${model} is absent`;
  if (!(await isFile(tokenizer))) return `${tokenizer} is absent`;
  return { model, tokenizer };
}

async function resolveDefaultModel(opts: DownloadOptions): Promise<ResolvedModel> {
  const looked: string[] = [];
  const modelsDir = process.env.GENEPRUNE_MODELS;
  if (modelsDir) {
    const found = await findDefaultIn(join(resolve(modelsDir), DEFAULT_MODEL.folder));
    if (typeof found !== 'string') return checkDefaultModel(found.model, found.tokenizer);
    looked.push(`GENEPRUNE_MODELS: ${found}`);
  } else {
    looked.push('GENEPRUNE_MODELS is not set');
  }
  const hf: HfModelRef = {
    owner: DEFAULT_MODEL.owner,
    repo: DEFAULT_MODEL.repo,
    path: `${DEFAULT_MODEL.folder}/${DEFAULT_MODEL.file}`,
    revision: DEFAULT_MODEL.revision,
  };
  const cached = await findDefaultIn(join(hfCacheDir(hf), DEFAULT_MODEL.folder));
  if (typeof cached !== 'string') return checkDefaultModel(cached.model, cached.tokenizer);
  looked.push(`cache: ${cached}`);
  try {
    const modelPath = await downloadHfModel(hf, { ...opts, extraFiles: [DEFAULT_MODEL.tokenizer] });
    const tokenizerPath = join(dirname(modelPath), DEFAULT_MODEL.tokenizer);
    if (await isFile(tokenizerPath)) return checkDefaultModel(modelPath, tokenizerPath);
    looked.push(`hub: ${DEFAULT_MODEL.tokenizer} is missing beside ${hf.path}`);
  } catch (err) {
    if (!(err instanceof GenepruneError) || err.kind !== 'network') throw err;
    looked.push(`hub: ${err.oneLine().replace(/; use a local path.*$/, '')}`);
  }
  throw new GenepruneError(
    'model',
    `no model given and the default model ${DEFAULT_MODEL.name} was not found (${looked.join('; ')}). ` +
      `Set GENEPRUNE_MODELS to a folder holding ${DEFAULT_MODEL.folder}/${DEFAULT_MODEL.file} and ` +
      `${DEFAULT_MODEL.folder}/${DEFAULT_MODEL.tokenizer}, or pass --model PATH or --model hf:OWNER/REPO`,
    '--model',
  );
}

/**
 * Turn a `--model` value into local files: nothing → the default model; `hf:` → downloaded into the cache;
 * anything else → that path, made absolute.
 */
export async function resolveModelRef(
  ref: string | undefined,
  opts: DownloadOptions = {},
): Promise<ResolvedModel> {
  if (ref === undefined) return resolveDefaultModel(opts);
  const parsed = parseModelRef(ref);
  if (parsed.kind === 'local') {
    const modelPath = resolve(parsed.path);
    if (!existsSync(modelPath))
      throw fileError(modelPath, 'model not found (give a file or folder, or hf:OWNER/REPO)');
    return { modelPath };
  }
  const modelPath = await downloadHfModel(parsed, opts);
  const candidates = modelPath.toLowerCase().endsWith('.bin')
    ? ['tokenizer.bin', ...(opts.extraFiles ?? [])].map((f) => join(dirname(modelPath), f))
    : ['tokenizer.json', 'vocab.txt', 'vocab.json'].map((f) => join(modelPath, f));
  for (const c of candidates) if (await isFile(c)) return { modelPath, tokenizerPath: c };
  return { modelPath };
}
