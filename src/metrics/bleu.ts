/**
 * BLEU (Papineni et al., 2002), in the two forms people report:
 *
 * - `corpusBleu`: sacreBLEU's corpus BLEU with its defaults — tokenizer 13a (mteval-v13a's), case-sensitive,
 *   n-grams up to 4, clipped counts against the element-wise maximum over a segment's references, brevity penalty
 *   from the sum over segments of the reference length closest to each hypothesis (ties: the shorter), 'exp'
 *   smoothing (the k-th order with no match counts 1/2^k), no effective order. Same numbers as
 *   `sacrebleu.corpus_bleu(hyps, refs)` / `BLEU().corpus_score(hyps, refs)` (tests: sacreBLEU's own published
 *   values). `sentenceBleu` is `sacrebleu.sentence_bleu` (effective order on, as sacreBLEU sets it there).
 * - `sentenceMeanBleu`: what the GenePrune authors' code reports — the mean over segments of NLTK's
 *   `sentence_bleu(refs.split(), hyp.split(), weights=(0.25,)*4, smoothing_function=SmoothingFunction().method1)`
 *   (whitespace tokens, case-sensitive; method1 replaces a zero match count by epsilon = 0.1).
 *
 * Every score here is on sacreBLEU's 0–100 scale (NLTK and the GenePrune code print 0–1: divide by 100), except
 * `nltkSentenceBleu`, which mirrors NLTK's function and returns 0–1.
 *
 * References come in sacreBLEU's layout: `references[k][i]` is the k-th reference of segment i (one array per
 * reference set, each as long as the hypotheses). An empty string or null there means "segment i has no k-th
 * reference" (sacreBLEU's variable number of references); a segment left with none is refused.
 */
import { dataError } from '../errors.js';

export type BleuTokenizer = '13a' | 'intl' | 'char' | 'none';
export type BleuSmoothing = 'exp' | 'floor' | 'add-k' | 'none';
/** Which BLEU a task reports: sacreBLEU's corpus BLEU, or the mean of NLTK sentence BLEUs (GenePrune's code). */
export type BleuKind = 'corpus' | 'sentence-mean';
export const BLEU_KINDS: readonly BleuKind[] = ['corpus', 'sentence-mean'];

export interface BleuOptions {
  /** Default '13a'. */
  tokenize?: BleuTokenizer;
  /** Lowercase hypotheses and references first (default false: case-sensitive). */
  lowercase?: boolean;
  /** Default 'exp'. */
  smoothMethod?: BleuSmoothing;
  /** 'floor' default 0.1, 'add-k' default 1; ignored by the others. */
  smoothValue?: number;
  /** Default 4. */
  maxNgramOrder?: number;
  /** Average only over the orders the hypotheses have n-grams of (default false; sentenceBleu: true). */
  effectiveOrder?: boolean;
}

export interface BleuScore {
  /** 0–100. */
  score: number;
  /** Clipped n-gram matches per order (1..maxNgramOrder). */
  counts: number[];
  /** Hypothesis n-grams per order. */
  totals: number[];
  /** Precision per order, 0–100 (smoothed where a count is 0). */
  precisions: number[];
  /** Brevity penalty. */
  bp: number;
  /** Hypothesis tokens, summed over segments. */
  sysLen: number;
  /** Closest reference tokens, summed over segments. */
  refLen: number;
}

/** Sufficient statistics of one segment (sacreBLEU's): lengths, matches and totals per order. */
export interface BleuStatistics {
  sysLen: number;
  refLen: number;
  correct: number[];
  total: number[];
}

/**
 * Python's `str.split()` with no argument: runs of Unicode whitespace as `str.isspace` defines it (which, unlike
 * JavaScript's \s, includes U+001C–U+001F and U+0085 and excludes U+FEFF); no empty strings.
 */
export const PY_SPACE_CLASS =
  '[\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';
const PY_WHITESPACE = new RegExp(`${PY_SPACE_CLASS}+`);
const PY_TRAILING_WHITESPACE = new RegExp(`${PY_SPACE_CLASS}+$`);
export function splitWhitespace(text: string): string[] {
  return text.split(PY_WHITESPACE).filter((t) => t.length > 0);
}

/** Python's `str.rstrip()`. */
function rstrip(text: string): string {
  const m = PY_TRAILING_WHITESPACE.exec(text);
  return m ? text.slice(0, m.index) : text;
}

