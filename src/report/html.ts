/**
 * The report page: the figures of report/specs.ts rendered to SVG in Node (Vega's headless 'none' renderer, no
 * browser, no canvas) and inlined with the method-comparison table and the data each run used into one HTML
 * file that needs nothing else to be viewed (no script, no font, no network). Every string from run files is
 * escaped where it lands; Vega escapes the text it writes into the SVG itself.
 */
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { MethodRow, ReportRun } from './rows.js';
import {
  generationsSpec,
  headMaskSpec,
  layerSparsitySpec,
  paretoSpec,
  qualityVsSparsitySpec,
  type SpeedupPoint,
  speedupSpec,
} from './specs.js';

/** One figure of the page: what it shows, of which run, and how many data points it draws. */
export interface ReportFigure {
  id: string;
  kind:
    | 'quality-vs-sparsity'
    | 'generations'
    | 'pareto'
    | 'speedup-measured'
    | 'speedup-proxy'
    | 'head-mask'
    | 'layer-sparsity';
  /** The run it belongs to; absent for figures across runs. */
  run?: string;
  points: number;
  caption: string;
  spec: TopLevelSpec;
}

export function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

/** SVG text of a Vega-Lite spec, rendered without a browser. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const methodLabel = (r: MethodRow) => `${r.method} (${r.space})`;

/** The figures a set of runs calls for, in page order. */
export function reportFigures(runs: readonly ReportRun[]): ReportFigure[] {
  const figures: ReportFigure[] = [];
  const rows = runs.map((r) => r.row);
  // Quality vs speed, one figure per evaluation metric: measured where bench.json exists, else the proxy.
  for (const qualityName of [...new Set(rows.map((r) => r.qualityName))]) {
    const group = rows.filter((r) => r.qualityName === qualityName);
    const lower = group[0].lowerIsBetter;
    const denses = [...new Set(group.map((r) => r.denseQuality))];
    const dense = denses.length === 1 ? denses[0] : undefined;
    const measured = group.filter((r) => r.measured);
    const slug = qualityName.replace(/[^a-z0-9]+/gi, '-');
    if (measured.length > 0) {
      const points: SpeedupPoint[] = measured.map((r) => ({
        series: methodLabel(r),
        run: r.run,
        speedup: r.measured!.prefillSpeedup,
        quality: r.quality,
      }));
      const m = measured[0].measured!;
      figures.push({
        id: `speedup-measured-${slug}`,
        kind: 'speedup-measured',
        points: points.length,
        caption:
          `${qualityName} against the prefill speedup geneprune bench measured for each run's mask (heads removed ` +
          `physically, ${m.device}, batch ${m.batch} × ${m.seq} tokens; bench.json in the run directory). ` +
          `Runs without a measurement are left out: ${group.length - measured.length} of ${group.length}.`,
        spec: speedupSpec(points, {
          qualityName,
          lowerIsBetter: lower,
          dense,
          speedName: 'measured prefill speedup (×)',
          title: 'Quality vs measured speedup',
        }),
      });
    }
    const proxy: SpeedupPoint[] = group.map((r) => ({
      series: methodLabel(r),
      run: r.run,
      speedup: r.parameterRatio,
      quality: r.quality,
    }));
    figures.push({
      id: `speedup-proxy-${slug}`,
      kind: 'speedup-proxy',
      points: proxy.length,
      caption:
        `${qualityName} against the parameter ratio (dense parameters ÷ kept parameters): a proxy for speedup, ` +
        'not a measurement. Head removal shrinks the work about in proportion; unstructured weight sparsity ' +
        'gives no speedup on dense kernels, so its ratio is what a sparse kernel could at best reach.' +
        (dense === undefined ? '' : ' The dashed line is the dense model.'),
      spec: speedupSpec(proxy, {
        qualityName,
        lowerIsBetter: lower,
        dense,
        speedName: 'dense ÷ kept parameters (proxy)',
        title: 'Quality vs size (a speedup proxy, not measured)',
      }),
    });
  }
  const weightRuns = runs.filter((r) => r.space === 'weights');
  if (weightRuns.length > 0) {
    const bars = weightRuns.flatMap((r) =>
      r.layers.map((l) => ({ run: r.name, layer: l.layer, sparsity: l.sparsity })),
    );
    figures.push({
      id: 'layer-sparsity',
      kind: 'layer-sparsity',
      points: bars.length,
      caption: 'Share of each layer’s prunable weights (q, k, v, o and the MLP) removed, per weight run.',
      spec: layerSparsitySpec(bars, { title: 'Per-layer weight sparsity' }),
    });
  }
  runs.forEach((run, i) => {
    const qualityName = run.row.calibName;
    const shown = run.individuals.filter((p) => p.quality !== null);
    if (run.method !== 'nsga' && shown.length > 0) {
      figures.push({
        id: `quality-vs-sparsity-${i}`,
        kind: 'quality-vs-sparsity',
        run: run.name,
        points: shown.length,
        caption:
          `Every ${run.space === 'heads' ? 'individual' : 'candidate mask'} the search evaluated (${shown.length}${shown.length < run.individuals.length ? `; ${run.individuals.length - shown.length} with a non-finite score left out` : ''}), ` +
          (run.space === 'heads'
            ? `${qualityName} on the calibration data against the share of heads removed, coloured by generation.`
            : `${qualityName} on the calibration data (earlier blocks as fixed, this block with the candidate mask, later blocks dense) against the share of that block's prunable weights removed, coloured by block.`),
        spec: qualityVsSparsitySpec(shown, {
          qualityName,
          title: `${run.name}: quality vs sparsity of every ${run.space === 'heads' ? 'individual' : 'candidate'}`,
          ...(run.space === 'weights'
            ? { sparsityName: "share of the block's prunable weights removed", colourName: 'block' }
            : {}),
        }),
      });
    }
    if (run.generations.length > 0) {
      figures.push({
        id: `generations-${i}`,
        kind: 'generations',
        run: run.name,
        points: run.generations.length * 5,
        caption:
          'Per generation: sparsity of the best individual, the population mean and the largest (left); the best ' +
          'and the mean fitness (right; non-finite individuals left out of the mean).',
        spec: generationsSpec(run.generations, { title: `${run.name}: sparsity and fitness per generation` }),
      });
    }
    if (run.method === 'nsga') {
      figures.push({
        id: `pareto-${i}`,
        kind: 'pareto',
        run: run.name,
        points: shown.length + run.front.length,
        caption:
          `NSGA-II: every distinct mask scored (${shown.length}, grey) and the non-dominated front of them all ` +
          `(${run.front.length}, red); the ringed point is the mask the run picked at its target size. ${qualityName} on the calibration data.`,
        spec: paretoSpec(shown, run.front, { qualityName, title: `${run.name}: Pareto front` }),
      });
    }
    if (run.space === 'heads' && run.heads.length > 0) {
      const removed = run.heads.filter((c) => !c.kept).length;
      figures.push({
        id: `head-mask-${i}`,
        kind: 'head-mask',
        run: run.name,
        points: run.heads.length,
        caption: `The chosen head mask: ${removed} of ${run.heads.length} heads removed.`,
        spec: headMaskSpec(run.heads, { title: `${run.name}: head mask` }),
      });
    }
  });
  return figures;
}

