/**
 * The metrics a structured search scores plans with: every registry metric whose runner can carry the structured
 * masks (decoder and encoder graphs have the channel_mask / block_mask inputs), each other one refused in one
 * line saying why; and the checks of `--metric` against the other settings.
 */
import { flagError } from '../../errors.js';
import { metricEntry, QUALITY_METRICS, type QualityMetric } from '../../metrics/registry.js';
import { BLEU_SEARCH_ITEMS } from '../../search/objective.js';
import type { StructuredSearchSettings } from './settings.js';

/**
 * The registry metrics a structured search refuses, and why. Every other metric's runner is a decoder's or an
 * encoder's graph, which has the structured mask inputs.
 */
export const STRUCTURED_REFUSED_METRICS: Readonly<Partial<Record<QualityMetric, string>>> = {
  accuracy:
    'a classification run has labelled items and no calibration text, and the channel, head and block scores are measured on calibration text',
  'macro-f1':
    'a classification run has labelled items and no calibration text, and the channel, head and block scores are measured on calibration text',
};

/** The metrics a structured search scores with: the registry's, less the refused ones. */
export const STRUCTURED_SEARCH_METRICS: readonly QualityMetric[] = QUALITY_METRICS.filter(
  (m) => STRUCTURED_REFUSED_METRICS[m] === undefined,
);

/**
 * The checks of `--metric` against the other settings (one line each, naming the flag): a refused metric, a
 * cheap first pass counted in the wrong unit, item counts that do not fit, and the evaluation tasks (a structured
 * run reports perplexity on the --eval text).
 */
export function checkStructuredMetric(s: StructuredSearchSettings): void {
  const refused = STRUCTURED_REFUSED_METRICS[s.metric];
  if (refused !== undefined)
    throw flagError('--metric', `not ${s.metric} with structured search: ${refused}`);
  if (!STRUCTURED_SEARCH_METRICS.includes(s.metric))
    throw flagError('--metric', `"${s.metric}" is not one of ${STRUCTURED_SEARCH_METRICS.join(', ')}`);
  for (const [key, flag] of [
    ['evalTask', '--eval-task'],
    ['evalChoices', '--eval-choices'],
  ] as const) {
    if (s[key] !== undefined)
      throw flagError(flag, 'not with structured search yet: it reports perplexity on the --eval text');
  }
  const data = metricEntry(s.metric).data;
  // A metric scored on task items (not on a token stream) cuts items for its cheap first pass, not tokens.
  if (s.lowTokens !== undefined && data !== 'text')
    throw flagError(
      '--low-tokens',
      `with --metric ${s.metric} the cheap first pass scores fewer task items: --low-items`,
    );
  if (s.lowItems !== undefined && data === 'text')
    throw flagError('--low-items', `with --metric ${s.metric} the cheap first pass is --low-tokens`);
  // A multiple-choice task scores all its items unless --calib-items says fewer; its size is known once read.
  const fullItems = data === 'choices' ? s.calibItems : (s.calibItems ?? BLEU_SEARCH_ITEMS);
  if (s.lowItems !== undefined && fullItems !== undefined && s.lowItems >= fullItems)
    throw flagError('--low-items', `must be below --calib-items (${fullItems})`);
  if (s.lowItems !== undefined && s.promote < 1)
    throw flagError('--promote', 'multi-fidelity needs --promote ≥ 1');
}

/** Whether the run scores a cheap first pass (fewer tokens, or fewer task items). */
export function multiFidelity(s: StructuredSearchSettings): boolean {
  return s.lowTokens !== undefined || s.lowItems !== undefined;
}
