/**
 * What the dashboard shows of a run directory, read from its files only (runs/files.ts names them): the run's
 * config, its evaluation and generation logs (followed as they grow, see tail.ts), the lock (is a process still
 * working there?), and at the end mask.json and result.json. A block-wise weight search logs every candidate
 * too (evals.jsonl: block, generation in the block, quality, sparsity of the block), coloured by block; its
 * per-block search state (search-state.json) gives each finished block's best as a "generation". A weight run
 * with no log (one-shot methods, alloc, runs made before the log) shows each finished block's best as its point.
 *
 * With `--workers N` or `--queue URL` the run's workers.json (runs/workersfile.ts) says what the evaluation
 * backend has done; the view carries it (`RunMeta.workers`) only while the file exists and reads as one.
 *
 * `refresh` compares the files with what was last seen and returns the change: new log records (an append) or,
 * when a log was rewritten (a resumed run drops a partly logged generation), the whole view again (a snapshot).
 * Everything taken from the files is checked for type here and stays plain data; the page shows it as text.
 */
import { readFile, stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { findMetric } from '../metrics/registry.js';
import { LOCK_FILE, RUN_FILES } from '../runs/files.js';
import { pickOfLoggedFront } from '../runs/front.js';
import { HEAD_RUN_KIND, WEIGHT_RUN_KIND } from '../runs/rundir.js';
import { readWorkersFile, type WorkersFile } from '../runs/workersfile.js';
import type { BlockSearchProgress } from '../spaces/weights/blockwise.js';
import { pushAll } from '../util/arrays.js';
import { pidAlive } from '../util/fs.js';
import {
  addToBlockLog,
  type BlockLog,
  generationsPerBlock,
  isFixedSparsitySearch,
  positionFromLog,
  positionFromProcess,
  type SearchPosition,
} from './blocks.js';
import { tailJsonl } from './tail.js';

/** One evaluated individual (a head run), or one finished block's best mask (a weight run). */
export interface EvalPoint {
  /** Order of arrival, from 0. */
  n: number;
  /** Generation (head run) or block (weight run); null when the log does not say. */
  generation: number | null;
  /** Share of the search space's units removed (heads, or a block's weights). */
  sparsity: number | null;
  /** The metric's score, higher or lower is better as `RunMeta.score` says; null when not finite. */
  score: number | null;
  fitness: number | null;
  fidelity: string | null;
  /** A weight run: the generation within its block (0: the initial population); absent for head runs. */
  step?: number | null;
}

/** One finished generation (or block). */
export interface GenerationPoint {
  generation: number;
  bestFitness: number | null;
  bestScore: number | null;
  bestSparsity: number | null;
  meanFitness: number | null;
  /** NSGA-II: size of the front of every mask scored up to this generation. */
  front: number | null;
}

export type RunStatus = 'waiting' | 'running' | 'stopped' | 'finished';

export interface BestMask {
  /** The head genome as 0/1 text, layer-major (1 keeps the head); null for weight runs. */
  genome: string | null;
  score: number | null;
  sparsity: number | null;
  fitness: number | null;
  /** 'search': the best of the generations so far; 'mask': the run's final mask.json. */
  from: 'search' | 'mask';
}

export interface RunMeta {
  dir: string;
  name: string;
  status: RunStatus;
  kind: 'heads' | 'weights' | null;
  method: string | null;
  model: string | null;
  /** The score the plots show: the metric's own value (BLEU and accuracies un-negated), and its direction. */
  score: { label: string; higherIsBetter: boolean };
  /** Query heads per layer (head runs). */
  layers: number[] | null;
  unit: 'generation' | 'block';
  done: number;
  total: number | null;
  /** Search compute seconds so far (evaluations' own times; a weight run's recorded seconds). */
  searchSeconds: number;
  etaSeconds: number | null;
  best: BestMask | null;
  /** Final numbers from result.json, as label and text. */
  result: Array<[string, string]> | null;
  /** What the running process says it is doing (only when the dashboard runs inside it). */
  live: string | null;
  evaluations: number;
  nonFinite: number;
  /** Log lines that could not be read (torn or not JSON objects). */
  unreadable: number;
  /** A block-wise weight search under way: where it is (see blocks.ts); null otherwise. */
  search: SearchPosition | null;
  /** A weight search whose candidates all keep one budget: its points are plotted by generation, not sparsity. */
  fixedSparsity: boolean;
  /** workers.json: the evaluation backend's work (a one-process run, or a file that does not read: null). */
  workers: WorkersView | null;
}

/** The workers panel's numbers, from workers.json. */
export interface WorkersView {
  label: string;
  waiting: number;
  active: number;
  done: number;
  failed: number;
  /** Wall seconds the backend has been watched (the file's `seconds`). */
  seconds: number;
  workers: Array<{
    id: string;
    evaluations: number;
    /** Evaluations per wall second since the backend started (null before any time has passed). */
    perSecond: number | null;
    /** Share of that time it was busy scoring, 0–1 (null likewise). */
    busy: number | null;
  }>;
}

export interface Snapshot {
  meta: RunMeta;
  evals: EvalPoint[];
  generations: GenerationPoint[];
}

export type RunChange =
  | { kind: 'snapshot'; snapshot: Snapshot }
  | { kind: 'append'; meta: RunMeta; evals: EvalPoint[]; generations: GenerationPoint[] };

export interface RunWatcher {
  /** Reads what changed on disk since the last call; undefined when nothing did. */
  refresh(): Promise<RunChange | undefined>;
  snapshot(): Snapshot;
  /**
   * A line from the process running the search (in-process dashboards only), and the block search's report it
   * was made of (weight runs; absent: the last one stands); shown with the next refresh.
   */
  setLive(line: string | null, search?: BlockSearchProgress | null): void;
}

const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);
const str = (x: unknown): string | null => (typeof x === 'string' ? x : null);
const GENOME = /^[01]+$/;