const fmt = (x: number, digits = 4) => (Number.isFinite(x) ? x.toPrecision(digits) : String(x));
const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

function dataCell(d: MethodRow['calibration']): string {
  const amount = d.amount === undefined ? '' : `, ${d.amount} ${d.unit}`;
  return `<code>${escapeHtml(d.path)}</code><br><span class="dim">${d.files} file${d.files === 1 ? '' : 's'}${amount}</span>`;
}

function comparisonTable(runs: readonly ReportRun[]): string {
  const head = [
    'run',
    'method',
    'removed',
    'kept parameters',
    'calibration data',
    'calibration score (dense)',
    'evaluation data',
    'evaluation score (dense)',
    'measured prefill speedup',
    'forward passes',
    'wall time',
  ];
  const body = runs.map(({ row: r }) => {
    const speed = r.measured
      ? `${r.measured.prefillSpeedup.toFixed(3)}× <span class="dim">(FLOP ratio ${r.measured.flopRatio.toFixed(3)}×)</span>`
      : '<span class="dim">not measured</span>';
    const cells = [
      `<b>${escapeHtml(r.run)}</b>`,
      escapeHtml(methodLabel(r)),
      escapeHtml(r.removedText),
      `${r.keptParameters} <span class="dim">(${pct(r.keptParameters / r.totalParameters)})</span>`,
      dataCell(r.calibration),
      `${escapeHtml(r.calibName)} ${fmt(r.calibQuality)} <span class="dim">(${fmt(r.calibDenseQuality)})</span>`,
      dataCell(r.evaluation),
      `${escapeHtml(r.qualityName)} ${fmt(r.quality)} <span class="dim">(${fmt(r.denseQuality)})</span>`,
      speed,
      String(r.forwardPasses),
      `${r.seconds.toFixed(1)} s`,
    ];
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;
  });
  return `<table class="methods"><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${body.join('')}</tbody></table>`;
}

