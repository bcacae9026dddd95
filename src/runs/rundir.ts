/**
 * A search's run directory (its files: files.ts): creating it, taking its lock, and reading it back for --resume.
 *
 * Resuming validates everything before it writes anything: a corrupt or foreign directory is refused as is, and
 * so is one whose config.json or logs were changed after its state was saved (the stamp says so): a resumed
 * run would otherwise finish under edited settings, or from a log that no longer holds what it computed, and
 * record the result as if it had run that way throughout.
 * One process at a time: creating and resuming both take run.lock, and temporaries left by dead processes
 * are removed once the lock is held.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileError } from '../errors.js';
import type { GaState } from '../search/ga.js';
import type { NsgaState } from '../search/nsga.js';
import {
  acquireLock,
  describeFsError,
  type HeldLock,
  makeDirectory,
  pidAlive,
  removeStaleTemps,
  sha256Text,
  tempOwnerPid,
  writeJsonAtomic,
  writeTextAtomic,
} from '../util/fs.js';
import { jsonlText, LOCK_FILE, RUN_FILES, readJsonl, SEARCH_LOGS } from './files.js';

/** The `kind` of each space's runs in config.json, with the words a refusal uses for it. */
export const RUN_KINDS = {
  'geneprune-head-search': 'head-search',
  'geneprune-weight-prune': 'weight-pruning',
  'geneprune-structured-search': 'structured-search',
} as const;
export type RunKind = keyof typeof RUN_KINDS;
export const HEAD_RUN_KIND: RunKind = 'geneprune-head-search';
export const WEIGHT_RUN_KIND: RunKind = 'geneprune-weight-prune';
export const STRUCTURED_RUN_KIND: RunKind = 'geneprune-structured-search';

export interface RunConfig {
  kind: RunKind;
  version: 1;
  [key: string]: unknown;
}

/** Whether `dir` holds a geneprune run (its config.json says so); never throws. */
export async function isRunDir(dir: string): Promise<boolean> {
  try {
    return Object.hasOwn(RUN_KINDS, JSON.parse(await readFile(join(dir, RUN_FILES.config), 'utf8'))?.kind);
  } catch {
    return false;
  }
}

/** Takes the run's lock (refusing a live owner) and removes what dead processes left half-written. */
export async function lockRunDir(dir: string, onNote?: (line: string) => void): Promise<HeldLock> {
  const lock = await acquireLock(join(dir, LOCK_FILE), onNote);
  for (const name of await removeStaleTemps(dir))
    onNote?.(`removed ${join(dir, name)} (left by a process that died)`);
  return lock;
}

/** Refuses a directory holding anything but its lock and dead processes' temporaries. */
async function refuseNonEmpty(dir: string): Promise<void> {
  const entries = (await readdir(dir)).filter((n) => {
    const pid = n === LOCK_FILE ? undefined : tempOwnerPid(n);
    return n !== LOCK_FILE && (pid === undefined || pidAlive(pid));
  });
  if (entries.length === 0) return;
  const hint = (await isRunDir(dir))
    ? `it holds a run: use --resume ${dir} to continue it, or choose another --out`
    : 'choose another --out';
  throw fileError(dir, `run directory is not empty (${hint})`);
}

/**
 * Creates a fresh run directory and returns its lock, held; refuses a non-empty one (resume it, or choose
 * another). The lock is taken before the emptiness check, so of two processes starting one run only one goes.
 */
