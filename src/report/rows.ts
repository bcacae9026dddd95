/**
 * What a report reads from run directories (through runs/files.ts and runs/rundir.ts), as plain rows the plot
 * specs (report/specs.ts) and the HTML page (report/html.ts) take: every evaluated individual, per-generation
 * summaries, the NSGA-II front, the head mask per layer, per-layer weight sparsity, and one method row per run
 * (quality, size, data, cost, speed). Nothing here interprets beyond what the files say: a number the run did
 * not record stays absent.
 *
 * A directory is refused in one line when it is missing, is not a geneprune run (config.json's kind), has not
 * finished (no result.json), or holds corrupt JSON, or when its logs (or config.json) are not what its saved
 * state covers (runs/rundir.ts, RunStamp): a truncated or edited log would otherwise be plotted as the run.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, join, relative, resolve } from 'node:path';
import { fileError } from '../errors.js';
import {
  amountUnit,
  findMetric,
  labelledMetric,
  metricEntry,
  type QualityMetric,
  reportedQuality,
} from '../metrics/registry.js';
import { BENCH_FILE, RUN_FILES, readJsonl } from '../runs/files.js';
import { HEAD_RUN_KIND, RUN_KINDS, refuseChangedSinceState, STRUCTURED_RUN_KIND } from '../runs/rundir.js';

export type RunSpace = 'heads' | 'weights';

/**
 * One evaluated individual of a GA or NSGA-II run (full fidelity where the run re-scored it), or one candidate a
 * block-wise weight search scored.
 */
export interface IndividualRow {
  run: string;
  /**
   * The generation (weight runs: the block, since a block-wise search starts its generations over in every
   * block); null: the run did not log generations with its evaluations (NSGA-II runs made before it did).
   */
  generation: number | null;
  /** Share of the space's genes removed (heads, or weights of a weight genome). */
  sparsity: number;
  /** The calibration metric as people quote it (ppl, KL, BLEU, accuracy); null when it was non-finite. */
  quality: number | null;
  /** GA fitness (higher is better); null for NSGA-II or a non-finite individual. */
  fitness: number | null;
  fidelity: string;
}

/** One generation of a GA run (generations.jsonl, with the mean sparsity of its logged individuals). */
export interface GenerationRow {
  run: string;
  generation: number;
  bestFitness: number;
  meanFitness: number;
  bestSparsity: number;
  meanSparsity: number;
  maxSparsity: number;
  bestQuality: number;
}

/** A point of an NSGA-II run's final front (front.json); `picked` marks the run's chosen mask. */
export interface FrontRow {
  run: string;
  sparsity: number;
  quality: number;
  keptParameters: number;
  picked: boolean;
}

/** One attention head of a head run's chosen mask. */
export interface HeadCell {
  run: string;
  layer: number;
  head: number;
  kept: boolean;
}

/** One layer of a weight run: its share of prunable weights removed. */
export interface LayerSparsityRow {
  run: string;
  layer: number;
  sparsity: number;
  weights: number;
  pruned: number;
}

/** The data a run scored on: calibration (what the search saw) or evaluation (what the report quotes). */
export interface DataRow {
  path: string;
  files: number;
  /** Tokens (perplexity metrics) or items (labelled, BLEU, multiple choice) scored, as the run recorded them. */
  amount?: number;
  unit?: 'tokens' | 'items';
  /** sha256 of each file, in order, when the run recorded them. */
  sha256: string[];
}

/** Speed measured by `geneprune bench` for the run's mask (bench.json in the run directory). */
export interface MeasuredSpeed {
  prefillSpeedup: number;
  generateSpeedup: number;
  flopRatio: number;
  device: string;
  batch: number;
  seq: number;
}

