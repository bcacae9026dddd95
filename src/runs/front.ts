/**
 * An NSGA-II run's front and the one rule that picks a mask from it. The run (runs/algorithms.ts) picks its
 * mask.json with `pickFromFront`, writes the same pick as each generation's best in generations.jsonl, the report
 * marks it, the dashboard computes it from each logged front (`pickOfLoggedFront`) and `geneprune pick` applies
 * it to front.json: one function, so no view can show a different pick than the run makes.
 *
 * A point's size is its number of removed units, round(sparsity × genes); the target is a number of units too.
 */
import { flagError } from '../errors.js';
import { fastNonDominatedSort } from '../search/nsga.js';

/** A point of a front as front.json and generations.jsonl hold it (genome in the space's 0/1 text). */
export interface FrontPoint {
  genome: string;
  quality: number;
  sparsity: number;
  keptParameters: number;
}

/** What a pick needs of a point (views that did not record kept parameters tie-break without them). */
export interface PickablePoint {
  genome: string;
  quality: number;
  sparsity: number;
  keptParameters?: number;
}

/** What a pick chose, and whether it is at the target size. */
export interface FrontPick<P> {
  point: P;
  /** Its index in the front given. */
  index: number;
  removed: number;
  targetRemoved: number;
  atTarget: boolean;
}

/** The NSGA-II pick's target when the run was given no --target-sparsity. */
export const DEFAULT_PICK_SPARSITY = 0.25;

/** Units the pick should remove: round(target share × genes), the default share without a target. */
export function targetRemovedOf(targetSparsity: number | undefined, genes: number): number {
  return Math.round((targetSparsity ?? DEFAULT_PICK_SPARSITY) * genes);
}

export function removedUnits(p: { sparsity: number }, genes: number): number {
  return Math.round(p.sparsity * genes);
}

/** Lower quality first, a non-finite one last (a failed score is worse than any). */
function byQuality(a: number, b: number): number {
  const fa = Number.isFinite(a);
  const fb = Number.isFinite(b);
  if (fa !== fb) return fa ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The front's best-quality point that removes exactly `targetRemoved` units; when no point does, the point of
 * the nearest size (`atTarget` false). Ties: better quality, then fewer kept parameters, then the genome text,
 * so the pick depends on the points alone, not their order. Undefined for an empty front.
 */
export function pickFromFront<P extends PickablePoint>(
  front: readonly P[],
  genes: number,
  targetRemoved: number,
): FrontPick<P> | undefined {
  let best: FrontPick<P> | undefined;
  front.forEach((point, index) => {
    const removed = removedUnits(point, genes);
    const c: FrontPick<P> = { point, index, removed, targetRemoved, atTarget: removed === targetRemoved };
    if (!best) {
      best = c;
      return;
    }
    const order =
      Math.abs(c.removed - targetRemoved) - Math.abs(best.removed - targetRemoved) ||
      byQuality(c.point.quality, best.point.quality) ||
      (c.point.keptParameters ?? 0) - (best.point.keptParameters ?? 0) ||
      byText(c.point.genome, best.point.genome);
    if (order < 0) best = c;
  });
  return best;
}

/**
 * The non-dominated set of (quality ↓, kept parameters ↓) over every distinct mask scored, by kept parameters
 * ascending (then quality, then genome). Masks whose score is not finite are left out while any is finite: a
 * failed mask at the smallest size would otherwise sit on the front only for being small.
 */
export function frontOfArchive(points: readonly FrontPoint[]): FrontPoint[] {
  const finite = points.filter((p) => Number.isFinite(p.quality));
  const pool = finite.length > 0 ? finite : [...points];
  const [first = []] = fastNonDominatedSort(pool.map((p) => [p.quality, p.keptParameters]));
  return first
    .map((i) => pool[i])
    .sort(
      (a, b) =>
        a.keptParameters - b.keptParameters || byQuality(a.quality, b.quality) || byText(a.genome, b.genome),
    );
}

/**
 * The pick a run made at one generation, from that generation's line in generations.jsonl: `pickFromFront` over
 * the front the line holds (the archive's non-dominated set when it was written, the points the run picked
 * from) at the run's target, so a view of the log (the dashboard) shows the very pick the run made. Points that
 * are not a 0/1 genome with a share are skipped; a score logged as null (not finite) counts as NaN, as the run
 * had it. Undefined when no point is left.
 */
export function pickOfLoggedFront(
  front: unknown,
  targetSparsity: number | undefined,
): FrontPick<PickablePoint> | undefined {
  if (!Array.isArray(front)) return undefined;
  const finite = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : undefined);
  const points: PickablePoint[] = [];
  for (const f of front as Array<Record<string, unknown> | null>) {
    const genome = f?.genome;
    const sparsity = finite(f?.sparsity);
    if (typeof genome !== 'string' || !/^[01]+$/.test(genome) || sparsity === undefined) continue;
    const kept = finite(f?.keptParameters);
    points.push({
      genome,
      quality: finite(f?.quality) ?? Number.NaN,
      sparsity,
      ...(kept === undefined ? {} : { keptParameters: kept }),
    });
  }
  if (points.length === 0) return undefined;
  const genes = points[0].genome.length;
  return pickFromFront(points, genes, targetRemovedOf(targetSparsity, genes));
}

/** A `--pick` value: `sparsity=S` (the run's rule at that target) or a 0-based index into front.json. */
export type PickSpec = { kind: 'sparsity'; sparsity: number } | { kind: 'index'; index: number };

export function parsePick(text: string, flag = '--pick'): PickSpec {
  const t = text.trim();
  if (/^\d+$/.test(t)) return { kind: 'index', index: Number(t) };
  const m = /^sparsity=(.+)$/.exec(t);
  if (m) {
    const s = Number(m[1]);
    if (m[1].trim() !== '' && Number.isFinite(s) && s >= 0 && s <= 1)
      return { kind: 'sparsity', sparsity: s };
    throw flagError(flag, `sparsity must be a share in [0, 1], got "${m[1]}"`);
  }
  throw flagError(flag, `expected sparsity=S (e.g. sparsity=0.25) or a front index (e.g. 3), got "${text}"`);
}

/** Applies a `--pick` to a front; refuses an index past its end. */
export function pickBySpec<P extends FrontPoint>(
  front: readonly P[],
  genes: number,
  spec: PickSpec,
  flag = '--pick',
): FrontPick<P> {
  if (front.length === 0) throw flagError(flag, 'the front is empty');
  if (spec.kind === 'index') {
    if (spec.index >= front.length)
      throw flagError(
        flag,
        `index ${spec.index} is past the front's end (${front.length} points: 0–${front.length - 1})`,
      );
    const point = front[spec.index];
    const removed = removedUnits(point, genes);
    return { point, index: spec.index, removed, targetRemoved: removed, atTarget: true };
  }
  return pickFromFront(front, genes, Math.round(spec.sparsity * genes))!;
}

/** The words a run says when its pick is not at the target size. */
export function offTargetText(
  pick: { removed: number; targetRemoved: number },
  genes: number,
  unit = 'heads',
): string {
  return `no front point removes ${pick.targetRemoved}/${genes} ${unit} (the target); picked the nearest size, ${pick.removed}/${genes}`;
}
