/**
 * Vega-Lite specifications of the report's figures, each built from plain rows (report/rows.ts shapes them from
 * run directories; a live page can build the same rows from a run's log lines). Pure functions with no Node API,
 * so a browser page can import them too; rendering is the caller's (report/html.ts renders SVG in Node).
 *
 * Every data mark sits in a unit view named from MARK_NAMES so a test or page can find and count it: Vega renders
 * it as a group with class `role-mark <name>_marks`, one child element per datum.
 */
import type { TopLevelSpec } from 'vega-lite';
import { maxOf, minOf } from '../util/arrays.js';

/** The names of the marks that carry data points, one per figure kind. */
export const MARK_NAMES = {
  individuals: 'individuals',
  generationSparsity: 'generation_sparsity',
  generationFitness: 'generation_fitness',
  archive: 'archive',
  front: 'front',
  speedup: 'speedup',
  headMask: 'head_mask',
  layerSparsity: 'layer_sparsity',
  sweep: 'sweep',
} as const;

/** Rows each builder reads (structurally those of report/rows.ts, so pages need not import that module). */
export interface IndividualPoint {
  generation: number | null;
  sparsity: number;
  quality: number | null;
}
export interface GenerationPoint {
  generation: number;
  bestFitness: number;
  meanFitness: number;
  bestSparsity: number;
  meanSparsity: number;
  maxSparsity: number;
}
export interface FrontPoint {
  sparsity: number;
  quality: number;
  picked: boolean;
}
export interface SpeedupPoint {
  /** The series: a method, e.g. 'ga (heads)'; one line per series through its runs in speedup order. */
  series: string;
  run: string;
  speedup: number;
  quality: number;
}
/** One method's result at one size, for the benchmark tables' figures (`npm run bench`). */
export interface SweepPoint {
  /** The method (one colour per series). */
  series: string;
  /** A second split of a method's points, drawn as its own line with its own dash and point shape (e.g. with and without recovery). */
  variant?: string;
  sparsity: number;
  quality: number;
}
export interface HeadMaskCell {
  layer: number;
  head: number;
  kept: boolean;
}
export interface LayerBar {
  run: string;
  layer: number;
  sparsity: number;
}

const WIDTH = 360;
const HEIGHT = 240;
const FONT = 'Helvetica, Arial, sans-serif';

/*
 * Axis titles are kept short: without a canvas Vega estimates text width generously (0.8 × font size per
 * character), and a title longer than its axis pads the whole figure with empty space.
 */

/** Shared look: plain white background, readable axis text, no chart border. */
const CONFIG = {
  font: FONT,
  background: 'white',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal' as const, gridColor: '#e8e8e8' },
  legend: { labelFontSize: 11, titleFontSize: 11, titleFontWeight: 'normal' as const },
  title: { fontSize: 13, fontWeight: 'bold' as const, anchor: 'start' as const },
};

/** Log scale when the qualities span more than 8× (a perplexity blow-up would squash the good methods). */
function qualityScale(
  values: number[],
): { type: 'linear'; zero: false } | { type: 'log'; nice: false; domain: [number, number] } {
  const pos = values.filter((v) => Number.isFinite(v) && v > 0);
  if (pos.length !== values.length || pos.length === 0) return { type: 'linear', zero: false };
  const lo = minOf(pos);
  const hi = maxOf(pos);
  if (hi / lo <= 8) return { type: 'linear', zero: false };
  // Log: the data's own span with a little room, not rounded out to whole decades (which can add two empty ones).
  return { type: 'log', nice: false, domain: [lo / 1.15, hi * 1.15] };
}

const sparsityAxis = (title: string) => ({ title, format: '.0%' });

/**
 * Quality against sparsity of every evaluated individual, coloured by generation (Survival of the Smallest,
 * Fig. 3). Individuals whose quality was non-finite are left out (they have no place on the axis).
 */
