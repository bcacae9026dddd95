/**
 * The dashboard's two Vega-Lite plots. The page compiles them in the browser and inserts rows into their named
 * data sets as evaluations arrive, so nothing is rendered in the searching process. (The report command's own
 * specs live in src/report/; these are the dashboard's, kept small and built only from the fixed words below.)
 */
import type { RunMeta } from './watch.js';

type Spec = Record<string, unknown>;

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v5.json';
// Axes are laid out again as data arrives (labels grow from '0' to '−1.1282').
const SIZE = { width: 440, height: 280, autosize: { type: 'pad', resize: true } };

/** Which field of a point the scatter plot's x axis shows: the generation within its block where sparsity is fixed. */
export function scatterField(meta: Pick<RunMeta, 'fixedSparsity'>): 'sparsity' | 'step' {
  return meta.fixedSparsity ? 'step' : 'sparsity';
}

/**
 * Every evaluated individual (a weight run: every candidate, or every block's best), score against sparsity,
 * coloured by generation (a weight run: by block). A search whose candidates all keep one sparsity would put
 * them on one vertical line: its x axis is the generation within the block instead.
 */
export function scatterSpec(meta: Pick<RunMeta, 'score' | 'unit' | 'kind' | 'fixedSparsity'>): Spec {
  const unitWord = meta.unit === 'block' ? 'block' : 'generation';
  const removed = meta.kind === 'weights' ? 'share of the block’s weights removed' : 'share of heads removed';
  const direction = meta.score.higherIsBetter ? 'higher is better' : 'lower is better';
  const x =
    scatterField(meta) === 'step'
      ? {
          field: 'step',
          type: 'quantitative',
          title: 'generation within the block (0: initial population; sparsity is fixed)',
          axis: { tickMinStep: 1, format: 'd' },
        }
      : {
          field: 'sparsity',
          type: 'quantitative',
          title: removed,
          scale: { domain: [0, 1] },
          axis: { format: '.0%' },
        };
  return {
    $schema: SCHEMA,
    ...SIZE,
    data: { name: 'points' },
    mark: { type: 'point', filled: true, size: 48, opacity: 0.75 },
    encoding: {
      x,
      y: {
        field: 'score',
        type: 'quantitative',
        title: `calibration ${meta.score.label} (${direction})`,
        scale: { zero: false, padding: 12 },
      },
      color: { field: 'generation', type: 'quantitative', title: unitWord, scale: { scheme: 'viridis' } },
      tooltip: [
        { field: 'n', type: 'quantitative', title: 'evaluation' },
        { field: 'generation', type: 'quantitative', title: unitWord },
        ...(meta.fixedSparsity
          ? [{ field: 'step', type: 'quantitative', title: 'generation in block' }]
          : []),
        { field: 'sparsity', type: 'quantitative', format: '.3f' },
        { field: 'score', type: 'quantitative', title: meta.score.label, format: '.4f' },
      ],
    },
  };
}

/** The best of each generation (a GA: its fitness; NSGA-II and weight runs: the best score) as a line. */
export function progressSpec(meta: Pick<RunMeta, 'score' | 'unit' | 'method' | 'kind'>): Spec {
  const fitness = meta.kind === 'heads' && meta.method === 'ga';
  const unitWord = meta.unit === 'block' ? 'block' : 'generation';
  return {
    $schema: SCHEMA,
    ...SIZE,
    data: { name: 'best' },
    mark: { type: 'line', point: true },
    encoding: {
      x: {
        field: 'generation',
        type: 'quantitative',
        title: unitWord,
        axis: { tickMinStep: 1, format: 'd' },
      },
      y: {
        field: 'value',
        type: 'quantitative',
        title: fitness
          ? 'best fitness (higher is better)'
          : `best calibration ${meta.score.label} (${meta.score.higherIsBetter ? 'higher' : 'lower'} is better)`,
        scale: { zero: false, padding: 12 },
      },
      tooltip: [
        { field: 'generation', type: 'quantitative', title: unitWord },
        { field: 'value', type: 'quantitative', format: '.4f' },
      ],
    },
  };
}

/** Which field of a generation the progress plot shows. */
export function progressField(meta: Pick<RunMeta, 'method' | 'kind'>): 'bestFitness' | 'bestScore' {
  return meta.kind === 'heads' && meta.method === 'ga' ? 'bestFitness' : 'bestScore';
}
