/**
 * A block objective as a recipe (search/backend.ts `BlockRecipe`) and back: `blockRecipe` writes what an
 * evaluator needs to rebuild block l's scorer — the model reference, the searched matrices, the calibration
 * batches entering block 0, the fixed blocks' keep masks, the engine — and `blockRecipeScorer` rebuilds it there.
 *
 * The hidden states entering block l are not in the recipe: the evaluator replays the walk from block 0 with the
 * fixed masks (engine/blocks.ts enterBlock, blockpasses.ts advanceHidden), the path a resumed block search takes
 * and the one the search itself took, so the states are the same numbers. Shipping them instead would cost
 * batch × seq × d × 4 bytes per block per evaluator (hundreds of MB on a 134M model, across a network for a
 * queue); replaying costs l block passes, about one candidate's suffix pass (docs/notes-pool.md, measured).
 * Those replay passes are the evaluator's set-up, not candidate passes: the search counts the walk's passes
 * once, in its own thread, as a one-process run does.
 */
import { enterBlock } from '../../engine/blocks.js';
import type { TokenBatch } from '../../engine/runner.js';
import { GenepruneError } from '../../errors.js';
import { metricEntry } from '../../metrics/registry.js';
import type { CalibrationScorer } from '../../metrics/scorers.js';
import type { ModelSpec } from '../../model/spec.js';
import type { BlockRecipe } from '../../search/backend.js';
import type { BlockObjectiveInput, BlockRemote } from './blockobjective.js';
import { createBlockScorer } from './blockobjective.js';
import { advanceHidden } from './blockpasses.js';
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
    fixed: [...input.fixed],
    engine: { ...input.engine },
  };
}

/**
 * Block `recipe.layer`'s scorer on `spec` (the model the evaluator opened): the walk replayed from block 0 to the
 * block with the fixed masks, then the block objective's own scorer (blockobjective.ts createBlockScorer) on the
 * hidden states it reached. Its record is computed from what was replayed, so an evaluator whose replay drifted
 * would not match the search's record.
 */
export async function blockRecipeScorer(spec: ModelSpec, recipe: BlockRecipe): Promise<CalibrationScorer> {
  const where = 'block recipe';
  if (metricEntry(recipe.metric).blockSearch !== 'suffix') {
    throw new GenepruneError('internal', `a block recipe scores the perplexity, not ${recipe.metric}`, where);
  }
  const L = spec.config.numLayers;
  if (!Number.isInteger(recipe.layer) || recipe.layer < 0 || recipe.layer >= L) {
    throw new GenepruneError('internal', `block ${recipe.layer} is not a block of a ${L}-block model`, where);
  }
  const roles = new Set(spec.tensors.keys());
  const unknown = recipe.matrices.find((m) => !roles.has(m.role));
  if (unknown) throw new GenepruneError('model', `the model has no matrix ${unknown.role}`, where);
  const fixed = new Map(recipe.fixed);
  const engine = recipe.engine;
  let batches: readonly TokenBatch[] = recipe.batches;
  let hidden: Float32Array[] | undefined;
  for (let l = 0; l < recipe.layer; l++) {
    ({ batches, hidden } = enterBlock(spec.config, l, batches, hidden));
    const masks = new Map<string, Uint8Array>();
    for (const m of blockLayout(recipe.matrices, l).matrices) {
      const keep = fixed.get(m.role);
      if (!keep || keep.length !== m.rows * m.cols) {
        throw new GenepruneError('internal', `no keep mask of ${m.rows * m.cols} for ${m.role}`, where);
      }
      masks.set(m.role, keep);
    }
    hidden = await advanceHidden(spec, l, batches, hidden, masks, engine);
  }
  ({ batches, hidden } = enterBlock(spec.config, recipe.layer, batches, hidden));
  return createBlockScorer({
    spec,
    block: blockLayout(recipe.matrices, recipe.layer),
    batches,
    hidden,
    metric: recipe.metric,
    engine,
    fixed,
  });
}