// mteval-v13a's language-dependent rules, as sacreBLEU's TokenizerRegexp applies them in this order. The first
// class is { | } ~, [ \ ] ^ _ `, space ! " # $ % &, ( ) * +, : ; < = > ? @ and /: every ASCII punctuation mark
// except ' , - . (digits and letters never).
const RE_PUNCT = /([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40\x2f])/gu;
// Period and comma are split off unless preceded by a digit...
const RE_PERIOD_COMMA_AFTER = /([^0-9])([.,])/gu;
// ... and unless followed by a digit.
const RE_PERIOD_COMMA_BEFORE = /([.,])([^0-9])/gu;
// A dash after a digit.
const RE_DASH_AFTER_DIGIT = /([0-9])(-)/gu;

/** sacreBLEU's '13a' tokenizer (mteval-v13a.pl's): tokens joined by single spaces. */
export function tokenize13a(line: string): string {
  // Language-independent part.
  line = line
    .replaceAll('<skipped>', '')
    .replaceAll('-\n', '')
    .replaceAll('\n', ' ')
    .replaceAll('&quot;', '"')
    .replaceAll('&amp;', '&')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>');
  line = ` ${line} `
    .replace(RE_PUNCT, ' $1 ')
    .replace(RE_PERIOD_COMMA_AFTER, '$1 $2 ')
    .replace(RE_PERIOD_COMMA_BEFORE, ' $1 $2')
    .replace(RE_DASH_AFTER_DIGIT, '$1 $2 ');
  return splitWhitespace(line).join(' ');
}

/** sacreBLEU's 'intl' tokenizer (mteval-v14's international one): Unicode punctuation and symbols split off. */
export function tokenizeIntl(line: string): string {
  line = line
    .replace(/(\P{N})(\p{P})/gu, '$1 $2 ')
    .replace(/(\p{P})(\P{N})/gu, ' $1 $2')
    .replace(/(\p{S})/gu, ' $1 ');
  return splitWhitespace(line).join(' ');
}

/** sacreBLEU's 'char' tokenizer: every code point a token (whitespace drops out when n-grams are split). */
export function tokenizeChar(line: string): string {
  return [...line].join(' ');
}

function tokenizer(name: BleuTokenizer): (line: string) => string {
  switch (name) {
    case '13a':
      return tokenize13a;
    case 'intl':
      return tokenizeIntl;
    case 'char':
      return tokenizeChar;
    case 'none':
      return (line) => line;
    default:
      throw dataError('bleu', `unknown tokenizer "${name}" (13a, intl, char or none)`);
  }
}

