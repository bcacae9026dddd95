/**
 * `geneprune pick`: a head-mask file from a finished NSGA-II run's front.json, by target sparsity (the run's own
 * rule, runs/front.ts) or by index. The file is a normal head-mask file (masks/headfile.ts) for the run's model.
 * The point the run itself picked gives its mask.json as it is, byte for byte; any other point gives the same
 * file with that point's genome and calibration score and no evaluation score, since the run scored only its
 * own pick on the evaluation data (`geneprune eval --mask` scores another).
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { resolveModelRef } from '../../checkpoint/hub.js';
import { fileError, flagError } from '../../errors.js';
import { type HeadMaskFile, makeMaskFile } from '../../masks/headfile.js';
import { loadModelSpec } from '../../model/load.js';
import { RUN_FILES } from '../../runs/files.js';
import {
  type FrontPick,
  type FrontPoint,
  type PickSpec,
  pickBySpec,
  removedUnits,
  targetRemovedOf,
} from '../../runs/front.js';
import { refuseForeignModel } from '../../runs/resume.js';
import { HEAD_RUN_KIND, readRunConfig } from '../../runs/rundir.js';
import { writeTextAtomic } from '../../util/fs.js';
import type { HeadSearchSettings } from './settings.js';

export interface PickedMask {
  /** Where the mask went. */
  out: string;
  pick: FrontPick<FrontPoint>;
  genes: number;
  /** Whether the point is the one the run picked (the file is then its mask.json). */
  runsOwn: boolean;
  /** The units the run's own rule would remove without --pick (its target). */
  runTargetRemoved: number;
  mask: HeadMaskFile;
}

/** front.json's points, checked: each a 0/1 genome of the run's gene count with its numbers. */
async function readFront(dir: string, genes: number): Promise<FrontPoint[]> {
  const path = join(dir, RUN_FILES.front);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw fileError(path, 'missing: the NSGA-II run has not finished (front.json is written at its end)');
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw fileError(path, 'front.json is corrupt (not valid JSON)');
  }
  if (!Array.isArray(v)) throw fileError(path, 'front.json is corrupt (not a list of points)');
  return v.map((p, i) => {
    const ok =
      typeof p === 'object' &&
      p !== null &&
      typeof p.genome === 'string' &&
      p.genome.length === genes &&
      /^[01]+$/.test(p.genome) &&
      [p.quality, p.sparsity, p.keptParameters].every((x) => typeof x === 'number' && Number.isFinite(x)) &&
      removedUnits(p, genes) === [...p.genome].filter((c) => c === '0').length;
    if (!ok) throw fileError(path, `point ${i} is not a ${genes}-gene head mask with its scores`);
    return p as FrontPoint;
  });
}

/**
 * Picks a point of the NSGA-II run in `dir` and writes its head-mask file to `out` (refused when `out` exists).
 * The model is loaded from the run's config to describe the mask, and must be the run's.
 */
export async function pickHeadMask(dir: string, spec: PickSpec, out: string): Promise<PickedMask> {
  const config = await readRunConfig(dir, HEAD_RUN_KIND);
  if (config.method !== 'nsga') {
    throw flagError(
      '--pick',
      `${dir} is a ${String(config.method)} run: only an NSGA-II run has a front to pick from (its mask is ${join(dir, RUN_FILES.mask)})`,
    );
  }
  if (await stat(out).catch(() => undefined))
    throw fileError(out, 'exists: choose another --out, or remove it');
  const s = config.settings as HeadSearchSettings;
  const heads = (config.model as { shape?: { queryHeads?: unknown } } | undefined)?.shape?.queryHeads;
  if (!Array.isArray(heads)) throw fileError(join(dir, RUN_FILES.config), 'records no per-layer model shape');
  const genes = heads.reduce((a: number, b) => a + Number(b), 0);
  const front = await readFront(dir, genes);
  const pick = pickBySpec(front, genes, spec);

  const maskPath = join(dir, RUN_FILES.mask);
  const ownText = await readFile(maskPath, 'utf8').catch(() => undefined);
  let own: HeadMaskFile | undefined;
  if (ownText !== undefined) {
    try {
      own = JSON.parse(ownText) as HeadMaskFile;
    } catch {
      throw fileError(maskPath, 'mask.json is corrupt (not valid JSON)');
    }
    if (!Array.isArray(own?.keep)) throw fileError(maskPath, 'mask.json is corrupt (no keep list)');
  }
  const runsOwn = own !== undefined && own.keep.join('') === pick.point.genome;
  let mask: HeadMaskFile;
  let text: string;
  if (runsOwn) {
    mask = own!;
    text = ownText!;
  } else {
    const resolved = await resolveModelRef(s.model);
    const model = await loadModelSpec(resolved.modelPath);
    await refuseForeignModel(dir, config, model, resolved.modelPath);
    const genome = Uint8Array.from(pick.point.genome, (c) => (c === '1' ? 1 : 0));
    mask = await makeMaskFile(model, genome, {
      method: 'nsga',
      runDir: dir,
      calibration: { path: s.calib, metric: s.metric, quality: pick.point.quality },
      frontIndex: pick.index,
    });
    text = `${JSON.stringify(mask, null, 2)}\n`;
  }
  await writeTextAtomic(out, text);
  return { out, pick, genes, runsOwn, runTargetRemoved: targetRemovedOf(s.targetSparsity, genes), mask };
}
