/**
 * Export a (pruned) model as files that load elsewhere:
 *   hf               config.json + model.safetensors (+ tokenizer files): Hugging Face layout. Pruned models keep
 *                    per-layer sizes in config.json (`num_attention_heads_per_layer`,
 *                    `num_key_value_heads_per_layer`, `kv_head_of_query_per_layer` when query heads share KV
 *                    heads unevenly, `intermediate_size_per_layer`); geneprune reads them back, and a decoder's
 *                    folder carries modeling_geneprune.py with `auto_map` naming its class, which Python
 *                    transformers loads with trust_remote_code=True (model/remote-code.ts). The padded layout
 *                    (original shapes, removed heads zero) loads with the stock classes instead.
 *   transformersjs   config.json, tokenizer files, onnx/model.onnx with the KV-cache inputs and outputs
 *                    transformers.js expects, each layer's cache carrying its own KV-head count. Above
 *                    `externalDataThreshold` bytes of weights they go to onnx/model.onnx_data, written tensor by
 *                    tensor, and config.json says so (`transformers.js_config.use_external_data_format`).
 *   all              both in one folder (their config.json is the same file).
 *
 * Encoders (the BERT family) get, instead of the KV-cache graph, the encoder graph built for deployment: inputs
 * input_ids, attention_mask (and token_type_ids when the model has token types), output `last_hidden_state` for a
 * base model (transformers.js AutoModel, feature-extraction) or `logits` for a classifier
 * (AutoModelForSequenceClassification, text-classification; config.json keeps id2label). No
 * generation_config.json: nothing generates from an encoder. A layer left without heads is written only in the
 * padded layout or the ONNX graph: transformers' BERT-family attention cannot run a compact layer of zero heads.
 *
 * Encoder-decoders (T5, CodeT5) get the two graphs transformers.js runs a T5 on, in the layout its seq2seq
 * generation feeds: onnx/encoder_model.onnx (input_ids, attention_mask → last_hidden_state) and
 * onnx/decoder_model_merged.onnx (input_ids, encoder_attention_mask, encoder_hidden_states,
 * past_key_values.{d}.{decoder,encoder}.{key,value}, use_cache_branch → logits, present.*), each cache input
 * carrying its layer's own head count (transformers.js builds the first step's empty caches from the graph's input
 * shapes). Heads go from the three stacks, and a relative-bias column only where every layer of its stack lost the
 * head (prune/encdec-heads.ts; config.json records the column map geneprune reads back). generation_config.json
 * holds the source folder's own (its max_length, say) with the model's decoder start, EOS and pad ids. Above
 * `externalDataThreshold` bytes each graph's weights go to its own `<graph>.onnx_data`. Stock transformers loads
 * the padded layout only: its T5 sizes every attention from num_heads, and T5ForConditionalGeneration has no
 * head pruning to apply (transformers' `_prune_heads` exists for the encoder-only classes' encoder alone).
 *
 * Provenance: a masked export records the source model's identity (path, fingerprint, per-layer shape) and
 * the mask applied (its file's sha256 and the removed heads) in config.json (`geneprune`) and in the
 * safetensors `__metadata__` (`geneprune.provenance`, the same JSON as a string), after the source's own
 * lineage; the reader puts it back in `spec.provenance`, so a mask for an ancestor is refused on the export.
 * An export without a mask is the same model and carries the source's provenance unchanged; config.json always
 * holds a record (with an empty lineage when nothing was pruned), which is how a later export knows the folder.
 *
 * The folder is built under a temporary name beside `out` and put in place only when complete; an existing
 * non-empty `out` is replaced only with `force`, and only when it is a previous export (a provenance record in
 * config.json, nothing an export does not write), by renaming it aside, renaming the new one in, then deleting
 * the old (a kill at any step leaves one complete folder; the next export to `out` finishes the cleanup).
 * An `out` that is a symlink is followed: the content goes to its target and the link stays. An `out` that
 * is a run directory, the working directory or a parent of it, an input (model, tokenizer, masks, recovered
 * weights, calibration data), inside a folder input, or a folder holding an input, is refused before anything
 * is written, whatever `force` says: replacing it would destroy them.
 */