export async function createRunDir(
  dir: string,
  config: RunConfig,
  onNote?: (line: string) => void,
): Promise<HeldLock> {
  const info = await stat(dir).catch(() => undefined);
  if (info && !info.isDirectory()) throw fileError(dir, 'exists and is not a directory');
  try {
    await makeDirectory(dir);
  } catch (e) {
    throw fileError(dir, `cannot create run directory: ${describeFsError(e)}`, e);
  }
  // Refused before the lock is touched, so a directory that holds anything is left exactly as it was.
  await refuseNonEmpty(dir);
  const lock = await lockRunDir(dir, onNote);
  try {
    await refuseNonEmpty(dir);
    await writeJsonAtomic(join(dir, RUN_FILES.config), config);
  } catch (e) {
    await lock.release();
    throw e;
  }
  return lock;
}

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw fileError(path, `missing ${what}: not a geneprune run directory, or an incomplete one`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw fileError(path, `${what} is corrupt (not valid JSON)`);
  }
}

/** Whether a text is a genome of the run's space. */
type IsGenome = (text: unknown) => boolean;

function validState(s: unknown, isGenome: IsGenome): s is GaState {
  const st = s as GaState;
  return (
    typeof st === 'object' &&
    st !== null &&
    st.version === 1 &&
    Number.isInteger(st.generation) &&
    st.generation >= 0 &&
    Array.isArray(st.population) &&
    st.population.length > 0 &&
    st.population.every(isGenome) &&
    Array.isArray(st.rng) &&
    st.rng.length === 4 &&
    st.rng.every((x) => Number.isInteger(x)) &&
    typeof st.done === 'boolean'
  );
}

function validNsgaState(
  s: NsgaState | undefined,
  genes: number,
  isGenome: IsGenome,
  population: number | undefined,
): s is NsgaState {
  return (
    typeof s === 'object' &&
    s !== null &&
    s.version === 1 &&
    s.genes === genes &&
    Number.isInteger(s.generation) &&
    s.generation >= 0 &&
    Array.isArray(s.population) &&
    s.population.length === population &&
    s.population.every(isGenome) &&
    Array.isArray(s.objectives) &&
    s.objectives.length === population &&
    Array.isArray(s.rng) &&
    s.rng.length === 4 &&
    s.rng.every((x) => Number.isInteger(x))
  );
}

export interface ResumableRun {
  config: RunConfig;
  /** True when the run stopped before its first generation was saved: it restarts from the beginning. */
  fresh: boolean;
  /**
   * False when the saved state predates stamps (RunStamp), so config.json and the logs could not be checked
   * against it; true otherwise (also for a fresh run, which has nothing to check).
   */
  verified: boolean;
  /**
   * The config.json hash the saved state was computed under, for the caller to check with refuseChangedConfig
   * once it has checked the model: a config edited to name another model then gets the refusal that says how
   * the models differ.
   */
  configSha256?: string;
  /** GA state (method ga). */
  state?: GaState;
  /** NSGA-II state (method nsga). */
  nsga?: NsgaState;
  /** Evaluation records of the generations the state has finished (what a resumed run keeps). */
  evaluations: Array<Record<string, unknown>>;
  generations: Array<Record<string, unknown>>;
}

/** Reads and validates a run directory's config.json for --resume; writes nothing. */
export async function readRunConfig(dir: string, kind: RunKind): Promise<RunConfig> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw fileError(dir, 'run directory does not exist');
  const configPath = join(dir, RUN_FILES.config);
  const config = (await readJson(configPath, 'config.json')) as RunConfig;
  if (config?.kind !== kind)
    throw fileError(configPath, `not a geneprune ${RUN_KINDS[kind]} run (kind field)`);
  if (config.version !== 1) throw fileError(configPath, `unsupported run version ${String(config.version)}`);
  return config;
}

/**
 * Reads the saved search state and logs of a run whose config is valid; writes nothing. A run with no
 * state.json yet (killed before its first generation finished) is `fresh`; a baseline (which saves no
 * state) is fresh until it has written result.json, after which there is nothing to resume.
 * `codecOf` gives the space's gene count and genome decoder from the config alone (no model loaded yet).
 */