/** One run as the method-comparison table and the quality-vs-speedup plot show it. */
export interface MethodRow {
  run: string;
  dir: string;
  space: RunSpace;
  method: string;
  /** Share of genes removed: heads for head runs, prunable weights for weight runs. */
  sparsity: number;
  /** What `sparsity` counts, e.g. '10/40 heads' or '50.0 % of 226560 weights (unstructured)'. */
  removedText: string;
  keptParameters: number;
  totalParameters: number;
  /** totalParameters / keptParameters: the speedup a proportional cut of the work would give (a proxy). */
  parameterRatio: number;
  /** The evaluation metric's name, e.g. 'evaluation perplexity'; runs are compared only within one name. */
  qualityName: string;
  lowerIsBetter: boolean;
  quality: number;
  denseQuality: number;
  calibName: string;
  calibQuality: number;
  calibDenseQuality: number;
  calibration: DataRow;
  evaluation: DataRow;
  forwardPasses: number;
  seconds: number;
  measured?: MeasuredSpeed;
}

export interface ReportRun {
  name: string;
  dir: string;
  space: RunSpace;
  method: string;
  /** Model file and shape the run recorded. */
  model: { path: string; layers: number; queryHeads: number[] };
  row: MethodRow;
  individuals: IndividualRow[];
  generations: GenerationRow[];
  front: FrontRow[];
  heads: HeadCell[];
  layers: LayerSparsityRow[];
  /** Things the report should say about this run (what it lacks, what it could not read). */
  notes: string[];
}

export { BENCH_FILE } from '../runs/files.js';

type Json = Record<string, unknown>;

async function readJsonFile(path: string, what: string, required: boolean): Promise<Json | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    if (!required) return undefined;
    throw fileError(
      path,
      `missing ${what}: the run has not finished, or this is not a geneprune run directory`,
    );
  }
  try {
    const v = JSON.parse(text);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Json;
  } catch {
    throw fileError(path, `${what} is corrupt (not a JSON object)`);
  }
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function need(v: unknown, path: string, field: string): number {
  const n = num(v);
  if (n === undefined) throw fileError(path, `${field} is missing or not a number`);
  return n;
}

function dataRow(recorded: unknown, fallbackPath: unknown, amount?: number, unit?: DataRow['unit']): DataRow {
  const r = (recorded ?? {}) as { path?: unknown; files?: Array<{ sha256?: unknown }> };
  const files = Array.isArray(r.files) ? r.files : [];
  return {
    path: String(r.path ?? fallbackPath ?? '(not recorded)'),
    files: files.length,
    ...(amount === undefined ? {} : { amount, unit }),
    sha256: files.map((f) => String(f.sha256 ?? '')),
  };
}

/** The evaluation score a run reports, named, with its dense counterpart. */
function evaluationScore(
  ev: Json | undefined,
  path: string,
): { name: string; lower: boolean; value: number; dense: number; amount?: number; unit?: DataRow['unit'] } {
  if (ev && num(ev.perplexity) !== undefined) {
    return {
      name: 'evaluation perplexity',
      lower: true,
      value: need(ev.perplexity, path, 'eval.perplexity'),
      dense: need(ev.densePerplexity, path, 'eval.densePerplexity'),
      amount: num(ev.tokens),
      unit: 'tokens',
    };
  }
  if (ev && num(ev.accuracy) !== undefined) {
    // A classification run's score: its metric's (accuracy unless it records macro-F1), by its registry record.
    const m = metricEntry(labelledMetric(ev.metric));
    const record = m.record!;
    return {
      name: `evaluation ${m.label}`,
      lower: false,
      value: need(ev[record.value], path, 'eval score'),
      dense: need(ev[record.dense], path, 'eval dense score'),
      amount: num(ev.items),
      unit: 'items',
    };
  }
  throw fileError(path, 'records no evaluation score (eval.perplexity or eval.accuracy)');
}

function measuredSpeed(b: Json | undefined): MeasuredSpeed | undefined {
  if (!b) return undefined;
  const s = (b.settings ?? {}) as Json;
  const prefill = num(b.prefillSpeedup);
  const generate = num(b.generateSpeedup);
  const flop = num(b.flopRatio);
  if (prefill === undefined || generate === undefined || flop === undefined) return undefined;
  return {
    prefillSpeedup: prefill,
    generateSpeedup: generate,
    flopRatio: flop,
    device: String(s.device ?? 'cpu'),
    batch: num(s.batch) ?? 0,
    seq: num(s.seq) ?? 0,
  };
}

