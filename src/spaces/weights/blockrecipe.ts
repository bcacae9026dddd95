/**
 * A block objective as a recipe (search/backend.ts `BlockRecipe`) and back: `blockRecipe` writes what an
 * evaluator needs to rebuild block l's scorer — the model reference, the searched matrices, the calibration
 * batches entering block 0, the fixed blocks' keep masks, the engine — and `blockRecipeScorer` rebuilds it there.
 *
 * The hidden states entering block l are not in the recipe: the evaluator replays the walk from block 0 with the
 * fixed masks (engine/blocks.ts enterBlock, blockpasses.ts advanceHidden), the path a resumed block search takes
 * and the one the search itself took, so the states are the same numbers. Shipping them instead would cost
 * batch × seq × d × 4 bytes per block per evaluator (hundreds of MB on a 134M model, across a network for a
 * queue); replaying costs l block passes, about one candidate's suffix pass (docs/distributed.md, measured).
 * Those replay passes are the evaluator's set-up, not candidate passes: the search counts the walk's passes
 * once, in its own thread, as a one-process run does.
 */
import { enterBlock } from '../../engine/blocks.js';
import { createOrtGemm } from '../../engine/gemm.js';
import type { TokenBatch } from '../../engine/runner.js';
import { GenepruneError } from '../../errors.js';
import { bitsetBytes, bitsetFromBytes, packBits, unpackBits } from '../../masks/bitset.js';
import { metricEntry } from '../../metrics/registry.js';
import type { CalibrationScorer } from '../../metrics/scorers.js';
import type { ModelSpec } from '../../model/spec.js';
import { type BlockRecipe, plainGenerationOptions } from '../../search/backend.js';
import type { BleuObjectiveOptions } from '../../search/objective.js';
import type { BlockObjectiveInput, BlockRemote } from './blockobjective.js';
import { createBleuScorer, createBlockScorer } from './blockobjective.js';
import { advanceHidden, recoverBlock } from './blockpasses.js';
import { blockLayout } from './blockspace.js';

/** The recipe of the block objective `input` describes: the model as `remote.model` names it, the walk's start. */
export function blockRecipe(input: BlockObjectiveInput, remote: Omit<BlockRemote, 'backend'>): BlockRecipe {
  return {
    kind: 'block',
    model: remote.model,
    config: JSON.stringify(input.spec.config),
    metric: input.metric,
    layer: input.block.layer,
    matrices: remote.matrices.map(({ role, layer, rows, cols }) => ({ role, layer, rows, cols })),
    batches: [...remote.batches],
    // Packed 8 to a byte: at late blocks of a large model the fixed masks are most of the recipe.
    fixed: [...input.fixed].map(([role, keep]) => [role, bitsetBytes(packBits(keep))]),
    engine: { ...input.engine },
    ...(remote.bleu ? plainGenerationOptions(remote.bleu) : {}),
    ...(input.recover ? { recover: { damping: input.recover.damping } } : {}),
    ...(input.scoresDense !== undefined ? { scoresDense: input.scoresDense } : {}),
  };
}

/**
 * Where the last replay of this thread stood: the hidden states leaving block `layer − 1` (and the batches as
 * the walk had them) of the walk a recipe describes. The next block's recipe of the same walk (same model,
 * engine, batches, and the same fixed masks up to `layer`) goes on from there: one block pass per block, as the
 * search's own walk, instead of replaying from block 0 each time.
 */
interface ReplayedWalk {
  key: string;
  batches: readonly TokenBatch[];
  layer: number;
  /** The fixed masks the walk was replayed with (blocks < layer). */
  fixed: ReadonlyMap<string, Uint8Array>;
  entering: readonly TokenBatch[];
  hidden: Float32Array[] | undefined;
  /** The model as the walk left it (earlier blocks recovered, with `--recover`). */
  spec: ModelSpec;
}

let lastWalk: ReplayedWalk | undefined;

/** Whether two batch lists hold the same numbers (typed arrays compared byte for byte). */
function sameBatches(a: readonly TokenBatch[], b: readonly TokenBatch[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as unknown as Record<string, unknown>;
    const y = b[i] as unknown as Record<string, unknown>;
    const keys = new Set([...Object.keys(x), ...Object.keys(y)]);
    for (const k of keys) {
      const u = x[k];
      const v = y[k];
      if (ArrayBuffer.isView(u) && ArrayBuffer.isView(v)) {
        const bu = Buffer.from(u.buffer, u.byteOffset, u.byteLength);
        if (!bu.equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength))) return false;
      } else if (u !== v) return false;
    }
  }
  return true;
}

/** Where a recipe's replay can start: the last walk of this thread when the recipe continues it, else block 0. */
function replayStart(recipe: BlockRecipe, key: string, fixed: ReadonlyMap<string, Uint8Array>) {
  const w = lastWalk;
  const fresh = {
    layer: 0,
    entering: recipe.batches as readonly TokenBatch[],
    hidden: undefined,
    spec: undefined,
  };
  if (!w || w.key !== key || w.layer > recipe.layer || !sameBatches(w.batches, recipe.batches)) return fresh;
  for (const [role, keep] of w.fixed) {
    const now = fixed.get(role);
    if (!now || !Buffer.from(now.buffer, now.byteOffset, now.length).equals(keep)) return fresh;
  }
  return { layer: w.layer, entering: w.entering, hidden: w.hidden, spec: w.spec };
}