import { copyFile, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { archOf } from '../arch/registry.js';
import { narrowingProblem } from '../checkpoint/dtype.js';
import { writeHfFolder } from '../checkpoint/hf.js';
import { writeOnnxModel } from '../checkpoint/onnx.js';
import { type StoredFloat, storedFloatOf } from '../checkpoint/safetensors.js';
import { fileError, flagError } from '../errors.js';
import { buildEncDecEncoderGraph, buildEncDecStepGraph } from '../graph/encdec.js';
import {
  DEFAULT_EXTERNAL_DATA_THRESHOLD,
  loadWeights,
  packedWeightBytes,
  type Weights,
  writeWeights,
} from '../graph/weights.js';
import type { Bitset } from '../masks/bitset.js';
import { type Genome, removedList } from '../masks/heads.js';
import type { StructuredPlan } from '../masks/structured.js';
import type { SparsityReport } from '../masks/weights.js';
import { specToHf } from '../model/families.js';
import {
  type AppliedMask,
  type Provenance,
  provenanceOfPruning,
  provenanceProblem,
} from '../model/identity.js';
import { PROVENANCE_CONFIG_KEY, PROVENANCE_METADATA_KEY } from '../model/llama.js';
import { MODELING_FILE, modelingFilePath, remoteCodeAutoMap } from '../model/remote-code.js';
import { encdecOf, intermediateOf, type ModelSpec, type TensorSource } from '../model/spec.js';
import { isRunDir } from '../runs/rundir.js';
import { writeTokenizerFiles } from '../tokenizer/convert.js';
import { readVocabJson } from '../tokenizer/vocabjson.js';
import { readVocabTxt } from '../tokenizer/vocabtxt.js';
import {
  describeFsError,
  followSymlinks,
  isDirectory,
  isSameOrInside,
  makeDirectory,
  partialDirFor,
  realPathOf,
  recoverReplace,
  replaceDirectory,
  writeJsonAtomic,
} from '../util/fs.js';
import { type PruneSummary, pruneHeads, pruneSummary, zeroHeads } from './heads.js';
import {
  planGenome,
  pruneStructured,
  pruneStructuredKeepingAHead,
  type StructuredSummary,
  structuredSummary,
  zeroStructured,
} from './structured.js';
import { writtenSparsity, zeroMaskedWeights } from './weights.js';

export type ExportFormat = 'transformersjs' | 'hf' | 'all';
export type HfLayout = 'compact' | 'padded';
export const HF_LAYOUTS: readonly HfLayout[] = ['compact', 'padded'];
export const EXPORT_FORMATS: readonly ExportFormat[] = ['transformersjs', 'hf', 'all'];

export interface ExportOptions {
  spec: ModelSpec;
  /**
   * When `spec` carries recovered matrices (`recovered`), the model they were recovered from: the provenance
   * records its identity, so the export's lineage names the model the masks belong to.
   */
  original?: ModelSpec;
  /** The recovery applied to `spec`, recorded in the provenance. */
  recovered?: AppliedMask['recovered'];
  /** Copied (tokenizer.json) or converted (llama2.c tokenizer.bin); without it no tokenizer files are written. */
  tokenizerPath?: string;
  genome?: Genome;
  /** The mask file the genome came from, recorded in the provenance (`loadMaskFile` gives both). */
  maskFile?: { path: string; sha256: string };
  /**
   * A structured plan (heads, MLP channels, skipped blocks; masks/structured.ts) removed physically
   * (prune/structured.ts), instead of a genome: the compact layout has per-layer head counts and MLP widths, the
   * padded one zeros where the plan removes. `planFile` is the file it came from, recorded in the provenance.
   */
  plan?: StructuredPlan;
  planFile?: { path: string; sha256: string };
  /**
   * A weight mask (`loadWeightMaskFile`): masked weights are written as zeros, and the result counts the true
   * sparsity back from the written files. Applied before heads are removed (the mask is the source model's).
   */
  weightMask?: { masks: ReadonlyMap<string, Bitset>; path: string; sha256: string; sparsity: number };
  out: string;
  format: ExportFormat;
  /**
   * How model.safetensors holds removed heads: 'compact' (default) drops them (smaller and faster; geneprune
   * reads it, Python transformers with trust_remote_code=True through the modeling_geneprune.py a decoder's
   * folder carries, and transformers 4.x for BERT-family encoders and GPT-2 through `pruned_heads`); 'padded'
   * keeps the original shapes with the removed heads' weights zero, which any transformers version loads with
   * the stock class (no speed-up). The ONNX graph is always compact.
   */
  hfLayout?: HfLayout;
  /** Storage dtype of model.safetensors; omitted, each tensor keeps the checkpoint's (bf16 stays bf16). */
  dtype?: StoredFloat;
  force?: boolean;
  /** The model's file or folder: its folder (like the mask's and the tokenizer's) is never replaced. */
  modelPath?: string;
  /** Weights above this many bytes (fp32) go to onnx/model.onnx_data (default 64 MiB; 0: always). */
  externalDataThreshold?: number;
  onStatus?: (line: string) => void;
}

/** The provenance of a model no geneprune step pruned: it marks the folder as an export all the same. */
const UNPRUNED: Provenance = { format: 'geneprune-provenance', version: 1, lineage: [] };

/** transformers.js v4 reads `<model>.onnx_data` beside a model file this config key names (one chunk). */
const TRANSFORMERS_JS_CONFIG = 'transformers.js_config';

export interface ExportResult {
  out: string;
  files: string[];
  /** Heads and parameters before/after; with a structured plan also MLP widths, skipped blocks and the FLOP ratio. */
  summary?: PruneSummary | StructuredSummary;
  /**
   * With a weight mask: the sparsity of the prunable matrices counted from the written files (zeros, so a
   * weight already 0 in the source counts as pruned too).
   */
  weightSparsity?: SparsityReport;
  /** With an hf folder: its layout and, in words, what loads it (the export summary states it). */
  loaders?: HfLoaders;
}

export interface HfLoaders {
  /** 'compact' when removed heads are dropped (or nothing was removed), 'padded' when they are zeros. */
  layout: HfLayout;
  /** Each loader that reads the folder, with how. */
  readers: string[];
}

/**
 * What reads the hf folder just written. `config` is its config.json (auto_map when remote code was shipped),
 * `perLayer` whether its layers have their own sizes (the stock classes then refuse the compact tensors).
 */
function hfLoadersOf(
  spec: ModelSpec,
  config: Record<string, unknown>,
  opts: { padded: boolean; perLayer: boolean; onnx: boolean; structured?: boolean },
): HfLoaders {
  const readers = ['geneprune'];
  if (opts.onnx) readers.push('transformers.js (onnx/)');
  if (opts.padded) {
    const zeros = opts.structured
      ? "the removed heads' and MLP channels' weights and skipped blocks' biases are zeros"
      : 'the removed heads are zeros';
    readers.push(`Python transformers, any version, with the stock class (${zeros}: no smaller, no faster)`);
  } else if (!opts.perLayer) {
    readers.push('Python transformers with the stock class (nothing removed)');
  } else if (config.auto_map !== undefined) {
    readers.push(
      `Python transformers with trust_remote_code=True (${MODELING_FILE}); the stock class refuses it`,
    );
    if (config.pruned_heads !== undefined) readers.push('Python transformers 4.x also through pruned_heads');
  } else if (config.pruned_heads !== undefined) {
    readers.push('Python transformers 4.x through pruned_heads (5.x refuses it: use --hf-layout padded)');
  } else {
    readers.push(`no stock ${spec.config.modelType} class in Python transformers (use --hf-layout padded)`);
  }
  return { layout: opts.padded ? 'padded' : 'compact', readers };
}

/** A file or folder the export reads, which `out` must never replace. */
export interface ExportInput {
  path: string;
  /** What it is, for the refusal: "the mask file". */
  what: string;
  /** Its folder, for the refusal: "the folder of the mask file". */
  folder: string;
}

/** The files and folders an export reads (a hub model `hf:…` is no local path and is left out). */
export function exportInputs(paths: {
  model?: string;
  mask?: string;
  structured?: string;
  weightMask?: string;
  tokenizer?: string;
  recovered?: string;
  calibration?: string;
}): ExportInput[] {
  const named: Array<[string | undefined, string, string]> = [
    [paths.model, 'the model', "the model's folder"],
    [paths.mask, 'the mask file', 'the folder of the mask file'],
    [paths.structured, 'the structured plan file', 'the folder of the structured plan file'],
    [paths.weightMask, 'the weight-mask file', 'the folder of the weight-mask file'],
    [paths.tokenizer, 'the tokenizer', 'the folder of the tokenizer'],
    [paths.recovered, 'the recovered-weights file', 'the folder of the recovered-weights file'],
    [paths.calibration, 'the calibration data', 'the folder of the calibration data'],
  ];
  return named
    .filter(([path]) => path !== undefined && !path.startsWith('hf:'))
    .map(([path, what, folder]) => ({ path: path!, what, folder }));
}

const inputsOf = (opts: ExportOptions): ExportInput[] =>
  exportInputs({
    model: opts.modelPath,
    mask: opts.maskFile?.path,
    structured: opts.planFile?.path,
    weightMask: opts.weightMask?.path,
    tokenizer: opts.tokenizerPath,
    recovered: opts.recovered?.path,
    calibration: opts.recovered?.calibration,
  });

/**
 * Refuses an `out` (given as typed, and as the real folder `target` it names) whose replacement would destroy
 * something: a run directory, the working directory (or a parent of it), an input of the export, or a folder
 * holding one (the folder of a file input, a folder input itself, or a parent of those).
 */
async function refuseDangerousOut(
  out: string,
  target: string,
  inputs: readonly ExportInput[],
): Promise<void> {
  const real = await realPathOf(target);
  if (await isRunDir(real)) {
    throw flagError('--out', `${out} is a geneprune run directory (config.json): refusing to replace it`);
  }
  const cwd = await realPathOf(process.cwd());
  if (isSameOrInside(cwd, real)) {
    const rel = cwd === real ? 'is the working directory' : `holds the working directory (${cwd})`;
    throw flagError('--out', `${out} ${rel}: refusing to replace it (give a new folder)`);
  }
  for (const input of inputs) {
    const path = await realPathOf(input.path);
    const isDir = await isDirectory(path);
    if (!isDir && path === real) throw flagError('--out', `${out} is ${input.what}: refusing to replace it`);
    if (isDir && real !== path && isSameOrInside(real, path))
      throw flagError('--out', `${out} is inside ${input.what} (${path}): refusing to write there`);
    // A folder input counts as its own folder; a file input's folder holds the files beside it (configs).
    const folder = isDir ? path : dirname(path);
    if (isSameOrInside(folder, real)) {
      const rel = folder === real ? `is ${input.folder}` : `holds ${input.folder} (${folder})`;
      throw flagError('--out', `${out} ${rel}: refusing to replace it`);
    }
  }
}

/**
 * What an export writes at the top of its folder; onnx/ holds model.onnx (encoder-decoders: encoder_model.onnx
 * and decoder_model_merged.onnx) and their external data.
 */
const EXPORT_ENTRIES = new Set([
  'config.json',
  MODELING_FILE,
  'generation_config.json',
  'model.safetensors',
  'tokenizer.json',
  'tokenizer_config.json',
  'vocab.txt',
  'onnx',
]);

const ONNX_FILES = ['model.onnx', 'encoder_model.onnx', 'decoder_model_merged.onnx'];

/**
 * Why the existing folder `target` is not a previous export (undefined when it is one): every export's
 * config.json carries a geneprune provenance record, and the folder holds nothing an export does not write.
 */
async function notAnExport(target: string): Promise<string | undefined> {
  const entries = await readdir(target);
  const onnx = entries.includes('onnx') ? await readdir(join(target, 'onnx')).catch(() => undefined) : [];
  const foreign = [
    ...entries.filter((n) => !EXPORT_ENTRIES.has(n)),
    ...(onnx === undefined
      ? ['onnx']
      : onnx.filter((n) => !ONNX_FILES.some((f) => n.startsWith(f))).map((n) => `onnx/${n}`)),
  ];
  if (foreign.length > 0) {
    const names = foreign.slice(0, 3).join(', ') + (foreign.length > 3 ? `, … (${foreign.length})` : '');
    return `holds files an export does not write (${names})`;
  }
  let config: unknown;
  try {
    config = JSON.parse(await readFile(join(target, 'config.json'), 'utf8'));
  } catch {
    return 'has no readable config.json, so it is no geneprune export';
  }
  const record = (config as Record<string, unknown> | null)?.[PROVENANCE_CONFIG_KEY];
  if (record === undefined || provenanceProblem(record) !== undefined)
    return 'is not a geneprune export (its config.json has no geneprune provenance)';
  return undefined;
}

/**
 * Refuses an existing non-empty output without --force, and with it anything but a previous export, before
 * any work is done.
 */
async function checkOut(out: string, target: string, force: boolean): Promise<void> {
  const info = await stat(target).catch(() => undefined);
  if (!info) return;
  if (!info.isDirectory()) throw fileError(out, 'exists and is not a directory');
  const entries = await readdir(target);
  if (entries.length === 0) return;
  if (!force) throw flagError('--out', `${out} is not empty (use --force to replace it)`);
  const why = await notAnExport(target);
  if (why) throw flagError('--out', `${out} ${why}: --force replaces only a previous export`);
}

/**
 * Every refusal `exportModel` gives about `out`, without writing anything: for callers that check before
 * long work (loading, recovery). Returns the folder that would be written (a symlinked `out` followed).
 */
export async function checkExportOut(
  out: string,
  opts: { force?: boolean; inputs: readonly ExportInput[] },
): Promise<string> {
  const abs = resolve(out);
  const target = await followSymlinks(abs);
  await refuseDangerousOut(abs, target, opts.inputs);
  await checkOut(abs, target, opts.force === true);
  return target;
}

async function copyTokenizer(tokenizerPath: string, dir: string, vocabSize: number): Promise<string[]> {
  if (basename(tokenizerPath) === 'vocab.txt') {
    // A BERT vocab.txt: the equivalent tokenizer.json (what transformers.js reads) beside copies of the originals.
    const { json } = await readVocabTxt(tokenizerPath);
    await writeJsonAtomic(join(dir, 'tokenizer.json'), json);
    await copyFile(tokenizerPath, join(dir, 'vocab.txt'));
    const config = join(dirname(tokenizerPath), 'tokenizer_config.json');
    if (await stat(config).catch(() => undefined)) await copyFile(config, join(dir, 'tokenizer_config.json'));
    else {
      // transformers.js loads a tokenizer only beside a tokenizer_config.json: the BERT defaults vocab.txt implies.
      const normalizer = json.normalizer as { lowercase?: boolean };
      await writeJsonAtomic(join(dir, 'tokenizer_config.json'), {
        tokenizer_class: 'BertTokenizer',
        do_lower_case: normalizer.lowercase !== false,
        unk_token: '[UNK]',
        cls_token: '[CLS]',
        sep_token: '[SEP]',
        pad_token: '[PAD]',
        mask_token: '[MASK]',
      });
    }
    return ['tokenizer.json', 'vocab.txt', 'tokenizer_config.json'];
  }
  if (tokenizerPath.endsWith('.json')) {
    const files = ['tokenizer.json'];
    if (basename(tokenizerPath) === 'vocab.json') {
      // A byte-level BPE vocab.json + merges.txt (CodeT5, RoBERTa): the equivalent tokenizer.json, which
      // transformers and transformers.js both read.
      await writeJsonAtomic(join(dir, 'tokenizer.json'), await readVocabJson(tokenizerPath));
    } else await copyFile(tokenizerPath, join(dir, 'tokenizer.json'));
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

/**
 * The original head indices a genome removes per layer, for configs that record them (`pruned_heads`); only
 * when the source is unpruned, since a pruned source's head numbering is no longer the original one.
 */
function prunedHeadsOf(spec: ModelSpec, genome: Genome): number[][] | undefined {
  const c = spec.config;
  // T5 has no pruned_heads to write: its conditional-generation class prunes nothing on load (module comment).
  if (c.encdec || c.headsPerLayer.some((h) => h !== c.numHeads)) return undefined;
  const out: number[][] = Array.from({ length: c.numLayers }, () => []);
  for (const item of removedList(c, genome)) {
    const [layer, head] = item.split(':').map(Number);
    out[layer].push(head);
  }
  return out;
}

/**
 * Refuses, before anything is written, a storage dtype that would turn a finite weight into infinity (fp16 ends
 * at ±65504): the export would exit 0 and geneprune itself would then refuse the files as corrupt. Each tensor
 * is read once more for this; a tensor already stored in the target dtype (or in fp16, for bf16) fits as it is.
 */
async function refuseNarrowingOverflow(
  tensors: ReadonlyMap<string, TensorSource>,
  dtype: StoredFloat,
): Promise<void> {
  if (dtype === 'F32') return;
  for (const [name, t] of tensors) {
    if (t.dtype === dtype || (dtype === 'BF16' && t.dtype === 'F16')) continue;
    const problem = narrowingProblem(name, dtype, await t.load());
    if (problem) {
      throw flagError(
        '--dtype',
        `${problem}; export with --dtype ${dtype === 'F16' ? 'fp32 or bf16' : 'fp32'}`,
      );
    }
  }
}

/** The graphs an encoder-decoder export writes to onnx/ (transformers.js's T5 session files). */
const ENCDEC_GRAPHS = ['encoder_model.onnx', 'decoder_model_merged.onnx'];

/**
 * onnx/encoder_model.onnx and onnx/decoder_model_merged.onnx of a physically pruned encoder-decoder, each reading
 * only its own tensors (the encoder's blocks and norm; the decoder's blocks, norm and head; both the embedding),
 * inline or, `external`, from its own `<graph>_data` file beside it (what transformers.js looks for).
 */
async function writeEncDecGraphs(
  spec: ModelSpec,
  dir: string,
  external: boolean,
  onStatus?: (line: string) => void,
): Promise<string[]> {
  const arch = archOf(spec.config);
  const E = encdecOf(spec.config).encoderLayers;
  const L = spec.config.numLayers;
  const files: string[] = [];
  const parts = [
    { file: ENCDEC_GRAPHS[0], layers: [0, E] as const, build: buildEncDecEncoderGraph },
    { file: ENCDEC_GRAPHS[1], layers: [E, L] as const, build: buildEncDecStepGraph },
  ];
  for (const part of parts) {
    const partSpec = arch.blockSpec(spec, part.layers);
    let weights: Weights;
    if (external) {
      onStatus?.(`writing onnx/${part.file}_data`);
      weights = await writeWeights(partSpec, dir, `${part.file}_data`, { atomic: true });
      files.push(`onnx/${part.file}_data`);
    } else weights = await loadWeights(partSpec);
    onStatus?.(`building onnx/${part.file}`);
    const graph = part.build(partSpec, weights, { deploy: true });
    for (const f of await writeOnnxModel(dir, part.file, graph)) files.push(`onnx/${f}`);
  }
  return files;
}

/**
 * The source folder's generation_config.json (an encoder-decoder's max_length and the like), or nothing when the
 * model is no folder holding one; a file that is there but unreadable is refused, not silently dropped.
 */
async function sourceGenerationConfig(modelPath: string | undefined): Promise<Record<string, unknown>> {
  if (!modelPath || modelPath.startsWith('hf:')) return {};
  const path = join(modelPath, 'generation_config.json');
  if (!(await isDirectory(modelPath)) || !(await stat(path).catch(() => undefined))) return {};
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw fileError(path, `is not valid JSON: ${describeFsError(e)}`, e);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw fileError(path, 'must hold a JSON object');
  return json as Record<string, unknown>;
}

export async function exportModel(opts: ExportOptions): Promise<ExportResult> {
  const out = resolve(opts.out);
  // A symlinked --out is followed: the new folder goes where the link points, and the link stays.
  const target = await followSymlinks(out);
  await refuseDangerousOut(out, target, inputsOf(opts));
  for (const note of await recoverReplace(target)) opts.onStatus?.(note);
  await checkOut(out, target, opts.force === true);
  if (opts.genome && opts.plan) {
    throw flagError('--structured', 'a structured plan holds its heads: give it or a head mask, not both');
  }
  const base = opts.weightMask ? zeroMaskedWeights(opts.spec, opts.weightMask.masks) : opts.spec;
  const plan = opts.plan;
  // GPT-2's config.json cannot express a layer without heads: there such a layer keeps one zeroed head.
  const prunePlan = base.config.family === 'gpt2' ? pruneStructuredKeepingAHead : pruneStructured;
  const spec = opts.genome ? pruneHeads(base, opts.genome) : plan ? prunePlan(base, plan) : base;
  const padded = opts.hfLayout === 'padded' && (opts.genome !== undefined || plan !== undefined);
  let hfSpec = spec;
  if (padded) hfSpec = opts.genome ? zeroHeads(base, opts.genome) : zeroStructured(base, plan!);
  const planSummary = plan ? structuredSummary(opts.spec, plan) : undefined;
  const summary = opts.genome ? pruneSummary(opts.spec, opts.genome) : planSummary;
  // The head genome a plan implies, for the provenance's removed heads (and pruned_heads when only heads go).
  const genome = opts.genome ?? (plan ? planGenome(opts.spec.config, plan) : undefined);
  // transformers 4.x's pruned_heads removes heads only: a plan that narrows an MLP or skips a block gets none.
  const headsOnly =
    plan === undefined ||
    plan.channels.every(
      (kept, i) =>
        !plan.skipMlp[i] && !plan.skipAttention[i] && kept.length === intermediateOf(opts.spec.config, i),
    );
  const arch = archOf(spec.config);
  const wantsHf = opts.format === 'hf' || opts.format === 'all';
  const emptyLayer = hfSpec.config.headsPerLayer.findIndex((h) => h === 0);
  if (!arch.export.compactHeadlessLayer && wantsHf && emptyLayer >= 0) {
    throw flagError(
      '--hf-layout',
      `layer ${emptyLayer} keeps no heads, which transformers' ${spec.config.modelType} attention cannot run in the compact layout: use --hf-layout padded (or --format transformersjs)`,
    );
  }
  const hf = specToHf(hfSpec, {
    prunedHeads: genome && headsOnly ? prunedHeadsOf(opts.spec, genome) : undefined,
  });
  if (wantsHf && opts.dtype) await refuseNarrowingOverflow(hf.tensors, opts.dtype);
  // A compact decoder with per-layer sizes: the Python classes that build it, named by auto_map.
  const autoMap = wantsHf && !padded ? remoteCodeAutoMap(hf.config) : undefined;
  const tmp = partialDirFor(target);
  const files: string[] = [];
  let weightSparsity: SparsityReport | undefined;
  try {
    try {
      await makeDirectory(tmp);
    } catch (e) {
      throw fileError(out, `cannot create the output directory: ${describeFsError(e)}`, e);
    }
    const w = opts.weightMask;
    const provenance =
      genome || w
        ? await provenanceOfPruning(opts.original ?? opts.spec, {
            ...(opts.maskFile ?? opts.planFile ?? {}),
            ...(opts.recovered ? { recovered: opts.recovered } : {}),
            removed: genome ? removedList(opts.spec.config, genome) : [],
            ...(planSummary
              ? {
                  structured: {
                    widths: planSummary.keptWidths,
                    skippedAttention: planSummary.skippedAttention,
                    skippedMlp: planSummary.skippedMlp,
                  },
                }
              : {}),
            ...(w ? { weightMask: { sha256: w.sha256, path: w.path, sparsity: w.sparsity } } : {}),
          })
        : opts.spec.provenance;
    const stored = new Set([...hf.tensors.values()].map((t) => opts.dtype ?? storedFloatOf(t.dtype)));
    const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' } as const;
    const wantsOnnx = opts.format === 'transformersjs' || opts.format === 'all';
    const external =
      wantsOnnx && packedWeightBytes(spec) > (opts.externalDataThreshold ?? DEFAULT_EXTERNAL_DATA_THRESHOLD);
    const graphFiles = arch.generationGraphs ? ENCDEC_GRAPHS : ['model.onnx'];
    const config = {
      ...hf.config,
      ...(autoMap ? { auto_map: autoMap } : {}),
      // What model.safetensors holds (the ONNX graph computes in fp32 whatever the storage).
      ...(stored.size === 1 ? { torch_dtype: torchDtype[[...stored][0]] } : {}),
      ...(external
        ? {
            [TRANSFORMERS_JS_CONFIG]: {
              use_external_data_format: Object.fromEntries(graphFiles.map((f) => [f, 1])),
            },
          }
        : {}),
      // Always a record, empty lineage when nothing was pruned: it is how a later --force knows an export.
      [PROVENANCE_CONFIG_KEY]: provenance ?? UNPRUNED,
    };
    if (wantsHf) {
      opts.onStatus?.('writing model.safetensors');
      const metadata = provenance ? { [PROVENANCE_METADATA_KEY]: JSON.stringify(provenance) } : undefined;
      await writeHfFolder(tmp, { config, tensors: hf.tensors, metadata, dtype: opts.dtype });
      files.push('config.json', 'model.safetensors');
      if (autoMap) {
        await copyFile(modelingFilePath(), join(tmp, MODELING_FILE));
        files.push(MODELING_FILE);
      }
    } else {
      await writeJsonAtomic(join(tmp, 'config.json'), config);
      files.push('config.json');
    }
    const c = spec.config;
    if (arch.export.generationConfig) {
      await writeJsonAtomic(join(tmp, 'generation_config.json'), {
        ...(c.encdec ? await sourceGenerationConfig(opts.modelPath) : {}),
        ...(c.bosTokenId !== undefined ? { bos_token_id: c.bosTokenId } : {}),
        ...(c.eosTokenId !== undefined ? { eos_token_id: c.eosTokenId } : {}),
        // transformers.js starts the decoder with this id and pads finished rows with pad_token_id.
        ...(c.encdec
          ? { decoder_start_token_id: c.encdec.decoderStartTokenId, pad_token_id: c.padTokenId ?? 0 }
          : {}),
      });
      files.push('generation_config.json');
    }
    if (opts.tokenizerPath) files.push(...(await copyTokenizer(opts.tokenizerPath, tmp, c.vocabSize)));
    if (wantsOnnx) {
      const onnxDir = join(tmp, 'onnx');
      await mkdir(onnxDir);
      if (arch.generationGraphs) {
        files.push(...(await writeEncDecGraphs(spec, onnxDir, external, opts.onStatus)));
      } else {
        let weights: Weights;
        if (external) {
          opts.onStatus?.('writing onnx/model.onnx_data');
          weights = await writeWeights(spec, onnxDir, 'model.onnx_data', { atomic: true });
          files.push('onnx/model.onnx_data');
        } else weights = await loadWeights(spec);
        opts.onStatus?.('building onnx/model.onnx');
        const graph = arch.export.deployGraph(spec, weights);
        for (const f of await writeOnnxModel(onnxDir, 'model.onnx', graph)) files.push(`onnx/${f}`);
      }
    }
    if (w) {
      opts.onStatus?.('counting the zeros of the written weights');
      // A padded model.safetensors also holds the removed heads' zeros: count the compact ONNX graph when there is one.
      weightSparsity =
        padded && wantsOnnx
          ? await writtenSparsity(
              tmp,
              spec,
              files.filter((f) => f !== 'model.safetensors'),
            )
          : await writtenSparsity(tmp, padded ? hfSpec : spec, files);
    }
    await replaceDirectory(tmp, target);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    throw e;
  }
  const hc = hfSpec.config;
  const loaders = wantsHf
    ? hfLoadersOf(spec, autoMap ? { ...hf.config, auto_map: autoMap } : hf.config, {
        padded,
        perLayer:
          hc.headsPerLayer.some((h) => h !== hc.numHeads) ||
          hc.kvHeadsPerLayer.some((k) => k !== hc.numKvHeads) ||
          hc.intermediatePerLayer !== undefined,
        onnx: opts.format === 'all',
        structured: plan !== undefined,
      })
    : undefined;
  return {
    out,
    files,
    summary,
    ...(weightSparsity ? { weightSparsity } : {}),
    ...(loaders ? { loaders } : {}),
  };
}
