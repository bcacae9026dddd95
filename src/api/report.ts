/**
 * `report`: one self-contained HTML page of figures and tables for one or more finished run directories (head
 * searches, weight pruning, any method), written atomically. With `bench`, the speed of each head run's mask is
 * measured first (the `bench` command's measurement, heads removed physically) and stored as the run's
 * bench.json, which later reports read as they are.
 *
 * The report never replaces what it reads: inside a run directory only a `.html` name is written (every other
 * name is, or may become, one of the run's own files), an existing file is replaced only with `force`, and then
 * only when it is a report this command wrote before.
 */
import { open, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileError, flagError } from '../errors.js';
import { type ReportFigure, renderReportHtml } from '../report/html.js';
import { BENCH_FILE, type ReportRun, readRunsForReport } from '../report/rows.js';
import { RUN_FILES } from '../runs/files.js';
import { isRunDir } from '../runs/rundir.js';
import { isSameOrInside, realPathOf, writeJsonAtomic, writeTextAtomic } from '../util/fs.js';
import { bench } from './bench.js';
import type { RuntimeOptions } from './common.js';

export interface ReportOptions extends RuntimeOptions {
  /** Finished run directories (`heads` or `weights` runs). */
  runs: string[];
  /** The HTML file to write (default report.html). */
  out?: string;
  /** Measure the speed of head runs that have no bench.json yet, and store it there. */
  bench?: boolean;
  /** Timed runs per model when measuring (default 5). */
  benchRuns?: number;
  /** Replace an existing `out`, which must be a report written before (never any other file). */
  force?: boolean;
  onStatus?: (line: string) => void;
}

export interface ReportResult {
  out: string;
  runs: string[];
  figures: Array<Pick<ReportFigure, 'id' | 'kind' | 'run' | 'points'>>;
  /** Run directories whose speed this call measured (bench.json written). */
  measured: string[];
}

async function measureSpeed(runs: ReportRun[], opts: ReportOptions): Promise<string[]> {
  const measured: string[] = [];
  for (const run of runs) {
    if (run.space !== 'heads' || run.row.measured) continue;
    opts.onStatus?.(`bench: ${run.dir} (its mask's heads removed, against the dense model)`);
    const r = await bench({
      models: [run.model.path],
      mask: join(run.dir, RUN_FILES.mask),
      runs: opts.benchRuns,
      device: opts.device,
      threads: opts.threads,
      memoryBudget: opts.memoryBudget,
    });
    await writeJsonAtomic(join(run.dir, BENCH_FILE), r);
    measured.push(run.dir);
  }
  return measured;
}

/** How a page `renderReportHtml` wrote begins: its head's title is "geneprune report: …". */
const REPORT_HEAD = /^<!DOCTYPE html>\s*<html[^>]*><head>[\s\S]*?<title>geneprune report: /;

/** Whether `path` is a report this command wrote (read from its first 4 KiB, where the title is). */
async function isReportFile(path: string): Promise<boolean> {
  const fh = await open(path, 'r').catch(() => undefined);
  if (!fh) return false;
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(4096), 0, 4096, 0);
    return REPORT_HEAD.test(buffer.subarray(0, bytesRead).toString('utf8'));
  } finally {
    await fh.close();
  }
}

/** Refuses an `out` whose writing would destroy a run's file or any file but an earlier report. */
async function checkReportOut(out: string, runDirs: readonly string[], force: boolean): Promise<void> {
  const real = await realPathOf(out);
  const info = await stat(real).catch(() => undefined);
  if (info?.isDirectory()) throw fileError(out, 'is a directory (give a file name)');
  // Both spellings: a symlink inside a run is replaced by the written file (rename), its target left alone.
  const places = [...new Set([out, real])];
  if (!places.every((p) => p.endsWith('.html'))) {
    const runs = [
      ...(await Promise.all(runDirs.map((d) => realPathOf(d)))),
      ...places.map((p) => dirname(p)),
    ];
    for (const run of runs) {
      if (places.some((p) => isSameOrInside(p, run)) && (await isRunDir(run))) {
        throw flagError(
          '--out',
          `${out} is inside the run directory ${run}, whose files are the run's own: give a .html name or a path outside the run`,
        );
      }
    }
  }
  if (!info) return;
  if (!force) throw flagError('--out', `${out} exists (use --force to replace it)`);
  if (!(await isReportFile(real)))
    throw flagError('--out', `${out} is not a geneprune report: --force replaces only a previous report`);
}

export async function report(opts: ReportOptions): Promise<ReportResult> {
  if (opts.runs.length === 0) throw flagError('RUN_DIR', 'give at least one run directory');
  const out = resolve(opts.out ?? 'report.html');
  await checkReportOut(out, opts.runs, opts.force === true);
  let runs = await readRunsForReport(opts.runs);
  let measured: string[] = [];
  const notes: string[] = [];
  if (opts.bench) {
    measured = await measureSpeed(runs, opts);
    if (measured.length > 0) runs = await readRunsForReport(opts.runs);
    if (runs.some((r) => r.space === 'weights'))
      notes.push(
        '--bench measured head runs only: bench removes heads; a weight mask leaves dense kernels as slow',
      );
  }
  opts.onStatus?.(`rendering ${runs.length} run${runs.length === 1 ? '' : 's'}`);
  const { html, figures } = await renderReportHtml(runs, { generatedAt: new Date().toISOString(), notes });
  await writeTextAtomic(out, html);
  return {
    out,
    runs: runs.map((r) => r.dir),
    figures: figures.map(({ id, kind, run, points }) => ({
      id,
      kind,
      ...(run === undefined ? {} : { run }),
      points,
    })),
    measured,
  };
}