/**
 * Block `recipe.layer`'s scorer on `spec` (the model the evaluator opened): the walk replayed to the block with
 * the fixed masks — from block 0, or from where this thread's last replay of the same walk stopped — then the
 * block objective's own scorer (blockobjective.ts createBlockScorer) on the hidden states it reached. Its record
 * is computed from what was replayed, so an evaluator whose replay drifted would not match the search's record.
 */
export async function blockRecipeScorer(
  spec: ModelSpec,
  recipe: BlockRecipe,
  bleu?: BleuObjectiveOptions,
): Promise<CalibrationScorer> {
  const where = 'block recipe';
  const scoring = metricEntry(recipe.metric).blockSearch;
  if (scoring === undefined) {
    throw new GenepruneError('internal', `a block search does not score ${recipe.metric}`, where);
  }
  const L = spec.config.numLayers;
  if (!Number.isInteger(recipe.layer) || recipe.layer < 0 || recipe.layer >= L) {
    throw new GenepruneError('internal', `block ${recipe.layer} is not a block of a ${L}-block model`, where);
  }
  const roles = new Set(spec.tensors.keys());
  const unknown = recipe.matrices.find((m) => !roles.has(m.role));
  if (unknown) throw new GenepruneError('model', `the model has no matrix ${unknown.role}`, where);
  const sizes = new Map(recipe.matrices.map((m) => [m.role, m.rows * m.cols]));
  const fixed = new Map<string, Uint8Array>();
  for (const [role, bits] of recipe.fixed) {
    const n = sizes.get(role);
    if (n === undefined || bits.length !== Math.ceil(n / 8)) {
      throw new GenepruneError('internal', `the fixed mask of ${role} does not fit the matrix`, where);
    }
    fixed.set(role, unpackBits(bitsetFromBytes(bits, n)));
  }
  const engine = recipe.engine;
  if (scoring === 'generation') return generationBlockScorer(spec, recipe, fixed, bleu);
  const key = JSON.stringify([recipe.model, recipe.config, engine, recipe.matrices, recipe.recover ?? null]);
  const start = replayStart(recipe, key, fixed);
  let batches = start.entering;
  let hidden = start.hidden;
  // `--recover` inside the walk (the seeded GAs): each fixed block recovered before the next, as the search did.
  let walked = start.spec ?? spec;
  const products = recipe.recover ? await createOrtGemm(engine) : undefined;
  for (let l = start.layer; l < recipe.layer; l++) {
    ({ batches, hidden } = enterBlock(spec.config, l, batches, hidden));
    const masks = new Map<string, Uint8Array>();
    for (const m of blockLayout(recipe.matrices, l).matrices) {
      const keep = fixed.get(m.role);
      if (!keep) throw new GenepruneError('internal', `no fixed mask for ${m.role}`, where);
      masks.set(m.role, keep);
    }
    if (recipe.recover) {
      walked = await recoverBlock(
        walked,
        l,
        masks,
        batches,
        hidden,
        recipe.recover.damping,
        engine,
        products!,
      );
    }
    hidden = await advanceHidden(walked, l, batches, hidden, masks, engine);
  }
  lastWalk = {
    key,
    batches: recipe.batches,
    layer: recipe.layer,
    fixed,
    entering: batches,
    hidden,
    spec: walked,
  };
  ({ batches, hidden } = enterBlock(spec.config, recipe.layer, batches, hidden));
  try {
    const scorer = await createBlockScorer({
      spec: walked,
      block: blockLayout(recipe.matrices, recipe.layer),
      batches,
      hidden,
      metric: recipe.metric,
      engine,
      fixed,
      ...(recipe.recover ? { recover: { damping: recipe.recover.damping, products: products! } } : {}),
      ...(recipe.scoresDense !== undefined ? { scoresDense: recipe.scoresDense } : {}),
    });
    return products ? releasingToo(scorer, products) : scorer;
  } catch (e) {
    await products?.release();
    throw e;
  }
}

/**
 * A generation metric's block scorer: whole-model generations of the calibration task with the fixed blocks'
 * masks and the candidate's, on a 'row_logits' session of this evaluator (released with the scorer). No walk:
 * the blocks after the searched one are dense, those before it masked, in one graph.
 */
async function generationBlockScorer(
  spec: ModelSpec,
  recipe: BlockRecipe,
  fixed: ReadonlyMap<string, Uint8Array>,
  bleu: BleuObjectiveOptions | undefined,
): Promise<CalibrationScorer> {
  const generation = await createBleuScorer(spec, recipe.matrices, bleu, recipe.engine, recipe.metric);
  try {
    const scorer = await createBlockScorer({
      spec,
      block: blockLayout(recipe.matrices, recipe.layer),
      batches: recipe.batches,
      hidden: undefined,
      metric: recipe.metric,
      engine: recipe.engine,
      fixed,
      bleu: generation,
    });
    return releasingToo(scorer, generation);
  } catch (e) {
    await generation.release();
    throw e;
  }
}

/** `scorer`, whose release also releases what was opened for it alone (after the scorer's own sessions). */
function releasingToo(scorer: CalibrationScorer, owned: { release(): Promise<void> }): CalibrationScorer {
  return {
    ...scorer,
    runner: {
      release: async () => {
        await scorer.runner.release();
        await owned.release();
      },
    },
  };
}