export function qualityVsSparsitySpec(
  rows: readonly IndividualPoint[],
  opts: { qualityName: string; title: string; sparsityName?: string; colourName?: string },
): TopLevelSpec {
  const values = rows.filter((r) => r.quality !== null && Number.isFinite(r.quality));
  const byGeneration = values.some((r) => r.generation !== null);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: opts.title,
    width: WIDTH,
    height: HEIGHT,
    config: CONFIG,
    data: { values: values.map((r) => ({ ...r })) },
    layer: [
      {
        name: MARK_NAMES.individuals,
        mark: { type: 'point', filled: true, size: 36, opacity: 0.75 },
        encoding: {
          x: {
            field: 'sparsity',
            type: 'quantitative',
            axis: sparsityAxis(opts.sparsityName ?? 'sparsity (share of heads removed)'),
            scale: { zero: false, padding: 8 },
          },
          y: {
            field: 'quality',
            type: 'quantitative',
            title: opts.qualityName,
            scale: qualityScale(values.map((r) => r.quality as number)),
          },
          ...(byGeneration
            ? {
                color: {
                  field: 'generation',
                  type: 'quantitative',
                  title: opts.colourName ?? 'generation',
                  scale: { scheme: 'viridis' },
                  legend: { format: 'd', tickMinStep: 1 },
                },
              }
            : { color: { value: '#4c78a8' } }),
        },
      },
    ],
  } as TopLevelSpec;
}

/**
 * Sparsity and fitness per generation (Survival of the Smallest, Fig. 4): the generation's best individual, the
 * population mean and (for sparsity) the largest, side by side.
 */
export function generationsSpec(rows: readonly GenerationPoint[], opts: { title: string }): TopLevelSpec {
  const sparsity = rows.flatMap((r) => [
    { generation: r.generation, series: 'best individual', value: r.bestSparsity },
    { generation: r.generation, series: 'population mean', value: r.meanSparsity },
    { generation: r.generation, series: 'largest', value: r.maxSparsity },
  ]);
  const fitness = rows.flatMap((r) => [
    { generation: r.generation, series: 'best individual', value: r.bestFitness },
    { generation: r.generation, series: 'population mean', value: r.meanFitness },
  ]);
  const finite = <T extends { value: number }>(xs: T[]) => xs.filter((x) => Number.isFinite(x.value));
  const colour = {
    field: 'series',
    type: 'nominal' as const,
    title: null,
    scale: {
      domain: ['best individual', 'population mean', 'largest'],
      range: ['#d62728', '#4c78a8', '#9e9e9e'],
    },
    legend: { orient: 'bottom' as const },
  };
  const panel = (values: unknown[], name: string, title: string, y: Record<string, unknown>) => ({
    title: { text: title, fontSize: 12, fontWeight: 'normal' as const },
    width: WIDTH * 0.8,
    height: 220,
    data: { values },
    layer: [
      { mark: { type: 'line', strokeWidth: 1.5 }, encoding: { x: genAxis, y, color: colour } },
      { name, mark: { type: 'point', filled: true, size: 30 }, encoding: { x: genAxis, y, color: colour } },
    ],
  });
  const genAxis = {
    field: 'generation',
    type: 'quantitative' as const,
    title: 'generation',
    axis: { format: 'd', tickMinStep: 1 },
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: opts.title,
    config: CONFIG,
    resolve: { scale: { color: 'shared' } },
    hconcat: [
      panel(finite(sparsity), MARK_NAMES.generationSparsity, 'sparsity', {
        field: 'value',
        type: 'quantitative',
        title: 'share of heads removed',
        axis: { format: '.0%' },
        scale: { zero: true },
      }),
      panel(finite(fitness), MARK_NAMES.generationFitness, 'fitness (higher is better)', {
        field: 'value',
        type: 'quantitative',
        title: 'fitness',
        scale: { zero: false },
      }),
    ],
  } as TopLevelSpec;
}

/**
 * An NSGA-II run's archive (every distinct mask scored) in grey and its non-dominated front as a line, the mask
 * the run picked at its target size ringed.
 */