export async function openRunForResume(
  dir: string,
  config: RunConfig,
  codecOf: (c: RunConfig) => { genes: number; decode: (text: string) => unknown },
): Promise<ResumableRun> {
  const configPath = join(dir, RUN_FILES.config);
  const statePath = join(dir, RUN_FILES.state);
  const noState = !(await stat(statePath).catch(() => undefined));
  if (config.method !== 'ga' && config.method !== 'nsga') {
    if (await stat(join(dir, RUN_FILES.result)).catch(() => undefined)) {
      throw fileError(
        configPath,
        `a ${String(config.method)} run has no search state to resume, and this one has finished (run it again)`,
      );
    }
    return { config, fresh: true, verified: true, evaluations: [], generations: [] };
  }
  if (noState) return { config, fresh: true, verified: true, evaluations: [], generations: [] };
  const state = await readJson(statePath, 'state.json');
  // Asked only once a state needs checking, as the refusals have always come in that order.
  let known: ReturnType<typeof codecOf> | undefined;
  const codec = () => {
    known ??= codecOf(config);
    return known;
  };
  const isGenome: IsGenome = (text) => typeof text === 'string' && codec().decode(text) !== undefined;
  if (config.method === 'nsga') {
    const population = (config.settings as { population?: number } | undefined)?.population;
    const nsga = (state as { method?: string; nsga?: NsgaState }).nsga;
    if (
      (state as { method?: string }).method !== 'nsga' ||
      !validNsgaState(nsga, codec().genes, isGenome, population)
    ) {
      throw fileError(statePath, 'NSGA-II state is corrupt or does not fit the run');
    }
    const verified = await refuseChangedSinceState(dir, state, statePath, { config: false });
    const evaluations = await readJsonl(join(dir, RUN_FILES.evals));
    const generations = (await readJsonl(join(dir, RUN_FILES.generations))).filter(
      (r) => typeof r.generation === 'number' && r.generation <= nsga.generation,
    );
    return { config, fresh: false, verified, ...stampedConfig(state), nsga, evaluations, generations };
  }
  codec();
  if (!validState(state, isGenome)) throw fileError(statePath, 'GA state is corrupt or does not fit the run');
  const verified = await refuseChangedSinceState(dir, state, statePath, { config: false });
  const keep = (r: Record<string, unknown>) =>
    typeof r.generation === 'number' && r.generation < state.generation;
  const finished = state.done ? state.generation + 1 : state.generation;
  const keepDone = (r: Record<string, unknown>) =>
    typeof r.generation === 'number' && r.generation < finished;
  const evaluations = (await readJsonl(join(dir, RUN_FILES.evals))).filter(state.done ? keepDone : keep);
  const generations = (await readJsonl(join(dir, RUN_FILES.generations))).filter(
    state.done ? keepDone : keep,
  );
  return { config, fresh: false, verified, ...stampedConfig(state), state, evaluations, generations };
}

function stampedConfig(state: unknown): { configSha256?: string } {
  const recorded = (state as Partial<RunStamp>).configSha256;
  return recorded === undefined ? {} : { configSha256: recorded };
}

/** Rewrites the logs to hold exactly the finished generations (drops a partly logged one), atomically. */
export async function rewriteLogs(dir: string, run: ResumableRun): Promise<void> {
  await writeTextAtomic(join(dir, RUN_FILES.evals), jsonlText(run.evaluations));
  await writeTextAtomic(join(dir, RUN_FILES.generations), jsonlText(run.generations));
}

/** How much of a log a saved state covers: its first `bytes` bytes, whose sha256 is `sha256`. */
export interface LogCoverage {
  bytes: number;
  sha256: string;
}

/**
 * What a saved state was computed under: the hash of config.json's content (its JSON, so re-indenting the file
 * changes nothing) and, per log, the bytes it held when the state was saved. A log may grow past that (work after
 * the state, dropped on resume) but never shrink or change within it.
 */
export interface RunStamp {
  configSha256: string;
  logs: Record<string, LogCoverage>;
}

async function configSha256(dir: string): Promise<string> {
  const config = await readJson(join(dir, RUN_FILES.config), 'config.json');
  return sha256Text(JSON.stringify(config));
}