/** n-gram → count for orders 1..maxOrder; keys join tokens with U+0001, which no token contains. */
function ngramCounts(tokens: string[], maxOrder: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      const key = `${n}\x01${tokens.slice(i, i + n).join('\x01')}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

function orderOf(key: string): number {
  return Number(key.slice(0, key.indexOf('\x01')));
}

/** The reference length closest to `hypLen`; on a tie the shorter (mteval-v13a, sacreBLEU and NLTK agree). */
export function closestRefLength(hypLen: number, refLens: number[]): number {
  let best = refLens[0];
  for (const r of refLens) {
    const d = Math.abs(hypLen - r);
    const bd = Math.abs(hypLen - best);
    if (d < bd || (d === bd && r < best)) best = r;
  }
  return best;
}

function checkOptions(
  opts: BleuOptions,
): Required<Omit<BleuOptions, 'smoothValue'>> & { smoothValue?: number } {
  const maxNgramOrder = opts.maxNgramOrder ?? 4;
  if (!Number.isInteger(maxNgramOrder) || maxNgramOrder < 1) {
    throw dataError('bleu', `maxNgramOrder must be a positive integer (got ${maxNgramOrder})`);
  }
  const smoothMethod = opts.smoothMethod ?? 'exp';
  if (!['exp', 'floor', 'add-k', 'none'].includes(smoothMethod)) {
    throw dataError('bleu', `unknown smoothing "${smoothMethod}" (exp, floor, add-k or none)`);
  }
  return {
    tokenize: opts.tokenize ?? '13a',
    lowercase: opts.lowercase ?? false,
    smoothMethod,
    smoothValue: opts.smoothValue,
    maxNgramOrder,
    effectiveOrder: opts.effectiveOrder ?? false,
  };
}

/**
 * BLEU from summed statistics, as sacreBLEU's `BLEU.compute_bleu` (whose default smoothing, unlike the
 * metric's, is 'none'): no match at all gives 0; an order with no hypothesis n-grams ends the product there (its
 * precision stays 0, so the score is 0 unless effective order stops the average before it).
 */
export function bleuFromStatistics(
  correct: number[],
  total: number[],
  sysLen: number,
  refLen: number,
  opts: BleuOptions = {},
): BleuScore {
  const o = checkOptions({ smoothMethod: 'none', ...opts });
  const order = o.maxNgramOrder;
  if (correct.length !== order || total.length !== order) {
    throw dataError(
      'bleu',
      `statistics need ${order} counts and totals (got ${correct.length}, ${total.length})`,
    );
  }
  const smoothValue =
    o.smoothValue ?? (o.smoothMethod === 'floor' ? 0.1 : o.smoothMethod === 'add-k' ? 1 : 0);
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const counts = [...correct];
  const totals = [...total];
  const precisions = new Array<number>(order).fill(0);
  if (!counts.some((c) => c !== 0)) {
    return { score: 0, counts, totals, precisions, bp, sysLen, refLen };
  }
  let smoothMteval = 1;
  let effOrder = order;
  for (let n = 1; n <= order; n++) {
    if (o.smoothMethod === 'add-k' && n > 1) {
      counts[n - 1] += smoothValue;
      totals[n - 1] += smoothValue;
    }
    if (totals[n - 1] === 0) break;
    if (o.effectiveOrder) effOrder = n;
    if (counts[n - 1] === 0) {
      if (o.smoothMethod === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * totals[n - 1]);
      } else if (o.smoothMethod === 'floor') {
        precisions[n - 1] = (100 * smoothValue) / totals[n - 1];
      }
    } else {
      precisions[n - 1] = (100 * counts[n - 1]) / totals[n - 1];
    }
  }
  let logSum = 0;
  for (let n = 0; n < effOrder; n++) logSum += precisions[n] > 0 ? Math.log(precisions[n]) : -9999999999;
  return { score: bp * Math.exp(logSum / effOrder), counts, totals, precisions, bp, sysLen, refLen };
}

function prepare(o: ReturnType<typeof checkOptions>): (line: string) => string[] {
  const tok = tokenizer(o.tokenize);
  return (line) => splitWhitespace(tok(rstrip(o.lowercase ? line.toLowerCase() : line)));
}

/** The references of each segment, empty/null ones dropped; refuses ragged input and reference-less segments. */
function segmentReferences(
  hypotheses: readonly string[],
  references: readonly (readonly (string | null | undefined)[])[],
): string[][] {
  if (hypotheses.length === 0) throw dataError('bleu', 'no hypotheses given');
  if (references.length === 0) throw dataError('bleu', 'no references given');
  for (let k = 0; k < references.length; k++) {
    if (references[k].length !== hypotheses.length) {
      throw dataError(
        'bleu',
        `reference set ${k + 1} has ${references[k].length} segments, the hypotheses ${hypotheses.length}`,
      );
    }
  }
  return hypotheses.map((h, i) => {
    if (typeof h !== 'string') throw dataError('bleu', `hypothesis ${i + 1} is not a string`);
    const refs = references
      .map((set) => set[i])
      .filter((r): r is string => typeof r === 'string' && r !== '');
    if (refs.length === 0) throw dataError('bleu', `segment ${i + 1} has no reference (empty or missing)`);
    return refs;
  });
}

/** sacreBLEU's statistics of one segment (tokens already split). */
function segmentStatistics(hyp: string[], refs: string[][], maxOrder: number): BleuStatistics {
  const refMax = new Map<string, number>();
  for (const ref of refs) {
    for (const [k, c] of ngramCounts(ref, maxOrder)) refMax.set(k, Math.max(refMax.get(k) ?? 0, c));
  }
  const correct = new Array<number>(maxOrder).fill(0);
  const total = new Array<number>(maxOrder).fill(0);
  for (const [k, c] of ngramCounts(hyp, maxOrder)) {
    const n = orderOf(k) - 1;
    total[n] += c;
    correct[n] += Math.min(c, refMax.get(k) ?? 0);
  }
  return {
    sysLen: hyp.length,
    refLen: closestRefLength(
      hyp.length,
      refs.map((r) => r.length),
    ),
    correct,
    total,
  };
}

/** Per-segment statistics (sacreBLEU's), e.g. to sum over shards or resample. */
export function bleuSegmentStatistics(
  hypotheses: readonly string[],
  references: readonly (readonly (string | null | undefined)[])[],
  opts: BleuOptions = {},
): BleuStatistics[] {
  const o = checkOptions(opts);
  const toTokens = prepare(o);
  return segmentReferences(hypotheses, references).map((refs, i) =>
    segmentStatistics(
      toTokens(hypotheses[i]),
      refs.map((r) => toTokens(r)),
      o.maxNgramOrder,
    ),
  );
}

/** Corpus BLEU, 0–100, equal to sacreBLEU's `corpus_bleu(hypotheses, references, **opts)`. */
export function corpusBleu(
  hypotheses: readonly string[],
  references: readonly (readonly (string | null | undefined)[])[],
  opts: BleuOptions = {},
): BleuScore {
  const o = checkOptions(opts);
  const stats = bleuSegmentStatistics(hypotheses, references, o);
  const correct = new Array<number>(o.maxNgramOrder).fill(0);
  const total = new Array<number>(o.maxNgramOrder).fill(0);
  let sysLen = 0;
  let refLen = 0;
  for (const s of stats) {
    sysLen += s.sysLen;
    refLen += s.refLen;
    for (let n = 0; n < o.maxNgramOrder; n++) {
      correct[n] += s.correct[n];
      total[n] += s.total[n];
    }
  }
  return bleuFromStatistics(correct, total, sysLen, refLen, o);
}

/** Sentence BLEU, 0–100, equal to sacreBLEU's `sentence_bleu(hypothesis, references)` (effective order on). */
export function sentenceBleu(
  hypothesis: string,
  references: readonly string[],
  opts: BleuOptions = {},
): BleuScore {
  return corpusBleu(
    [hypothesis],
    references.map((r) => [r]),
    { effectiveOrder: true, ...opts },
  );
}

export interface NltkBleuOptions {
  /** Weights per order (default 0.25 × 4: BLEU-4). */
  weights?: readonly number[];
  /**
   * NLTK's SmoothingFunction: 'method0' (NLTK's default: a zero match count makes its precision the smallest
   * normal double, so the score is ~0) or 'method1' (a zero match count becomes epsilon; GenePrune's choice).
   */
  smoothing?: 'method0' | 'method1';
  /** method1's epsilon (default 0.1, NLTK's). */
  epsilon?: number;
}

/** The smallest normal double, Python's `sys.float_info.min` (method0's stand-in for a zero precision). */
const FLOAT_MIN = 2.2250738585072014e-308;

/**
 * NLTK's `sentence_bleu(references, hypothesis, weights, smoothing_function)` on token lists, 0–1: modified
 * precision per order (clipped matches over max(1, hypothesis n-grams)), 0 when no unigram matches, brevity
 * penalty exp(1 − r/c) against the closest reference length (1 when c > r, 0 when c = 0).
 */
export function nltkSentenceBleu(
  references: readonly (readonly string[])[],
  hypothesis: readonly string[],
  opts: NltkBleuOptions = {},
): number {
  const weights = opts.weights ?? [0.25, 0.25, 0.25, 0.25];
  const smoothing = opts.smoothing ?? 'method0';
  const epsilon = opts.epsilon ?? 0.1;
  if (references.length === 0) throw dataError('bleu', 'a sentence needs at least one reference');
  const maxOrder = weights.length;
  const hypCounts = ngramCounts([...hypothesis], maxOrder);
  const refCounts = references.map((r) => ngramCounts([...r], maxOrder));
  const numerators = new Array<number>(maxOrder).fill(0);
  const hypNgrams = new Array<number>(maxOrder).fill(0);
  for (const [k, c] of hypCounts) {
    const n = orderOf(k) - 1;
    let maxRef = 0;
    for (const rc of refCounts) maxRef = Math.max(maxRef, rc.get(k) ?? 0);
    numerators[n] += Math.min(c, maxRef);
    hypNgrams[n] += c;
  }
  if (numerators[0] === 0) return 0;
  const hypLen = hypothesis.length;
  const refLen = closestRefLength(
    hypLen,
    references.map((r) => r.length),
  );
  const bp = hypLen > refLen ? 1 : hypLen === 0 ? 0 : Math.exp(1 - refLen / hypLen);
  const terms: number[] = [];
  for (let n = 0; n < maxOrder; n++) {
    const denominator = Math.max(1, hypNgrams[n]);
    const p =
      numerators[n] !== 0
        ? numerators[n] / denominator
        : smoothing === 'method1'
          ? epsilon / denominator
          : FLOAT_MIN;
    terms.push(weights[n] * Math.log(p));
  }
  return bp * Math.exp(compensatedSum(terms));
}

/** Neumaier's compensated sum: NLTK adds the weighted log precisions with `math.fsum`, not left to right. */
function compensatedSum(values: readonly number[]): number {
  let sum = 0;
  let compensation = 0;
  for (const v of values) {
    const t = sum + v;
    compensation += Math.abs(sum) >= Math.abs(v) ? sum - t + v : v - t + sum;
    sum = t;
  }
  return sum + compensation;
}

/**
 * The GenePrune code's per-problem BLEU, 0–1: exactly NLTK's
 * `sentence_bleu([reference.split()], hypothesis.split(), weights=(0.25,)*4,
 * smoothing_function=SmoothingFunction().method1)` (NLTK 3.8; checked against it, docs/code-generation.md).
 * Whitespace tokens as Python's `str.split()`, case-sensitive, one reference. As NLTK:
 * - p_n = clipped n-gram matches / max(1, hypothesis n-grams); a zero match count becomes 0.1 / that denominator
 *   (method1), so a hypothesis of fewer than n tokens gets p_n = 0.1 / 1 for that order;
 * - 0 exactly when no hypothesis token occurs in the reference (this includes an empty hypothesis), before smoothing;
 * - brevity penalty exp(1 − r/c) when c ≤ r (r the reference length, c the hypothesis length), 1 when c > r.
 * An empty or all-whitespace reference is accepted as NLTK accepts it (then every hypothesis scores 0).
 */
export function nltkMethod1SentenceBleu(hypothesis: string, reference: string): number {
  return nltkSentenceBleu([splitWhitespace(reference)], splitWhitespace(hypothesis), {
    smoothing: 'method1',
  });
}

/**
 * The GenePrune code's BLEU over a set of problems, 0–1: the mean of `nltkMethod1SentenceBleu` over the pairs
 * (its `get_bleu_score`). `sentenceMeanBleu` is the same number × 100 for the multi-reference layout.
 */
export function nltkMethod1MeanBleu(hypotheses: readonly string[], references: readonly string[]): number {
  if (hypotheses.length === 0) throw dataError('bleu', 'no hypotheses given');
  if (references.length !== hypotheses.length) {
    throw dataError(
      'bleu',
      `${hypotheses.length} hypotheses but ${references.length} references (one reference per hypothesis)`,
    );
  }
  let sum = 0;
  for (let i = 0; i < hypotheses.length; i++) sum += nltkMethod1SentenceBleu(hypotheses[i], references[i]);
  return sum / hypotheses.length;
}

/**
 * The GenePrune code's BLEU, 0–100: the mean over segments of NLTK sentence BLEU-4 with method1 smoothing on
 * whitespace tokens (Python's `str.split()`), each segment against its references (sacreBLEU layout, as above).
 */
export function sentenceMeanBleu(
  hypotheses: readonly string[],
  references: readonly (readonly (string | null | undefined)[])[],
  opts: Omit<NltkBleuOptions, 'smoothing'> = {},
): number {
  const refs = segmentReferences(hypotheses, references);
  let sum = 0;
  for (let i = 0; i < hypotheses.length; i++) {
    sum += nltkSentenceBleu(refs[i].map(splitWhitespace), splitWhitespace(hypotheses[i]), {
      ...opts,
      smoothing: 'method1',
    });
  }
  return (100 * sum) / hypotheses.length;
}

/** The BLEU a task reports, by kind: sacreBLEU corpus BLEU or the GenePrune code's sentence mean; 0–100. */
export function bleuOf(
  kind: BleuKind,
  hypotheses: readonly string[],
  references: readonly (readonly (string | null | undefined)[])[],
): number {
  if (kind === 'corpus') return corpusBleu(hypotheses, references).score;
  if (kind === 'sentence-mean') return sentenceMeanBleu(hypotheses, references);
  throw dataError('bleu', `unknown BLEU kind "${kind}" (corpus or sentence-mean)`);
}
