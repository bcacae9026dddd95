/**
 * Export a (pruned) model as files that load elsewhere:
 *   hf               config.json + model.safetensors (+ tokenizer files): Hugging Face layout. Pruned models keep
 *                    per-layer head counts in config.json (`num_attention_heads_per_layer`,
 *                    `num_key_value_heads_per_layer`, and `kv_head_of_query_per_layer` when query heads share KV
 *                    heads unevenly); geneprune reads them back, stock transformers needs a model class that does.
 *   transformersjs   config.json, tokenizer files, onnx/model.onnx with the KV-cache inputs and outputs
 *                    transformers.js expects, each layer's cache carrying its own KV-head count.
 *   all              both in one folder (their config.json is the same file).
 *
 * Provenance: a masked export records the source model's identity (path, fingerprint, per-layer shape) and
 * the mask applied (its file's sha256 and the removed heads) in config.json (`geneprune`) and in the
 * safetensors `__metadata__` (`geneprune.provenance`, the same JSON as a string), after the source's own
 * lineage; the reader puts it back in `spec.provenance`, so a mask for an ancestor is refused on the export.
 * An export without a mask is the same model and carries the source's provenance unchanged.
 *
 * The folder is written under a temporary name beside `out` and renamed into place only when complete, so a
 * failure leaves no partial output; an existing non-empty `out` is replaced only with `force`.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { writeHfFolder } from '../checkpoint/hf.js';
import { writeAll, writeFileAtomic } from '../checkpoint/io.js';
import { fileError, flagError } from '../errors.js';
import { buildDecoderGraph, loadWeights } from '../graph/decoder.js';
import { provenanceOfPruning } from '../model/identity.js';
import { llamaSpecToHf, PROVENANCE_CONFIG_KEY, PROVENANCE_METADATA_KEY } from '../model/llama.js';
import type { ModelSpec } from '../model/spec.js';
import { type Genome, removedList } from '../search/genome.js';
import { writeTokenizerFiles } from '../tokenizer/convert.js';
import { type PruneSummary, pruneHeads, pruneSummary } from './heads.js';

export type ExportFormat = 'transformersjs' | 'hf' | 'all';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['transformersjs', 'hf', 'all'];

export interface ExportOptions {
  spec: ModelSpec;
  /** Copied (tokenizer.json) or converted (llama2.c tokenizer.bin); without it no tokenizer files are written. */
  tokenizerPath?: string;
  genome?: Genome;
  /** The mask file the genome came from, recorded in the provenance (`loadMaskFile` gives both). */
  maskFile?: { path: string; sha256: string };
  out: string;
  format: ExportFormat;
  force?: boolean;
  onStatus?: (line: string) => void;
}

export interface ExportResult {
  out: string;
  files: string[];
  summary?: PruneSummary;
}

async function writeBytes(path: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomic(path, (fh) => writeAll(fh, bytes));
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeBytes(path, new TextEncoder().encode(`${JSON.stringify(value, null, 2)}\n`));
}

/** Refuses an existing non-empty output without --force, before any work is done. */
async function checkOut(out: string, force: boolean): Promise<boolean> {
  const info = await stat(out).catch(() => undefined);
  if (!info) return false;
  if (!info.isDirectory()) throw fileError(out, 'exists and is not a directory');
  const entries = await readdir(out);
  if (entries.length > 0 && !force)
    throw flagError('--out', `${out} is not empty (use --force to replace it)`);
  return true;
}

async function copyTokenizer(tokenizerPath: string, dir: string, vocabSize: number): Promise<string[]> {
  if (tokenizerPath.endsWith('.json')) {
    const files = ['tokenizer.json'];
    await copyFile(tokenizerPath, join(dir, 'tokenizer.json'));
    const config = join(dirname(tokenizerPath), 'tokenizer_config.json');
    if (await stat(config).catch(() => undefined)) {
      await copyFile(config, join(dir, 'tokenizer_config.json'));
      files.push('tokenizer_config.json');
    }
    return files;
  }
  // A llama2.c tokenizer.bin becomes an equivalent tokenizer.json.
  await writeTokenizerFiles(dir, tokenizerPath, { vocabSize });
  return ['tokenizer.json', 'tokenizer_config.json'];
}

export async function exportModel(opts: ExportOptions): Promise<ExportResult> {
  const out = resolve(opts.out);
  const replace = await checkOut(out, opts.force === true);
  const spec = opts.genome ? pruneHeads(opts.spec, opts.genome) : opts.spec;
  const summary = opts.genome ? pruneSummary(opts.spec, opts.genome) : undefined;
  const tmp = join(
    dirname(out),
    `.${basename(out)}.partial-${process.pid}-${randomBytes(3).toString('hex')}`,
  );
  const files: string[] = [];
  try {
    try {
      await mkdir(tmp, { recursive: true });
    } catch (e) {
      throw fileError(out, `cannot create the output directory (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
    const hf = llamaSpecToHf(spec);
    const provenance = opts.genome
      ? await provenanceOfPruning(opts.spec, {
          ...(opts.maskFile ?? {}),
          removed: removedList(opts.spec.config, opts.genome),
        })
      : opts.spec.provenance;
    const config = {
      ...hf.config,
      architectures: ['LlamaForCausalLM'],
      ...(provenance ? { [PROVENANCE_CONFIG_KEY]: provenance } : {}),
    };
    if (opts.format === 'hf' || opts.format === 'all') {
      opts.onStatus?.('writing model.safetensors');
      const metadata = provenance ? { [PROVENANCE_METADATA_KEY]: JSON.stringify(provenance) } : undefined;
      await writeHfFolder(tmp, { config, tensors: hf.tensors, metadata });
      files.push('config.json', 'model.safetensors');
    } else {
      await writeJson(join(tmp, 'config.json'), config);
      files.push('config.json');
    }
    const c = spec.config;
    await writeJson(join(tmp, 'generation_config.json'), {
      ...(c.bosTokenId !== undefined ? { bos_token_id: c.bosTokenId } : {}),
      ...(c.eosTokenId !== undefined ? { eos_token_id: c.eosTokenId } : {}),
    });
    files.push('generation_config.json');
    if (opts.tokenizerPath) files.push(...(await copyTokenizer(opts.tokenizerPath, tmp, c.vocabSize)));
    if (opts.format === 'transformersjs' || opts.format === 'all') {
      opts.onStatus?.('building onnx/model.onnx');
      const graph = buildDecoderGraph(spec, await loadWeights(spec), { output: 'logits', kvCache: true });
      await mkdir(join(tmp, 'onnx'));
      await writeBytes(join(tmp, 'onnx', 'model.onnx'), graph);
      files.push('onnx/model.onnx');
    }
    if (replace) await rm(out, { recursive: true, force: true });
    await rename(tmp, out);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
  return { out, files, summary };
}
