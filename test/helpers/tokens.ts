/** Fixed token streams for tests that need tokens but no data file. */

/**
 * `n` token ids in 1 … range, a linear congruential sequence from `seed` (the same every run, spread over the
 * range; id 0, often a special token, is never drawn).
 */
export function lcgTokens(n: number, seed: number, range: number): number[] {
  const out: number[] = [];
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out.push(1 + (x % range));
  }
  return out;
}
