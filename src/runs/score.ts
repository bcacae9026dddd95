/**
 * The step every run ends with: score the pruned model and the dense model on some data, each in a session
 * opened for it and released before the next one opens (a 1B model's second copy would double the peak), or,
 * where the dense model is the same weights with no masks, in the pruned model's session (masks are graph
 * inputs, so one session serves both). The evaluation data, the multiple-choice and generation tasks, the
 * labelled items (data.ts, choices.ts, tasks.ts) and each space's calibration scores all go through here.
 */
import type { CandidateMasks } from '../engine/runner.js';
import type { ModelSpec } from '../model/spec.js';

export interface Releasable {
  release(): Promise<void>;
}

/** Opens a session, uses it, and releases it whatever happens. */
export async function withSession<R extends Releasable, T>(
  open: () => Promise<R>,
  use: (session: R) => Promise<T>,
): Promise<T> {
  const session = await open();
  try {
    return await use(session);
  } finally {
    await session.release();
  }
}

/**
 * Where the dense model is scored: a model of its own (`spec`, in a session of its own), the pruned model's
 * session without masks ('same-session'), or nowhere (undefined: an earlier result gives its scores, as for
 * recovered weights, which have no dense model of their own).
 */
export type DenseSide = { spec: ModelSpec } | 'same-session' | undefined;

/**
 * Scores `spec` under `masks`, then the dense model as `dense` says. `open` opens a session for a model (the
 * masks it will be given, undefined for the dense model); `score` scores in it (masks undefined: the dense model).
 */
export async function scoreDenseAndPruned<R extends Releasable, T>(p: {
  open: (spec: ModelSpec, masks: CandidateMasks | undefined) => Promise<R>;
  score: (session: R, masks: CandidateMasks | undefined) => Promise<T>;
  spec: ModelSpec;
  masks: CandidateMasks;
  dense: DenseSide;
}): Promise<{ pruned: T; dense?: T }> {
  const { open, score, spec, masks, dense } = p;
  if (dense === 'same-session') {
    return withSession(
      () => open(spec, masks),
      async (session) => {
        const pruned = await score(session, masks);
        return { pruned, dense: await score(session, undefined) };
      },
    );
  }
  const pruned = await withSession(
    () => open(spec, masks),
    (session) => score(session, masks),
  );
  if (dense === undefined) return { pruned };
  return {
    pruned,
    dense: await withSession(
      () => open(dense.spec, undefined),
      (session) => score(session, undefined),
    ),
  };
}
