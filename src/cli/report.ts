/** Report lines several commands print the same way. */
import type { EvalBleu, EvalChoices } from '../index.js';

/** Dense and pruned BLEU on a run's evaluation task, one line. */
export function evalBleuLine(b: EvalBleu): string {
  const source = b.from === 'pages' ? `story continuations of ${b.task}` : b.task;
  return (
    `eval BLEU    ${b.corpus.toFixed(2)} corpus, ${b.sentenceMean.toFixed(2)} sentence-mean ` +
    `(dense ${b.denseCorpus.toFixed(2)}, ${b.denseSentenceMean.toFixed(2)}; ${b.items} items of ${source}, ` +
    `${b.maxNewTokens} new tokens)`
  );
}

/**
 * Dense and pruned exact match (and pass@1, when the run allowed code execution) on a run's evaluation task, one
 * line; none for a record without them (a result.json written before they existed).
 */
export function evalGenerationLines(b: EvalBleu): string[] {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  if (b.exactMatch === undefined) return [];
  const pass =
    b.passAt1 !== undefined ? `, pass@1 ${pct(b.passAt1)} (dense ${pct(b.densePassAt1 ?? Number.NaN)})` : '';
  return [`eval match   ${pct(b.exactMatch)} (dense ${pct(b.denseExactMatch)})${pass}`];
}

/** Dense and pruned multiple-choice accuracy on a run's evaluation file, one line. */
export function evalChoicesLine(c: EvalChoices): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  return (
    `eval acc     ${pct(c.accuracy)}, acc_norm ${pct(c.accuracyNorm)} (dense ${pct(c.denseAccuracy)}, ` +
    `${pct(c.denseAccuracyNorm)}; ${c.items} items of ${c.file})`
  );
}