export function paretoSpec(
  archive: readonly IndividualPoint[],
  front: readonly FrontPoint[],
  opts: { qualityName: string; title: string },
): TopLevelSpec {
  const all = archive.filter((r) => r.quality !== null && Number.isFinite(r.quality));
  const frontValues = front.filter((f) => Number.isFinite(f.quality)).map((f) => ({ ...f, kind: 'front' }));
  const x = {
    field: 'sparsity',
    type: 'quantitative',
    axis: sparsityAxis('sparsity (share of heads removed)'),
  };
  const y = {
    field: 'quality',
    type: 'quantitative',
    title: opts.qualityName,
    scale: qualityScale([...all.map((r) => r.quality as number), ...frontValues.map((f) => f.quality)]),
  };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: opts.title,
    width: WIDTH,
    height: HEIGHT,
    config: CONFIG,
    layer: [
      {
        data: { values: all.map((r) => ({ ...r })) },
        name: MARK_NAMES.archive,
        mark: {
          type: 'point',
          filled: true,
          size: 25,
          color: '#b0b0b0',
          opacity: 0.7,
        },
        encoding: { x, y },
      },
      {
        data: { values: frontValues },
        layer: [
          {
            mark: { type: 'line', color: '#d62728', interpolate: 'step-after', strokeWidth: 1.5 },
            encoding: { x, y },
          },
          {
            name: MARK_NAMES.front,
            mark: { type: 'point', filled: true, size: 45, color: '#d62728' },
            encoding: { x, y },
          },
          {
            transform: [{ filter: 'datum.picked' }],
            mark: { type: 'point', shape: 'circle', size: 260, strokeWidth: 2, color: '#111', filled: false },
            encoding: { x, y },
          },
        ],
      },
    ],
  } as TopLevelSpec;
}

/**
 * What the per-method quality figures share: the title with its which-way-is-better subtitle, the quality axis
 * (log above an 8× span, the dense value included), the method colour, and the dense model as a grey dashed rule
 * labelled at the right edge (none without a dense value).
 */
function methodQualityParts(
  values: ReadonlyArray<{ quality: number }>,
  opts: { qualityName: string; dense?: number; title: string; lowerIsBetter: boolean },
) {
  const title = {
    text: opts.title,
    subtitle: `${opts.lowerIsBetter ? 'lower' : 'higher'} is better${opts.dense === undefined ? '' : '; grey rule: the dense model'}`,
  };
  const y = {
    field: 'quality',
    type: 'quantitative',
    title: opts.qualityName,
    scale: qualityScale([...values.map((p) => p.quality), ...(opts.dense === undefined ? [] : [opts.dense])]),
  };
  const color = { field: 'series', type: 'nominal', title: 'method', legend: { orient: 'right' } };
  const dense =
    opts.dense === undefined
      ? []
      : [
          {
            data: { values: [{ quality: opts.dense, label: 'dense' }] },
            layer: [
              { mark: { type: 'rule', strokeDash: [4, 3], color: '#777' }, encoding: { y } },
              {
                mark: { type: 'text', align: 'right', dx: -4, dy: -6, color: '#555', fontSize: 11 },
                encoding: { y, text: { field: 'label' }, x: { value: WIDTH } },
              },
            ],
          },
        ];
  return { y, color, dense, title };
}

/**
 * Quality against speedup, one line per method through its runs and the dense model at 1× (Survival of the
 * Smallest, Fig. 1). `speedName` says what the speedup is: measured, or a proxy such as the parameter ratio.
 */
export function speedupSpec(
  points: readonly SpeedupPoint[],
  opts: { qualityName: string; speedName: string; title: string; dense?: number; lowerIsBetter: boolean },
): TopLevelSpec {
  const values = points
    .filter((p) => Number.isFinite(p.speedup) && Number.isFinite(p.quality))
    .map((p) => ({ ...p }));
  const x = {
    field: 'speedup',
    type: 'quantitative',
    title: opts.speedName,
    scale: { zero: false, padding: 12 },
    axis: { format: '.2f' },
  };
  const { y, color, dense, title } = methodQualityParts(values, opts);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: WIDTH,
    height: HEIGHT,
    config: CONFIG,
    layer: [
      ...dense,
      {
        data: { values },
        layer: [
          {
            mark: { type: 'line', strokeWidth: 1.5 },
            encoding: { x, y, color, order: { field: 'speedup' } },
          },
          {
            name: MARK_NAMES.speedup,
            mark: { type: 'point', filled: true, size: 60 },
            encoding: { x, y, color, tooltip: [{ field: 'run' }, { field: 'series' }] },
          },
        ],
      },
    ],
  } as TopLevelSpec;
}

