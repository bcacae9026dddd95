/**
 * Structured plan files: the result of a structured search (or a baseline), accepted by `export --structured`.
 *
 *   { "format": "geneprune-structured-plan", "version": 1,
 *     "model": { "source": path, "modelType": ..., "fingerprint": sha256 over all weights, "shape": {...} },
 *     "numLayers": L, "headsPerLayer": [...], "widthsPerLayer": [...],      what the model has
 *     "plan": { "heads": [[...]], "channels": [[...]], "skipAttention": [...], "skipMlp": [...] },
 *     "kept": { "heads": [...], "kvHeads": [...], "widths": [...] },       what the plan leaves (layerShapes)
 *     "info": {...} }
 *
 * `plan` is a StructuredPlan (masks/structured.ts states its semantics): per layer the query heads and MLP channels
 * kept, in the numbering of those present, ascending, and the blocks skipped. Like a head-mask file
 * (masks/headfile.ts) it is accepted only by the model whose fingerprint it records (masks/identity.ts says why
 * not otherwise), and every field besides `plan` restates the plan or the model: a file where one contradicts
 * them is refused as corrupt, since whoever reads the file without geneprune would believe it.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileError, GenepruneError } from '../errors.js';
import { type ModelIdentity, modelIdentity } from '../model/identity.js';
import { intermediateOf, type ModelSpec } from '../model/spec.js';
import { refuseSpecialFile, writeJsonAtomic } from '../util/fs.js';
import { refuseForeignMask } from './identity.js';
import { checkPlan, type LayerShapes, layerShapes, type StructuredPlan } from './structured.js';

export const STRUCTURED_PLAN_FORMAT = 'geneprune-structured-plan';
export const STRUCTURED_PLAN_VERSION = 1;

export interface StructuredPlanFile {
  format: typeof STRUCTURED_PLAN_FORMAT;
  version: typeof STRUCTURED_PLAN_VERSION;
  model: ModelIdentity & { source: string };
  numLayers: number;
  /** Query heads present per layer in the model. */
  headsPerLayer: number[];
  /** MLP width present per layer in the model. */
  widthsPerLayer: number[];
  plan: StructuredPlan;
  /** What the plan leaves of each layer. */
  kept: { heads: number[]; kvHeads: number[]; widths: number[] };
  /** Free-form provenance: method, budget, metrics, run directory. */
  info?: Record<string, unknown>;
}

const widthsOf = (spec: ModelSpec) =>
  Array.from({ length: spec.config.numLayers }, (_, i) => intermediateOf(spec.config, i));

const keptOf = (s: LayerShapes) => ({ heads: s.heads, kvHeads: s.kvHeads, widths: s.widths });

/** The file's content for `plan` on `spec` (the plan is checked against the model first). */
export async function makeStructuredPlanFile(
  spec: ModelSpec,
  plan: StructuredPlan,
  info?: Record<string, unknown>,
): Promise<StructuredPlanFile> {
  checkPlan(spec.config, plan);
  return {
    format: STRUCTURED_PLAN_FORMAT,
    version: STRUCTURED_PLAN_VERSION,
    model: { ...(await modelIdentity(spec)), source: spec.source },
    numLayers: spec.config.numLayers,
    headsPerLayer: [...spec.config.headsPerLayer],
    widthsPerLayer: widthsOf(spec),
    plan: {
      heads: plan.heads.map((h) => [...h]),
      channels: plan.channels.map((c) => [...c]),
      skipAttention: [...plan.skipAttention],
      skipMlp: [...plan.skipMlp],
    },
    kept: keptOf(layerShapes(spec.config, plan)),
    ...(info ? { info } : {}),
  };
}

/** Writes the plan file atomically (a reader never sees half a file). */
export async function writeStructuredPlanFile(
  path: string,
  spec: ModelSpec,
  plan: StructuredPlan,
  info?: Record<string, unknown>,
): Promise<StructuredPlanFile> {
  const file = await makeStructuredPlanFile(spec, plan, info);
  await writeJsonAtomic(path, file);
  return file;
}

/** A plan file read and checked against a model. */
export interface LoadedStructuredPlan {
  path: string;
  plan: StructuredPlan;
  /** sha256 of the file's bytes (what a pruned export records as the plan it applied). */
  sha256: string;
  file: StructuredPlanFile;
}

const isIndexLists = (v: unknown): v is number[][] =>
  Array.isArray(v) && v.every((l) => Array.isArray(l) && l.every((x) => Number.isInteger(x)));
const isFlags = (v: unknown): v is boolean[] => Array.isArray(v) && v.every((x) => typeof x === 'boolean');

/** Reads a plan file and checks it against the model; refuses a plan made for any other model. */
export async function loadStructuredPlanFile(path: string, spec: ModelSpec): Promise<LoadedStructuredPlan> {
  await refuseSpecialFile(path, 'structured plan file');
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw fileError(path, `cannot read structured plan file (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  let f: Partial<StructuredPlanFile>;
  try {
    f = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw fileError(path, 'structured plan file is not valid JSON');
  }
  if (f?.format !== STRUCTURED_PLAN_FORMAT) {
    throw fileError(
      path,
      `not a geneprune structured plan file (format field is not "${STRUCTURED_PLAN_FORMAT}")`,
    );
  }
  if (f.version !== STRUCTURED_PLAN_VERSION) {
    throw fileError(path, `unsupported structured plan file version ${JSON.stringify(f.version)}`);
  }
  const p = f.plan as Partial<StructuredPlan> | undefined;
  if (
    !p ||
    !isIndexLists(p.heads) ||
    !isIndexLists(p.channels) ||
    !isFlags(p.skipAttention) ||
    !isFlags(p.skipMlp)
  ) {
    throw fileError(
      path,
      '"plan" must hold heads and channels (lists of index lists) and skipAttention and skipMlp (lists of true/false)',
    );
  }
  const plan: StructuredPlan = {
    heads: p.heads,
    channels: p.channels,
    skipAttention: p.skipAttention,
    skipMlp: p.skipMlp,
  };
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  await refuseForeignMask(path, spec, f.model);
  try {
    checkPlan(spec.config, plan);
  } catch (e) {
    if (e instanceof GenepruneError) throw fileError(path, e.message);
    throw e;
  }
  const expected: Array<[keyof StructuredPlanFile, unknown]> = [
    ['numLayers', spec.config.numLayers],
    ['headsPerLayer', [...spec.config.headsPerLayer]],
    ['widthsPerLayer', widthsOf(spec)],
    ['kept', keptOf(layerShapes(spec.config, plan))],
  ];
  for (const [field, value] of expected) {
    if (JSON.stringify(f[field]) !== JSON.stringify(value)) {
      throw fileError(
        path,
        `"${field}" is ${JSON.stringify(f[field]) ?? 'missing'} but the plan and model give ${JSON.stringify(value)}: the file is corrupt or was edited`,
      );
    }
  }
  return { path, plan, sha256, file: f as StructuredPlanFile };
}