function dataSection(runs: readonly ReportRun[]): string {
  const items = runs.map(({ row: r, model }) => {
    const files = (d: MethodRow['calibration']) =>
      d.sha256.length === 0
        ? '<span class="dim">no file hashes recorded</span>'
        : `<span class="dim">sha256 ${d.sha256.map((h) => escapeHtml(h.slice(0, 12))).join(', ')}</span>`;
    return (
      `<li><b>${escapeHtml(r.run)}</b> (<code>${escapeHtml(r.dir)}</code>), model <code>${escapeHtml(model.path)}</code>: ` +
      `calibration <code>${escapeHtml(r.calibration.path)}</code> ${files(r.calibration)}; ` +
      `evaluation <code>${escapeHtml(r.evaluation.path)}</code> ${files(r.evaluation)}</li>`
    );
  });
  return `<ul class="data">${items.join('')}</ul>`;
}

const STYLE = `
body { font-family: Helvetica, Arial, sans-serif; color: #222; margin: 24px 32px; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
.dim { color: #777; font-size: 12px; } code { font-size: 12px; word-break: break-all; }
table.methods { border-collapse: collapse; font-size: 13px; } table.methods th, table.methods td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
table.methods th { background: #f4f4f4; font-weight: 600; }
table.methods td:nth-child(4), table.methods td:nth-child(9) { white-space: nowrap; }
.figures { display: flex; flex-wrap: wrap; gap: 18px 28px; align-items: flex-start; }
figure.plot { margin: 0; } figure.plot figcaption { font-size: 12px; color: #555; max-width: 460px; margin-top: 4px; }
ul.data li, ul.notes li { font-size: 13px; margin: 3px 0; }
`;

/** The whole page. `generatedAt` is shown as given (tests pass a fixed one). */
export async function renderReportHtml(
  runs: readonly ReportRun[],
  opts: { generatedAt: string; notes?: readonly string[] },
): Promise<{ html: string; figures: ReportFigure[] }> {
  const figures = reportFigures(runs);
  const svgs = new Map<string, string>();
  for (const f of figures) svgs.set(f.id, await renderSvg(f.spec));
  const figureHtml = (f: ReportFigure) =>
    `<figure class="plot" id="${escapeHtml(f.id)}" data-kind="${f.kind}"${f.run === undefined ? '' : ` data-run="${escapeHtml(f.run)}"`} data-points="${f.points}">` +
    `${svgs.get(f.id)}<figcaption>${escapeHtml(f.caption)}</figcaption></figure>`;
  const across = figures.filter((f) => f.run === undefined);
  const perRun = runs
    .map((run) => {
      const mine = figures.filter((f) => f.run === run.name);
      if (mine.length === 0) return '';
      return `<h3>${escapeHtml(run.name)} <span class="dim">${escapeHtml(methodLabel(run.row))}</span></h3><div class="figures">${mine.map(figureHtml).join('')}</div>`;
    })
    .join('');
  const notes = [...(opts.notes ?? []), ...runs.flatMap((r) => r.notes.map((n) => `${r.name}: ${n}`))];
  const title =
    runs.length === 1 ? `geneprune report: ${runs[0].name}` : `geneprune report: ${runs.length} runs`;
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body>
<h1>${escapeHtml(title)}</h1>
<div class="dim">generated ${escapeHtml(opts.generatedAt)} by geneprune report; figures rendered with Vega-Lite</div>
<h2>Methods compared</h2>
${comparisonTable(runs)}
<h2>Data</h2>
<p class="dim">Searches score candidates on the calibration data only; the evaluation data, which no search saw, gives the numbers quoted.</p>
${dataSection(runs)}
<h2>Quality, size and speed</h2>
<div class="figures">${across.map(figureHtml).join('')}</div>
${perRun ? `<h2>Runs</h2>${perRun}` : ''}
${notes.length ? `<h2>Notes</h2><ul class="notes">${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>` : ''}
</body></html>
`;
  return { html, figures };
}
