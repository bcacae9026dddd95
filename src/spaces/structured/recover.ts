/**
 * `structured --recover`, once plan.json is written (run.ts finish): the plan's o and down projections refitted
 * on the run's calibration windows (prune/recover-structured.ts, sequential inputs), written to the run's
 * recovered-weights.safetensors (masks/recovered.ts, kind "structured"), and the plan scored before and after on
 * the calibration and evaluation data (perplexity, the plan's masks on both models). `--flap-bias` (method flap)
 * runs FLAP's bias compensation the same way instead of the least squares. A plan that leaves nothing to refit
 * (it removes nothing, or only whole blocks) writes no file and says so in the report.
 */
import { join } from 'node:path';
import { createRunner } from '../../engine/runner.js';
import { flagError } from '../../errors.js';
import { planDigest, writeRecoveredWeights } from '../../masks/recovered.js';
import { type StructuredPlan, structuredMasksOf } from '../../masks/structured.js';
import { defaultBatchSize, evaluatePerplexity, makeWindows, type Windows } from '../../metrics/perplexity.js';
import type { ModelSpec } from '../../model/spec.js';
import {
  hasProjectionBiases,
  planNeedsRecovery,
  RECOVERY_DAMPING,
  recoverStructuredRemoval,
  type StructuredRecoveryLinear,
  type StructuredRefit,
} from '../../prune/recover-structured.js';
import { type RunData, type RunEnv, recoveryBatches } from '../../runs/data.js';
import { RECOVERED_WEIGHTS_FILE } from '../../runs/files.js';
import { sha256File } from '../../util/fs.js';
import type { StructuredSearchSettings } from './settings.js';

/** result.json's `recovery`: what the refit did, or why there was nothing to refit. */
export type StructuredRecoveryReport =
  | {
      /** Calibration and evaluation perplexity of the plan before (dense weights) and after recovery. */
      before: { calibPerplexity: number; evalPerplexity: number };
      after: { calibPerplexity: number; evalPerplexity: number };
      weights: string;
      planDigest: string;
      /** Calibration tokens the refit read. */
      tokens: number;
      damping: number;
      inputs: 'sequential';
      /** --recover: 'least-squares'; --flap-bias: 'flap-bias' (only the biases move). */
      refit: StructuredRefit;
      /** Σ of the refitted blocks' calibration output errors (Σ_t ‖ŷ − y‖², y the dense weights' output). */
      blockError: { masked: number; recovered: number };
      linears: StructuredRecoveryLinear[];
      forwardPasses: number;
      seconds: number;
    }
  | { skipped: string };

/**
 * Refuses, before the run starts, what recovery cannot do: --recover / --flap-bias on a labelled (classification)
 * run, which has no calibration text to refit on nor evaluation perplexity to report; --flap-bias for a model whose
 * o and down have no bias — the compensation would need one, and neither the family's graphs nor its exports carry
 * it (LLaMA and the other bias-free families).
 */
export function refuseUnrecoverable(s: StructuredSearchSettings, data: RunData): void {
  const spec = data.model.spec;
  if ((s.recover || s.flapBias) && data.stream.length < 2)
    throw flagError(
      s.recover ? '--recover' : '--flap-bias',
      'refits on calibration text and reports perplexity: not built for labelled (classification) data',
    );
  if (s.flapBias && !hasProjectionBiases(spec))
    throw flagError(
      '--flap-bias',
      `the ${spec.config.modelType} model's o and down projections have no bias to hold the compensation (its graphs and exports carry none)`,
    );
}

/** Perplexity of `spec` under the plan's masks on `windows`, in a session of its own. */
async function planPerplexity(
  spec: ModelSpec,
  plan: StructuredPlan,
  windows: Windows,
  s: StructuredSearchSettings,
  env: RunEnv,
): Promise<number> {
  const runner = await createRunner(spec, {
    output: 'nll',
    device: env.device,
    threads: env.threads,
    dtype: s.dtype,
    structuredMasks: true,
  });
  try {
    const batchSize = s.batchSize ?? defaultBatchSize(windows.context, spec.config.vocabSize);
    const r = await evaluatePerplexity(runner, windows, {
      masks: structuredMasksOf(spec.config, plan),
      batchSize,
    });
    return r.perplexity;
  } finally {
    await runner.release();
  }
}

/** Refits the plan's o and down in `dir` (see the module comment); `evalBefore` is the run's own eval score. */
export async function recoverPlanInDir(
  dir: string,
  s: StructuredSearchSettings,
  data: RunData,
  plan: StructuredPlan,
  evalBefore: number,
  env: RunEnv,
): Promise<StructuredRecoveryReport> {
  const spec = data.model.spec;
  const refit: StructuredRefit = s.flapBias ? 'flap-bias' : 'least-squares';
  if (!planNeedsRecovery(spec, plan, refit)) {
    const skipped =
      'the plan removes no head or channel of a block it keeps: there is nothing to refit, and no recovered weights were written';
    env.onNote?.(`${s.flapBias ? '--flap-bias' : '--recover'}: ${skipped}`);
    return { skipped };
  }
  const t0 = performance.now();
  env.onStatus?.(
    refit === 'flap-bias'
      ? "recovery: FLAP's bias compensation of o and down, layer by layer"
      : 'recovery: refitting o and down on the calibration activations, layer by layer',
  );
  const batches = recoveryBatches(data.stream, {
    context: data.context,
    tokens: s.calibTokens,
    label: s.calib,
    vocabSize: spec.config.vocabSize,
    batchSize: s.batchSize,
  });
  const rec = await recoverStructuredRemoval(spec, plan, {
    batches,
    inputs: 'sequential',
    refit,
    device: env.device,
    threads: env.threads,
    onLayer: (done, total) => env.onStatus?.(`recovery: layer ${done}/${total}`),
  });
  const weights = join(dir, RECOVERED_WEIGHTS_FILE);
  await writeRecoveredWeights(
    weights,
    spec,
    rec.spec,
    rec.roles,
    { kind: 'structured', sha256: await sha256File(join(dir, 'plan.json')), plan },
    RECOVERY_DAMPING,
  );
  env.onStatus?.('scoring the recovered model');
  const calib = makeWindows(data.stream, data.context, s.calibTokens, s.calib);
  const evalWindows = makeWindows(data.evalStream, data.context, s.evalTokens, s.eval);
  const before = await planPerplexity(spec, plan, calib, s, env);
  const after = await planPerplexity(rec.spec, plan, calib, s, env);
  const evalAfter = await planPerplexity(rec.spec, plan, evalWindows, s, env);
  return {
    before: { calibPerplexity: before, evalPerplexity: evalBefore },
    after: { calibPerplexity: after, evalPerplexity: evalAfter },
    weights,
    planDigest: planDigest(plan),
    tokens: batches.reduce((a, b) => a + b.valid!.reduce((x, y) => x + y, 0), 0),
    damping: RECOVERY_DAMPING,
    inputs: 'sequential',
    refit,
    blockError: {
      masked: rec.linears.reduce((a, l) => a + l.maskedError, 0),
      recovered: rec.linears.reduce((a, l) => a + l.recoveredError, 0),
    },
    linears: rec.linears,
    forwardPasses: rec.forwardPasses,
    seconds: (performance.now() - t0) / 1000,
  };
}
