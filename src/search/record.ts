/**
 * The serialisable record of an objective: what a worker on another machine needs to rebuild the same objective
 * and check that it did — the model's identity (fingerprint and shape), the search space's genes, the metric,
 * the sha256 of the exact data each fidelity scores (token windows, or the encoded task items), the fidelity and
 * batch settings, and for a block objective the block index. Plain JSON: `JSON.parse(JSON.stringify(r))` equals
 * `r`. Building an objective from a record belongs to distributed evaluation; this module only writes it.
 *
 * The objective factories (`objective.ts`) register what each objective was built from (`registerObjective`);
 * `objectiveRecord` reads that registration, so the record cannot drift from the live objective's settings.
 */
import { createHash } from 'node:crypto';
import { GenepruneError } from '../errors.js';
import { type ModelIdentity, modelIdentity } from '../model/identity.js';
import type { ModelSpec } from '../model/spec.js';
import type { Fidelity, Objective, QualityMetric } from './objective.js';

/** The settings an objective was built with (only those that change what it computes). */
export interface ObjectiveSettings {
  /** Context length of the token windows (token metrics). */
  context?: number;
  /** Tokens scored at 'full' and at 'low' fidelity (token metrics). */
  tokens?: number;
  lowTokens?: number;
  /** Task items scored at 'full' and at 'low' fidelity (task metrics). */
  items?: number;
  lowItems?: number;
  /** Rows or prompts per forward pass. */
  batchSize?: number;
  /** BLEU: new tokens per prompt and which BLEU. */
  maxNewTokens?: number;
  bleu?: string;
  /** Multiple choice: the accuracy's normalisation. */
  norm?: string;
  /** Compute dtype of the sessions (default fp32). */
  dtype?: string;
  /** Block searches with --recover: the ridge damping of each candidate's recovery. */
  damping?: number;
}

export interface ObjectiveRecord {
  version: 1;
  model: ModelIdentity;
  space: { unit: string; genes: number; totalParameters: number; weightRoles?: string[] };
  metric: QualityMetric;
  /** sha256 of what each fidelity scores, and where it came from (for messages). */
  data: { full: string; low: string; source?: string };
  settings: ObjectiveSettings;
  /** A block objective's block (the block search's layer), when it is one. */
  block?: number;
}

interface Registration {
  spec: ModelSpec;
  settings: ObjectiveSettings;
  /** The data each fidelity scores, hashed only when a record is asked for. */
  data: Record<Fidelity, unknown>;
  source?: string;
}

const registered = new WeakMap<object, Registration>();

/** Records what `objective` was built from (called by the objective factories). Returns the objective. */
export function registerObjective<T extends object>(objective: T, r: Registration): T {
  registered.set(objective, r);
  return objective;
}

/** sha256 of a value's canonical JSON, typed arrays written as arrays. */
export function digest(value: unknown): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify(value, (_k, v) =>
      ArrayBuffer.isView(v) && !(v instanceof DataView) ? Array.from(v as unknown as ArrayLike<number>) : v,
    ),
  );
  return h.digest('hex');
}

/** The record of a live objective made by `createObjective` (its spec's fingerprint is computed once per spec). */
export async function objectiveRecord<G>(
  objective: Pick<Objective<G>, 'space' | 'metric'>,
  opts: { block?: number } = {},
): Promise<ObjectiveRecord> {
  const r = registered.get(objective);
  if (!r)
    throw new GenepruneError('internal', 'objectiveRecord: the objective was not made by createObjective');
  const full = digest(r.data.full);
  const space = objective.space;
  return {
    version: 1,
    model: await modelIdentity(r.spec),
    space: {
      unit: space.unit,
      genes: space.genes,
      totalParameters: space.totalParameters,
      ...(space.weightRoles ? { weightRoles: [...space.weightRoles] } : {}),
    },
    metric: objective.metric,
    data: {
      full,
      low: r.data.low === r.data.full ? full : digest(r.data.low),
      ...(r.source !== undefined ? { source: r.source } : {}),
    },
    settings: Object.fromEntries(
      Object.entries(r.settings).filter(([, v]) => v !== undefined),
    ) as ObjectiveSettings,
    ...(opts.block !== undefined ? { block: opts.block } : {}),
  };
}
