/**
 * `--recover` for a head run, once its mask.json is written (search.ts): o refitted on the calibration windows
 * after the mask's heads are removed, written to recovered-weights.safetensors, and scored before and after.
 */
import { join } from 'node:path';
import { type Genome, removedList } from '../../masks/heads.js';
import { writeRecoveredWeights } from '../../masks/recovered.js';
import { isPerplexity } from '../../metrics/registry.js';
import type { ModelSpec } from '../../model/spec.js';
import { RECOVERY_DAMPING } from '../../prune/recover.js';
import { recoverHeadRemoval } from '../../prune/recover-heads.js';
import { recoveryBatches, scoreOnEval } from '../../runs/data.js';
import { RECOVERED_WEIGHTS_FILE, RUN_FILES } from '../../runs/files.js';
import type { HeadRecoveryReport } from '../../runs/results.js';
import { withSession } from '../../runs/score.js';
import { quotedBest } from '../../search/progress.js';
import { sha256File } from '../../util/fs.js';
import { createHeadObjective } from './objective.js';
import type { HeadSearchEnv, Prepared } from './prepare.js';
import type { HeadSearchSettings } from './settings.js';

/** Calibration perplexity of `spec` under the genome's head mask, in a session of its own. */
function calibPerplexity(
  spec: ModelSpec,
  s: HeadSearchSettings,
  p: Prepared,
  genome: Genome,
  env: HeadSearchEnv,
): Promise<{ perplexity: number; forwardPasses: number }> {
  const open = () =>
    createHeadObjective(spec, {
      stream: p.stream,
      context: p.context,
      metric: 'ppl',
      tokens: s.calibTokens,
      batchSize: s.batchSize,
      device: env.device,
      threads: env.threads,
      dtype: s.dtype,
    });
  return withSession(open, async (objective) => {
    const r = await objective.evaluate(genome);
    return { perplexity: r.quality, forwardPasses: objective.forwardPasses() };
  });
}

/**
 * `--recover`, once mask.json is written: o refitted layer by layer on the calibration windows
 * (prune/recover-heads.ts), written to RECOVERED_WEIGHTS_FILE with the model's fingerprint, the removed heads and
 * mask.json's sha256, and the recovered model scored under the mask on calibration and evaluation data.
 */
export async function recoverInDir(
  dir: string,
  s: HeadSearchSettings,
  p: Prepared,
  genome: Genome,
  scored: { calibScore: { quality: number }; evalScore: { perplexity: number } },
  env: HeadSearchEnv,
): Promise<HeadRecoveryReport> {
  const t0 = performance.now();
  const spec = p.model.spec;
  let passes = 0;
  // The search's calibration score is the perplexity unless it searched on KL.
  let beforeCalib = scored.calibScore.quality;
  if (!isPerplexity(s.metric)) {
    const b = await calibPerplexity(spec, s, p, genome, env);
    beforeCalib = b.perplexity;
    passes += b.forwardPasses;
  }
  env.onStatus?.('recovery: refitting o on the calibration activations, layer by layer');
  const before = quotedBest('ppl', beforeCalib, p.objective.space.sparsity(genome), 'before recovery');
  const batches = recoveryBatches(p.stream, {
    context: p.context,
    tokens: s.calibTokens,
    label: s.calib,
    vocabSize: spec.config.vocabSize,
    batchSize: s.batchSize,
  });
  const rec = await recoverHeadRemoval(spec, genome, {
    batches,
    device: env.device,
    threads: env.threads,
    onLayer: (done, total) => {
      env.onProgress?.(done, total);
      env.onSearchUpdate?.({
        method: s.method,
        phase: 'recovery',
        step: `recovery, layer ${done}/${total}`,
        fraction: total > 0 ? done / total : 1,
        best: before,
        count: done,
        unit: 'layers',
      });
    },
  });
  passes += rec.forwardPasses;
  const weights = join(dir, RECOVERED_WEIGHTS_FILE);
  await writeRecoveredWeights(
    weights,
    spec,
    rec.spec,
    rec.roles,
    {
      kind: 'head',
      sha256: await sha256File(join(dir, RUN_FILES.mask)),
      removed: removedList(spec.config, genome),
    },
    RECOVERY_DAMPING,
  );
  env.onStatus?.('scoring the recovered model');
  const after = await calibPerplexity(rec.spec, s, p, genome, env);
  passes += after.forwardPasses;
  const space = p.objective.space;
  const evalAfter = await scoreOnEval(
    { ...p, model: { ...p.model, spec: rec.spec } },
    s,
    space.masks(genome),
    env,
    {
      dense: false,
    },
  );
  return {
    before: { calibPerplexity: beforeCalib, evalPerplexity: scored.evalScore.perplexity },
    after: { calibPerplexity: after.perplexity, evalPerplexity: evalAfter.perplexity },
    weights,
    tokens: batches.reduce((a, b) => a + b.valid!.reduce((x, y) => x + y, 0), 0),
    damping: RECOVERY_DAMPING,
    forwardPasses: passes,
    seconds: (performance.now() - t0) / 1000,
    reconstruction: rec.layers,
  };
}
