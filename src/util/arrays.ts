/**
 * Array helpers for data-sized arrays. Spreading an array into call arguments (`push(...docs)`,
 * `Math.max(...values)`) puts every element on the stack, and V8 throws "Maximum call stack size exceeded"
 * somewhere past ~100k elements, so code that may see a data set's worth of items uses these loops instead.
 */

/** Appends every element of `items` to `target` (push(...items) without the stack limit). */
export function pushAll<T>(target: T[], items: Iterable<T>): void {
  for (const item of items) target.push(item);
}

/** The largest value, -Infinity when there is none (Math.max(...values) without the stack limit). */
export function maxOf(values: Iterable<number>): number {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    // NaN wins, as it does in Math.max.
    if (v > max || Number.isNaN(v)) max = v;
    if (Number.isNaN(max)) return max;
  }
  return max;
}

/** The smallest value, Infinity when there is none (Math.min(...values) without the stack limit). */
export function minOf(values: Iterable<number>): number {
  let min = Number.POSITIVE_INFINITY;
  for (const v of values) {
    if (v < min || Number.isNaN(v)) min = v;
    if (Number.isNaN(min)) return min;
  }
  return min;
}