const removedShare = (genome: string) => {
  let removed = 0;
  for (const c of genome) if (c === '0') removed++;
  return genome.length === 0 ? 0 : removed / genome.length;
};

/** Individuals from evals.jsonl: one per (generation, index), the full-fidelity score where both exist. */
function individualsOf(run: string, evals: Json[], metric: QualityMetric): IndividualRow[] {
  const shown = (q: unknown) => {
    const v = num(q);
    return v === undefined ? null : reportedQuality(metric, v);
  };
  const byKey = new Map<string, IndividualRow>();
  const rows: IndividualRow[] = [];
  for (const r of evals) {
    if (typeof r.genome !== 'string') continue;
    const generation = num(r.generation) ?? null;
    const row: IndividualRow = {
      run,
      generation,
      sparsity: num(r.sparsity) ?? removedShare(r.genome),
      quality: r.nonFinite === true ? null : shown(r.quality),
      fitness: num(r.fitness) ?? null,
      fidelity: String(r.fidelity ?? 'full'),
    };
    // GA lines carry the individual's index; NSGA-II logs each distinct mask once.
    if (num(r.index) === undefined) {
      rows.push(row);
      continue;
    }
    const key = `${generation}:${r.index}`;
    const seen = byKey.get(key);
    if (!seen) {
      byKey.set(key, row);
      rows.push(row);
    } else if (seen.fidelity !== 'full' && row.fidelity === 'full') {
      rows[rows.indexOf(seen)] = row;
      byKey.set(key, row);
    }
  }
  return rows;
}

/** A block-wise weight search's candidates (spaces/weights/run.ts logs block, generation, quality, sparsity). */
function blockCandidatesOf(run: string, evals: Json[], metric: QualityMetric): IndividualRow[] {
  const rows: IndividualRow[] = [];
  for (const r of evals) {
    const block = num(r.block);
    const sparsity = num(r.sparsity);
    if (block === undefined || sparsity === undefined) continue;
    const q = num(r.quality);
    rows.push({
      run,
      generation: block,
      sparsity,
      quality: q === undefined ? null : reportedQuality(metric, q),
      fitness: null,
      fidelity: 'full',
    });
  }
  return rows;
}

function generationsOf(run: string, gens: Json[], individuals: IndividualRow[], metric: QualityMetric) {
  const rows: GenerationRow[] = [];
  for (const g of gens) {
    const generation = num(g.generation);
    const bestFitness = num(g.bestFitness);
    if (generation === undefined || bestFitness === undefined) continue;
    const mine = individuals.filter((i) => i.generation === generation);
    const meanSparsity = mine.length ? mine.reduce((a, i) => a + i.sparsity, 0) / mine.length : Number.NaN;
    const q = num(g.bestQuality) ?? Number.NaN;
    rows.push({
      run,
      generation,
      bestFitness,
      meanFitness: num(g.meanFitness) ?? Number.NaN,
      bestSparsity: num(g.bestSparsity) ?? Number.NaN,
      meanSparsity,
      maxSparsity: num(g.maxSparsity) ?? Number.NaN,
      bestQuality: reportedQuality(metric, q),
    });
  }
  return rows;
}

function headCellsOf(run: string, queryHeads: number[], keep: unknown, path: string): HeadCell[] {
  const genes = queryHeads.reduce((a, b) => a + b, 0);
  const bits = typeof keep === 'string' ? [...keep].map(Number) : Array.isArray(keep) ? keep.map(Number) : [];
  if (bits.length !== genes)
    throw fileError(path, `the mask has ${bits.length} genes, the model ${genes} heads`);
  const cells: HeadCell[] = [];
  let g = 0;
  queryHeads.forEach((n, layer) => {
    for (let head = 0; head < n; head++) cells.push({ run, layer, head, kept: bits[g++] === 1 });
  });
  return cells;
}