async function readLog(dir: string, file: string): Promise<Buffer> {
  return readFile(join(dir, file)).catch(() => Buffer.alloc(0));
}

/** The stamp for a state saved now, covering `logs` as they stand. */
export async function runStamp(dir: string, logs: readonly string[] = SEARCH_LOGS): Promise<RunStamp> {
  const covered: Record<string, LogCoverage> = {};
  for (const file of logs) {
    const bytes = await readLog(dir, file);
    covered[file] = { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }
  return { configSha256: await configSha256(dir), logs: covered };
}

function isStamp(v: unknown): v is RunStamp {
  const s = v as RunStamp;
  return (
    typeof s?.configSha256 === 'string' &&
    typeof s.logs === 'object' &&
    s.logs !== null &&
    Object.values(s.logs).every(
      (c) => Number.isSafeInteger(c?.bytes) && c.bytes >= 0 && typeof c.sha256 === 'string',
    )
  );
}

/**
 * Refuses a run whose config.json or logs differ from what the state file at `statePath` was stamped with.
 * `exact`: the run has finished, so the logs must hold exactly what the state covers (nothing was logged after
 * it). Returns false for a state written before stamps existed (nothing to check against), true otherwise.
 */
export async function refuseChangedSinceState(
  dir: string,
  state: unknown,
  statePath: string,
  opts: { exact?: boolean; config?: boolean } = {},
): Promise<boolean> {
  const { configSha256: recorded, logs } = (state ?? {}) as Partial<RunStamp>;
  if (recorded === undefined && logs === undefined) return false;
  if (!isStamp(state)) throw fileError(statePath, 'its record of the run it covers is corrupt');
  if (opts.config !== false) await refuseChangedConfig(dir, recorded, basename(statePath));
  await refuseAlteredLogs(dir, state.logs, basename(statePath), opts.exact === true);
  return true;
}

/** Refuses a config.json whose hash is not `recorded` (the one a state named `stateName` was saved under). */
export async function refuseChangedConfig(
  dir: string,
  recorded: string | undefined,
  stateName: string,
): Promise<void> {
  if (recorded === undefined) return;
  if ((await configSha256(dir)) !== recorded) {
    throw fileError(
      join(dir, RUN_FILES.config),
      `was changed after ${stateName} was saved: a run's settings cannot change once it has started (start a new run with --out)`,
    );
  }
}

/** Refuses logs that are shorter than, or differ within, the bytes a state covers (longer, when not `exact`). */
export async function refuseAlteredLogs(
  dir: string,
  logs: Record<string, LogCoverage>,
  stateName: string,
  exact: boolean,
): Promise<void> {
  for (const [file, c] of Object.entries(logs)) {
    const path = join(dir, file);
    const bytes = await readLog(dir, file);
    if (bytes.length < c.bytes) {
      throw fileError(
        path,
        `holds ${bytes.length} bytes, ${stateName} covers ${c.bytes}: the log was truncated or replaced after the run saved its state`,
      );
    }
    if (createHash('sha256').update(bytes.subarray(0, c.bytes)).digest('hex') !== c.sha256) {
      throw fileError(
        path,
        `its first ${c.bytes} bytes are not those ${stateName} covers: the log was edited after the run saved its state`,
      );
    }
    if (exact && bytes.length > c.bytes) {
      throw fileError(
        path,
        `holds ${bytes.length} bytes, the finished run's ${stateName} covers ${c.bytes}: lines were added after the run finished`,
      );
    }
  }
}

/** Writes state.json stamped with the config and the logs (`logs`) it covers. */
export async function saveState(
  dir: string,
  state: object,
  logs: readonly string[] = SEARCH_LOGS,
): Promise<void> {
  await writeJsonAtomic(join(dir, RUN_FILES.state), { ...state, ...(await runStamp(dir, logs)) });
}
