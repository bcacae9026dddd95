/**
 * Exact match of a generated text against its reference (seq2seq tasks: does the model reproduce the target).
 *
 * Normalisation, and nothing else: trailing whitespace is removed from every line, and whitespace (blank lines
 * included) is removed from both ends of the whole text. Lines are split on '\n' only; a '\r' before it is
 * trailing whitespace, so CRLF and LF texts compare equal. "Whitespace" is Python's `str.isspace` (as the BLEU
 * tokens use). Case, inner spacing, indentation after the first line and blank lines between lines all count.
 */
import { dataError } from '../errors.js';
import { PY_SPACE_CLASS } from './bleu.js';

const TRAILING = new RegExp(`${PY_SPACE_CLASS}+$`);
const LEADING = new RegExp(`^${PY_SPACE_CLASS}+`);

/** The text exact match compares: every line right-stripped, then the whole stripped at both ends. */
export function normalizeForExactMatch(text: string): string {
  const lines = text.split('\n').map((line) => line.replace(TRAILING, ''));
  return lines.join('\n').replace(TRAILING, '').replace(LEADING, '');
}

/** True when hypothesis and reference are equal after `normalizeForExactMatch`. */
export function exactMatch(hypothesis: string, reference: string): boolean {
  return normalizeForExactMatch(hypothesis) === normalizeForExactMatch(reference);
}

/** The share of pairs that match exactly, 0–1. */
export function exactMatchRate(hypotheses: readonly string[], references: readonly string[]): number {
  if (hypotheses.length === 0) throw dataError('exact-match', 'no hypotheses given');
  if (references.length !== hypotheses.length) {
    throw dataError(
      'exact-match',
      `${hypotheses.length} hypotheses but ${references.length} references (one reference per hypothesis)`,
    );
  }
  let matches = 0;
  for (let i = 0; i < hypotheses.length; i++) if (exactMatch(hypotheses[i], references[i])) matches++;
  return matches / hypotheses.length;
}
