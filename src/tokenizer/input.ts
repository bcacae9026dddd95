/**
 * Fitting one model input into a length limit, shared by the tokenizer kinds. The special tokens of the template
 * are never cut: only the texts' own tokens are, from their ends.
 */
import { dataError } from '../errors.js';

/**
 * How many tokens each text keeps within `budget` (the limit minus the template's special tokens), the way
 * Hugging Face's 'longest_first' does it: a pair that fits is kept whole; otherwise the shorter text keeps all its
 * tokens when that leaves it no longer than the other, and the longer gets the rest; when both are longer than
 * half the budget each gets half, the odd token going to the text that was longer (to the second on a tie).
 */
export function longestFirstLengths(first: number, second: number, budget: number): [number, number] {
  if (first + second <= budget) return [first, second];
  const shorter = Math.min(first, second);
  let keepShorter: number;
  let keepLonger: number;
  if (2 * shorter <= budget) {
    keepShorter = shorter;
    keepLonger = budget - shorter;
  } else {
    keepShorter = Math.floor(budget / 2);
    keepLonger = budget - keepShorter;
  }
  return first > second ? [keepLonger, keepShorter] : [keepShorter, keepLonger];
}

/** The token budget left for the texts, or a one-line error when maxLength is unusable. */
export function textBudget(source: string, maxLength: number | undefined, specials: number): number {
  if (maxLength === undefined) return Number.POSITIVE_INFINITY;
  if (!Number.isInteger(maxLength) || maxLength < 1) {
    throw dataError(source, `maxLength must be a positive integer, got ${maxLength}`);
  }
  if (maxLength < specials) {
    throw dataError(
      source,
      `maxLength ${maxLength} cannot hold the ${specials} special tokens the tokenizer adds to this input`,
    );
  }
  return maxLength - specials;
}