/** How the page names and orders a run's metric: its registry entry's plot title and direction. */
function scoreOf(metric: string | null): RunMeta['score'] {
  const m = findMetric(metric);
  if (m) return { label: m.title, higherIsBetter: m.direction === 'higher' };
  // An unknown metric's name is not shown: only the registry's fixed words reach the page's plots.
  return { label: 'quality', higherIsBetter: false };
}

async function readJsonFile(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    const v = JSON.parse(await readFile(path, 'utf8'));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A file's identity and version, to re-read it only when it changed. */
async function versionOf(path: string): Promise<string | undefined> {
  const s = await stat(path).catch(() => undefined);
  return s ? `${s.ino}:${s.size}:${s.mtimeMs}` : undefined;
}

function removedShare(genome: string): number {
  let zeros = 0;
  for (let i = 0; i < genome.length; i++) if (genome.charCodeAt(i) === 48) zeros++;
  return zeros / genome.length;
}

const pct = (x: unknown) => (num(x) === null ? '?' : `${(100 * (x as number)).toFixed(1)} %`);
const fixed = (x: unknown, d = 4) => (num(x) === null ? '?' : (x as number).toFixed(d));

/** result.json's headline numbers, as the CLI prints them. */
function resultLines(kind: RunMeta['kind'], r: Record<string, unknown>): Array<[string, string]> {
  const lines: Array<[string, string]> = [];
  const calib = (r.calib ?? {}) as Record<string, unknown>;
  const evalScore = (r.eval ?? {}) as Record<string, unknown>;
  if (kind === 'heads' && num(r.removed) !== null && num(r.genes) !== null) {
    lines.push([
      'removed',
      `${r.removed}/${r.genes} heads (${pct((r.removed as number) / (r.genes as number))})`,
    ]);
  }
  if (kind === 'weights') {
    const sp = (r.sparsity ?? {}) as Record<string, unknown>;
    lines.push(['sparsity', `${pct(sp.achieved)} of the prunable weights (target ${pct(sp.target)})`]);
  }
  const metric = str(calib.metric) ?? 'ppl';
  const s = scoreOf(metric);
  const calibValue = (q: unknown) =>
    num(q) === null ? null : s.higherIsBetter ? -(q as number) : (q as number);
  if (num(calib.quality) !== null) {
    lines.push([
      'calibration',
      `${s.label} ${fixed(calibValue(calib.quality))} (dense ${fixed(calibValue(calib.denseQuality))})`,
    ]);
  }
  if (num(evalScore.perplexity) !== null) {
    lines.push([
      'evaluation',
      `perplexity ${fixed(evalScore.perplexity)} (dense ${fixed(evalScore.densePerplexity)})`,
    ]);
  } else if (num(evalScore.accuracy) !== null) {
    lines.push(['evaluation', `accuracy ${pct(evalScore.accuracy)} (dense ${pct(evalScore.denseAccuracy)})`]);
  }
  if (num(r.seconds) !== null) lines.push(['time', `${(r.seconds as number).toFixed(1)} s`]);
  return lines;
}

/** The panel's view of a checked workers.json: only its fields, rates worked out here. */
export function workersView(f: WorkersFile): WorkersView {
  const s = f.seconds;
  return {
    label: f.label,
    waiting: f.waiting,
    active: f.active,
    done: f.done,
    failed: f.failed,
    seconds: s,
    workers: f.workers.map((w) => ({
      id: w.id,
      evaluations: w.evaluations,
      perSecond: s > 0 ? w.evaluations / s : null,
      busy: s > 0 ? Math.min(w.busyMs / 1000 / s, 1) : null,
    })),
  };
}

/** Follows the run directory `dir` (which may not exist yet: a run about to be created). */
export function watchRun(dir: string): RunWatcher {
  const root = resolve(dir);
  let evalsTail = tailJsonl(join(root, RUN_FILES.evals));
  let generationsTail = tailJsonl(join(root, RUN_FILES.generations));
  let config: Record<string, unknown> | undefined;
  let configVersion: string | undefined;
  let evals: EvalPoint[] = [];
  let generations: GenerationPoint[] = [];
  let lastBest: BestMask | null = null;
  let computeMs = 0;
  let nonFinite = 0;
  let unreadable = 0;
  let result: Record<string, unknown> | undefined;
  let resultVersion: string | undefined;
  let maskBest: BestMask | null = null;
  let maskVersion: string | undefined;
  let blocksVersion: string | undefined;
  let workers: WorkersView | null = null;
  let workersVersion: string | undefined;
  let blocks: { done: number; seconds: number; reports: Array<Record<string, unknown>> } | undefined;
  let live: string | null = null;
  let meta: RunMeta | undefined;
  /** A weight run: whether evals.jsonl has given any point (else its points are the block bests). */
  let evalsLogged = false;
  let blockBest = new Set<EvalPoint>();
  /** A weight run: the latest block evals.jsonl has candidates of, and the search's own last report. */
  let blockLog: BlockLog | undefined;
  let searchReport: BlockSearchProgress | null = null;

  const kind = (): RunMeta['kind'] =>
    config?.kind === HEAD_RUN_KIND ? 'heads' : config?.kind === WEIGHT_RUN_KIND ? 'weights' : null;
  const settings = () => (config?.settings ?? {}) as Record<string, unknown>;
  const score = () => scoreOf(str(settings().metric));
  const toScore = (quality: unknown) => {
    const q = num(quality);
    return q === null ? null : score().higherIsBetter ? -q : q;
  };

  function clearLogs(): void {
    evals = [];
    generations = [];
    lastBest = null;
    computeMs = 0;
    nonFinite = 0;
    unreadable = 0;
    evalsLogged = false;
    blockBest = new Set();
    blockLog = undefined;
  }

  async function readLogsAgain(): Promise<void> {
    clearLogs();
    evalsTail = tailJsonl(join(root, RUN_FILES.evals));
    generationsTail = tailJsonl(join(root, RUN_FILES.generations));
    const e = await evalsTail.read();
    const g = await generationsTail.read();
    for (const r of e.records) addEval(r);
    for (const r of g.records) addGeneration(r);
    unreadable = e.corrupt + g.corrupt;
    evalsLogged = e.records.length > 0;
  }

  function addEval(r: Record<string, unknown>): EvalPoint {
    const genome = str(r.genome);
    const sparsity = num(r.sparsity) ?? (genome && GENOME.test(genome) ? removedShare(genome) : null);
    const q = toScore(r.quality);
    if (q === null) nonFinite++;
    if (r.cached !== true) computeMs += num(r.ms) ?? 0;
    const weights = kind() === 'weights';
    const p: EvalPoint = {
      n: evals.length,
      // A weight run's points are coloured by block (its generations restart in every block).
      generation: weights ? num(r.block) : num(r.generation),
      sparsity,
      score: q,
      fitness: num(r.fitness),
      fidelity: r.fidelity === 'low' || r.fidelity === 'full' ? r.fidelity : null,
      ...(weights ? { step: num(r.generation) } : {}),
    };
    evals.push(p);
    if (weights && p.generation !== null && p.step != null) {
      const point = { block: p.generation, generation: p.step, ms: num(r.ms) ?? 0, score: q, sparsity };
      blockLog = addToBlockLog(blockLog, point, score().higherIsBetter);
    }
    return p;
  }

  function addGeneration(r: Record<string, unknown>): GenerationPoint | undefined {
    const g = num(r.generation);
    if (g === null) return undefined;
    const front = Array.isArray(r.front) ? (r.front as Array<Record<string, unknown>>) : null;
    const best = (r.best ?? {}) as Record<string, unknown>;
    const p: GenerationPoint = {
      generation: g,
      bestFitness: num(r.bestFitness),
      bestScore: toScore(r.bestQuality),
      bestSparsity: num(r.bestSparsity),
      meanFitness: num(r.meanFitness),
      front: front ? front.length : null,
    };
    generations.push(p);
    const genome = str(best.genome);
    if (front && front.length > 0) {
      // NSGA-II: the run's own rule on the front it picked from (runs/front.ts), the line's best or not.
      lastBest = nsgaPickOfFront(front);
    } else if (genome && GENOME.test(genome)) {
      lastBest = {
        genome,
        score: toScore(best.quality),
        sparsity: num(best.sparsity),
        fitness: num(best.fitness),
        from: 'search',
      };
    }
    return p;
  }

  /** NSGA-II: the pick the run made from a logged front (runs/front.ts `pickOfLoggedFront`). */
  function nsgaPickOfFront(front: Array<Record<string, unknown>>): BestMask | null {
    const pick = pickOfLoggedFront(front, num(settings().targetSparsity) ?? undefined);
    if (!pick) return null;
    const f = pick.point;
    return {
      genome: f.genome,
      score: toScore(f.quality),
      sparsity: f.sparsity,
      fitness: null,
      from: 'search',
    };
  }

  /**
   * A weight run's finished blocks, from search-state.json (rewritten whole after every block), or once the
   * mask is fixed from state.json's method report, which holds every block.
   */
  async function readBlocks(): Promise<boolean> {
    const searchPath = join(root, RUN_FILES.searchState);
    const fixedPath = join(root, RUN_FILES.state);
    const v = `${await versionOf(searchPath)}|${await versionOf(fixedPath)}`;
    if (v === blocksVersion) return false;
    blocksVersion = v;
    const st = await readJsonFile(searchPath);
    const fixed = await readJsonFile(fixedPath);
    const report = (fixed?.methodReport ?? {}) as Record<string, unknown>;
    const all = Array.isArray(report.layers) ? (report.layers as Array<Record<string, unknown>>) : undefined;
    const reports = all ?? (Array.isArray(st?.reports) ? (st.reports as Array<Record<string, unknown>>) : []);
    blocks =
      st || all
        ? {
            done: all ? all.length : (num(st?.done) ?? reports.length),
            seconds: num(fixed?.seconds) ?? num(st?.seconds) ?? 0,
            reports,
          }
        : undefined;
    return true;
  }

  function blockPoints(): { evals: EvalPoint[]; generations: GenerationPoint[] } {
    const e: EvalPoint[] = [];
    const g: GenerationPoint[] = [];
    for (const r of blocks?.reports ?? []) {
      const layer = num(r.layer);
      const best = (r.best ?? {}) as Record<string, unknown>;
      if (layer === null) continue;
      const quality =
        num(best.perplexity) ??
        num(best.quality) ??
        (num(best.bleu) === null ? null : -(best.bleu as number));
      // A seeded GA's report gives its block's best as the metric's own value (bestQuality) and sparsity.
      const s = quality !== null ? toScore(quality) : num(r.bestQuality);
      const sparsity = num(best.sparsity) ?? num(r.sparsity);
      e.push({
        n: e.length,
        generation: layer,
        sparsity,
        score: s,
        fitness: num(best.fitness),
        fidelity: null,
        // The block's best stands at the block's last generation (a seeded GA's count, the paper GA's iterations).
        step: num(r.generations) ?? num(r.iterations),
      });
      g.push({
        generation: layer,
        bestFitness: num(best.fitness),
        bestScore: s,
        bestSparsity: sparsity,
        meanFitness: null,
        front: null,
      });
    }
    return { evals: e, generations: g };
  }

  async function status(): Promise<RunStatus> {
    if (!config) return 'waiting';
    if (result) return 'finished';
    const lock = await readJsonFile(join(root, LOCK_FILE));
    const pid = num(lock?.pid);
    if (pid !== null && (lock?.host !== hostname() || pidAlive(pid))) return 'running';
    return 'stopped';
  }

  async function buildMeta(): Promise<RunMeta> {
    // The one wait comes first: the rest is read in one go, so a line and its report given while the lock is
    // read (setLive, from the searching process) reach the view together, never the new line beside the old
    // report's block, generation and best.
    const runStatus = await status();
    const k = kind();
    const s = settings();
    const model = (config?.model ?? {}) as Record<string, unknown>;
    const shape = (model.shape ?? {}) as Record<string, unknown>;
    const queryHeads = Array.isArray(shape.queryHeads) ? shape.queryHeads.map(num) : null;
    const layers = queryHeads?.every((h) => h !== null && Number.isInteger(h) && h >= 0 && h <= 4096)
      ? (queryHeads as number[])
      : null;
    const weights = k === 'weights';
    const done = weights ? (blocks?.done ?? 0) : generations.length;
    const total = weights
      ? num(shape.numLayers)
      : s.method === 'ga' || s.method === 'nsga'
        ? num(s.generations)
        : null;
    const finished = result !== undefined;
    const search = weights && !finished && total !== null ? searchPosition(done, total) : null;
    const seconds = search ? search.seconds : weights ? (blocks?.seconds ?? 0) : computeMs / 1000;
    const eta = search
      ? search.eta
      : finished || total === null
        ? finished
          ? 0
          : null
        : done > 0
          ? (seconds / done) * Math.max(total - done, 0)
          : null;
    return {
      dir: root,
      name: basename(root),
      status: runStatus,
      kind: k,
      method: str(config?.method),
      model: str(model.path),
      score: score(),
      layers,
      unit: weights ? 'block' : 'generation',
      done,
      total,
      searchSeconds: seconds,
      etaSeconds: eta,
      best: maskBest ?? lastBest,
      result: result ? resultLines(k, result) : null,
      live,
      evaluations: evals.length,
      nonFinite,
      unreadable,
      search,
      fixedSparsity: weights && isFixedSparsitySearch(str(config?.method), s),
      workers,
    };
  }

  /** workers.json, re-read when it changed; a file that does not read as one shows no panel. */
  async function readWorkers(): Promise<void> {
    const v = await versionOf(join(root, RUN_FILES.workers));
    if (v === workersVersion) return;
    workersVersion = v;
    const f = v ? await readWorkersFile(root).catch(() => undefined) : undefined;
    workers = f ? workersView(f) : null;
  }

  /** A weight run's block search under way: its own last report while that is current, else the files' view. */
  function searchPosition(done: number, total: number): SearchPosition | null {
    const fromProcess = searchReport
      ? positionFromProcess(searchReport, done, (v) => (Number.isFinite(v) ? v : null))
      : null;
    if (fromProcess) return fromProcess;
    // Before the first block search logs a candidate (a method that does not search, or one still preparing),
    // there is no search to show.
    if (!evalsLogged) return null;
    return positionFromLog({
      blocksDone: done,
      blocks: total,
      checkpointSeconds: blocks?.seconds ?? 0,
      log: blockLog,
      generations: generationsPerBlock(config),
      bestKnown: isFixedSparsitySearch(str(config?.method), settings()),
    });
  }

  async function readMask(): Promise<void> {
    const path = join(root, RUN_FILES.mask);
    const v = await versionOf(path);
    if (v === maskVersion) return;
    maskVersion = v;
    const m = v ? await readJsonFile(path) : undefined;
    const keep = Array.isArray(m?.keep) && m.keep.every((x) => x === 0 || x === 1) ? m.keep.join('') : null;
    const info = (m?.info ?? {}) as Record<string, unknown>;
    const calibration = (info.calibration ?? {}) as Record<string, unknown>;
    maskBest = keep
      ? {
          genome: keep,
          score: toScore(calibration.quality),
          sparsity: removedShare(keep),
          fitness: null,
          from: 'mask',
        }
      : null;
  }

  return {
    snapshot() {
      return { meta: meta!, evals: [...evals], generations: [...generations] };
    },
    setLive(line, search) {
      live = line;
      searchReport = search ?? searchReport;
    },
    async refresh() {
      const cv = await versionOf(join(root, RUN_FILES.config));
      let reset = false;
      if (cv !== configVersion) {
        configVersion = cv;
        const next = cv ? await readJsonFile(join(root, RUN_FILES.config)) : undefined;
        // A run appearing (the page learns its kind and plots), another run in its place, or none: start over.
        reset = meta !== undefined;
        config = next;
        if (reset) {
          await readLogsAgain();
          result = undefined;
          resultVersion = undefined;
          maskBest = null;
          maskVersion = undefined;
          blocks = undefined;
          blocksVersion = undefined;
          workers = null;
          workersVersion = undefined;
        }
      }
      // result.json before the logs and checkpoints: a run writes it last, so a view that says finished also holds
      // everything logged before it (read the other way round, a line appended between the log's read and the
      // result's would be missing from a view that says the run has finished).
      const rv = await versionOf(join(root, RUN_FILES.result));
      if (rv !== resultVersion) {
        resultVersion = rv;
        result = rv ? await readJsonFile(join(root, RUN_FILES.result)) : undefined;
      }
      const newEvals: EvalPoint[] = [];
      const newGenerations: GenerationPoint[] = [];
      if (kind() === 'weights') {
        // Points: every candidate a block-wise search logged (evals.jsonl); a run without that log (a method
        // that does not search block by block, or one made before the log existed) gets each finished block's
        // best instead. Generations: each finished block's best, from the search state.
        const before = { evals, generations, logged: evalsLogged };
        const e = await evalsTail.read();
        if (e.reset) {
          // A resumed run dropped a stopped block's lines: read the log again (block bests follow below).
          reset = true;
          await readLogsAgain();
        } else {
          for (const r of e.records) newEvals.push(addEval(r));
          unreadable += e.corrupt;
          if (e.records.length > 0) evalsLogged = true;
        }
        // From block bests to the log: start the page over.
        if (evalsLogged && !before.logged && before.evals.length > 0) {
          reset = true;
          evals = evals.filter((p) => !blockBest.has(p));
          evals.forEach((p, i) => {
            p.n = i;
          });
        }
        if ((await readBlocks()) || reset) {
          const now = blockPoints();
          const extends_ =
            now.generations.length >= before.generations.length &&
            before.generations.every((p, i) => JSON.stringify(p) === JSON.stringify(now.generations[i]));
          if (!extends_) reset = true;
          pushAll(newGenerations, now.generations.slice(before.generations.length));
          generations = now.generations;
          if (!evalsLogged) {
            const stale =
              now.evals.length < before.evals.length ||
              !before.evals.every((p, i) => JSON.stringify(p) === JSON.stringify(now.evals[i]));
            if (stale) reset = true;
            pushAll(newEvals, now.evals.slice(before.evals.length));
            evals = now.evals;
            blockBest = new Set(evals);
          }
        }
      } else {
        const e = await evalsTail.read();
        const g = await generationsTail.read();
        if (e.reset || g.reset) {
          // A resumed run rewrote its logs: both are read again from their start, by fresh tails.
          reset = true;
          await readLogsAgain();
        } else {
          for (const r of e.records) newEvals.push(addEval(r));
          for (const r of g.records) {
            const p = addGeneration(r);
            if (p) newGenerations.push(p);
          }
          unreadable += e.corrupt + g.corrupt;
        }
        await readMask();
      }
      await readWorkers();
      const previous = meta;
      meta = await buildMeta();
      if (reset || previous === undefined) return { kind: 'snapshot', snapshot: this.snapshot() };
      if (
        newEvals.length > 0 ||
        newGenerations.length > 0 ||
        JSON.stringify(previous) !== JSON.stringify(meta)
      ) {
        return { kind: 'append', meta, evals: newEvals, generations: newGenerations };
      }
      return undefined;
    },
  };
}