/** Reads one run directory into rows. `name` labels it in every plot and table. */
export async function readRunForReport(
  dir: string,
  name: string = basename(resolve(dir)),
): Promise<ReportRun> {
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory()) throw fileError(dir, 'run directory does not exist');
  const configPath = join(dir, RUN_FILES.config);
  const config = (await readJsonFile(configPath, 'config.json', true))!;
  if (!Object.hasOwn(RUN_KINDS, config.kind as string))
    throw fileError(configPath, 'not a geneprune run (kind field)');
  if (config.kind === STRUCTURED_RUN_KIND)
    throw fileError(
      configPath,
      'a structured search run: reports cover head and weight runs so far (see its result.json)',
    );
  const resultPath = join(dir, RUN_FILES.result);
  const result = (await readJsonFile(resultPath, 'result.json', true))!;
  const settings = (config.settings ?? {}) as Json;
  const metric = String(settings.metric ?? 'ppl') as QualityMetric;
  const model = (config.model ?? {}) as {
    path?: unknown;
    shape?: { numLayers?: unknown; queryHeads?: unknown; crossHeads?: unknown };
  };
  // Head layers in gene order: every layer's self-attention, then an encoder-decoder's cross-attention layers.
  const queryHeads = [
    ...(Array.isArray(model.shape?.queryHeads) ? model.shape.queryHeads.map(Number) : []),
    ...(Array.isArray(model.shape?.crossHeads) ? model.shape.crossHeads.map(Number) : []),
  ];
  const space: RunSpace = config.kind === HEAD_RUN_KIND ? 'heads' : 'weights';
  const method = String(result.method ?? config.method ?? 'unknown');
  const notes: string[] = [];
  const ev = evaluationScore(result.eval as Json | undefined, resultPath);
  const calib = (result.calib ?? {}) as Json;
  const calibQuality = need(calib.quality, resultPath, 'calib.quality');
  const calibDense = need(calib.denseQuality, resultPath, 'calib.denseQuality');
  const entry = findMetric(metric);
  const negated = entry?.direction === 'higher';
  const calibAmount = num(calib.tokens);
  const calibUnit: DataRow['unit'] = entry ? amountUnit(entry) : 'items';
  const bench = measuredSpeed(await readJsonFile(join(dir, BENCH_FILE), BENCH_FILE, false));
  const statePath = join(dir, RUN_FILES.state);
  const state = await readJsonFile(statePath, 'state.json', false);
  // Finished: nothing may follow what the last state covers.
  if (state !== undefined && !(await refuseChangedSinceState(dir, state, statePath, { exact: true }))) {
    notes.push(
      'state.json predates its record of the logs: evals.jsonl and generations.jsonl are not verified',
    );
  }

  let sparsity: number;
  let removedText: string;
  let keptParameters: number;
  let totalParameters: number;
  let heads: HeadCell[] = [];
  let layers: LayerSparsityRow[] = [];
  if (space === 'heads') {
    const genes = need(result.genes, resultPath, 'genes');
    const removed = need(result.removed, resultPath, 'removed');
    sparsity = removed / genes;
    removedText = `${removed}/${genes} heads`;
    keptParameters = need(result.keptParameters, resultPath, 'keptParameters');
    totalParameters = need(result.totalParameters, resultPath, 'totalParameters');
    heads = headCellsOf(name, queryHeads, result.genome, resultPath);
  } else {
    const s = (result.sparsity ?? {}) as Json;
    sparsity = need(s.achieved, resultPath, 'sparsity.achieved');
    const prunable = need(result.prunableWeights, resultPath, 'prunableWeights');
    totalParameters = need(result.parameters, resultPath, 'parameters');
    const pattern = String(result.pattern ?? 'unstructured');
    removedText = `${(100 * sparsity).toFixed(1)} % of ${prunable} weights (${pattern})`;
    const list = Array.isArray(result.layers) ? (result.layers as Json[]) : [];
    layers = list.map((l) => ({
      run: name,
      layer: need(l.layer, resultPath, 'layers[].layer'),
      sparsity: need(l.sparsity, resultPath, 'layers[].sparsity'),
      weights: need(l.weights, resultPath, 'layers[].weights'),
      pruned: need(l.pruned, resultPath, 'layers[].pruned'),
    }));
    keptParameters = totalParameters - layers.reduce((a, l) => a + l.pruned, 0);
    if (bench) notes.push(`${BENCH_FILE} ignored: bench measures head removal, not weight masks`);
  }

  const evals = await readJsonl(join(dir, RUN_FILES.evals));
  const individuals =
    space === 'heads' ? individualsOf(name, evals, metric) : blockCandidatesOf(name, evals, metric);
  if (individuals.some((i) => i.generation === null))
    notes.push(
      'evals.jsonl does not log generations (made before it did): its individuals are not coloured by generation',
    );
  const generations = generationsOf(
    name,
    await readJsonl(join(dir, RUN_FILES.generations)),
    individuals,
    metric,
  );
  let front: FrontRow[] = [];
  if (method === 'nsga') {
    const f = await readFile(join(dir, RUN_FILES.front), 'utf8').catch(() => undefined);
    let points: Json[] = [];
    try {
      points = f === undefined ? [] : JSON.parse(f);
    } catch {
      throw fileError(join(dir, RUN_FILES.front), 'front.json is corrupt (not valid JSON)');
    }
    const pick = String(result.genome ?? '');
    front = points.map((p) => ({
      run: name,
      sparsity: need(p.sparsity, join(dir, RUN_FILES.front), 'sparsity'),
      quality: (negated ? -1 : 1) * need(p.quality, join(dir, RUN_FILES.front), 'quality'),
      keptParameters: num(p.keptParameters) ?? Number.NaN,
      picked: p.genome === pick,
    }));
    // The run picks from this front (runs/front.ts), so its mask is one of its points; older runs picked from
    // every mask scored and may not be.
    if (front.length > 0 && !front.some((f) => f.picked))
      notes.push("the run's mask is not on its front.json (a run made before the pick came from the front)");
    const warning = (result.pick as Json | undefined)?.warning;
    if (typeof warning === 'string') notes.push(`pick: ${warning}`);
  }
  const calibRecorded = config.calibration;
  const evalRecorded = config.evaluation;
  const row: MethodRow = {
    run: name,
    dir: resolve(dir),
    space,
    method,
    sparsity,
    removedText,
    keptParameters,
    totalParameters,
    parameterRatio: totalParameters / keptParameters,
    qualityName: ev.name,
    lowerIsBetter: ev.lower,
    quality: ev.value,
    denseQuality: ev.dense,
    calibName: `calibration ${entry?.label}`,
    calibQuality: negated ? -calibQuality : calibQuality,
    calibDenseQuality: negated ? -calibDense : calibDense,
    calibration: dataRow(calibRecorded, settings.calib, calibAmount, calibUnit),
    evaluation: dataRow(evalRecorded, settings.eval, ev.amount, ev.unit),
    forwardPasses: need(result.forwardPasses, resultPath, 'forwardPasses'),
    seconds: need(result.seconds, resultPath, 'seconds'),
    ...(bench && space === 'heads' ? { measured: bench } : {}),
  };
  return {
    name,
    dir: resolve(dir),
    space,
    method,
    model: {
      path: String(model.path ?? ''),
      layers: num(model.shape?.numLayers) ?? queryHeads.length,
      queryHeads,
    },
    row,
    individuals,
    generations,
    front,
    heads,
    layers,
    notes,
  };
}

/** Names for several run directories: their base names, or paths relative to their common parent when those clash. */
export function runNames(dirs: string[]): string[] {
  const abs = dirs.map((d) => resolve(d));
  const bases = abs.map((d) => basename(d));
  if (new Set(bases).size === bases.length) return bases;
  const cwd = process.cwd();
  return abs.map((d) => relative(cwd, d) || d);
}

/** Reads every run; refuses the same directory twice. */
export async function readRunsForReport(dirs: string[]): Promise<ReportRun[]> {
  const seen = new Set<string>();
  for (const d of dirs) {
    const a = resolve(d);
    if (seen.has(a)) throw fileError(d, 'given twice');
    seen.add(a);
  }
  const names = runNames(dirs);
  const runs: ReportRun[] = [];
  for (let i = 0; i < dirs.length; i++) runs.push(await readRunForReport(dirs[i], names[i]));
  return runs;
}