/** The head mask as a layer × head grid: kept heads dark, removed heads light. */
export function headMaskSpec(cells: readonly HeadMaskCell[], opts: { title: string }): TopLevelSpec {
  const heads = Math.max(1, ...cells.map((c) => c.head + 1));
  const layers = Math.max(1, ...cells.map((c) => c.layer + 1));
  const cell = 22;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: opts.title,
    width: heads * cell,
    height: layers * cell,
    config: CONFIG,
    data: { values: cells.map((c) => ({ ...c, state: c.kept ? 'kept' : 'removed' })) },
    layer: [
      {
        name: MARK_NAMES.headMask,
        mark: { type: 'rect', stroke: 'white', strokeWidth: 1.5 },
        encoding: {
          x: { field: 'head', type: 'ordinal', title: 'head', axis: { labelAngle: 0 } },
          y: { field: 'layer', type: 'ordinal', title: 'layer' },
          color: {
            field: 'state',
            type: 'nominal',
            title: null,
            scale: { domain: ['kept', 'removed'], range: ['#31688e', '#f3d9a4'] },
            legend: { orient: 'right' },
          },
        },
      },
    ],
  } as TopLevelSpec;
}

/** Per-layer share of prunable weights removed, one bar per layer and run (grouped when runs are several). */
export function layerSparsitySpec(rows: readonly LayerBar[], opts: { title: string }): TopLevelSpec {
  const runs = new Set(rows.map((r) => r.run)).size;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: opts.title,
    width: Math.max(WIDTH * 0.8, new Set(rows.map((r) => r.layer)).size * Math.max(18, runs * 12)),
    height: HEIGHT * 0.8,
    config: CONFIG,
    data: { values: rows.map((r) => ({ ...r })) },
    layer: [
      {
        name: MARK_NAMES.layerSparsity,
        mark: { type: 'bar' },
        encoding: {
          x: { field: 'layer', type: 'ordinal', title: 'layer', axis: { labelAngle: 0 } },
          y: {
            field: 'sparsity',
            type: 'quantitative',
            title: 'weights removed',
            axis: { format: '.0%' },
            scale: { domain: [0, 1] },
          },
          color: { field: 'run', type: 'nominal', title: 'run' },
          ...(runs > 1 ? { xOffset: { field: 'run', type: 'nominal' } } : {}),
        },
      },
    ],
  } as TopLevelSpec;
}

/**
 * Quality against sparsity, one line per method through its sizes (the manual's benchmark tables as a figure:
 * `npm run bench`). Points with a non-finite quality are left out.
 */
export function methodSweepSpec(
  points: readonly SweepPoint[],
  opts: {
    qualityName: string;
    sparsityName: string;
    title: string;
    dense?: number;
    lowerIsBetter: boolean;
    /** The legend title of the points' `variant` (default 'variant'). */
    variantName?: string;
  },
): TopLevelSpec {
  const values = points
    .filter((p) => Number.isFinite(p.sparsity) && Number.isFinite(p.quality))
    .map((p) => ({ ...p }));
  const variants = [...new Set(values.flatMap((p) => (p.variant === undefined ? [] : [p.variant])))];
  const split =
    variants.length > 0
      ? {
          field: 'variant',
          type: 'nominal',
          title: opts.variantName ?? 'variant',
          scale: { domain: variants },
        }
      : undefined;
  const x = {
    field: 'sparsity',
    type: 'quantitative',
    axis: sparsityAxis(opts.sparsityName),
    scale: { zero: false, padding: 12 },
  };
  const { y, color, dense, title } = methodQualityParts(values, opts);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: WIDTH,
    height: HEIGHT,
    config: CONFIG,
    layer: [
      ...dense,
      {
        data: { values },
        layer: [
          {
            mark: { type: 'line', strokeWidth: 1.5 },
            encoding: { x, y, color, order: { field: 'sparsity' }, ...(split ? { strokeDash: split } : {}) },
          },
          {
            name: MARK_NAMES.sweep,
            mark: { type: 'point', filled: true, size: 50 },
            encoding: {
              x,
              y,
              color,
              ...(split ? { shape: split } : {}),
              tooltip: [
                { field: 'series' },
                ...(split ? [{ field: 'variant' }] : []),
                { field: 'sparsity' },
                { field: 'quality' },
              ],
            },
          },
        ],
      },
    ],
  } as TopLevelSpec;
}
