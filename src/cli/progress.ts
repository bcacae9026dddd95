/**
 * Progress on stderr: redrawn in place on a terminal, one plain line per update otherwise (at most one every
 * GENEPRUNE_PROGRESS_INTERVAL seconds, default 5, so a log file stays short). Every search reports a
 * SearchProgress and `searchProgressText` prints it in one format:
 *
 *   METHOD · STEP · best METRIC VALUE at S % · RATE UNIT/s · ETA T
 *
 * e.g. `nsga · generation 3/30, front of 14 · best ppl 4.2412 at 25.0 % · 2.4 evals/s · ETA 2m05s`; `best –` where
 * the stage has no score (a one-shot mask's recovery).
 */
import { metricOfLabel, quoteValue, type SearchProgress } from '../index.js';
import { formatSeconds } from './settings.js';

export interface ProgressLine {
  update(text: string): void;
  done(): void;
}

/** Milliseconds between plain lines when stderr is not a terminal. */
function plainInterval(): number {
  const v = Number(process.env.GENEPRUNE_PROGRESS_INTERVAL);
  return process.env.GENEPRUNE_PROGRESS_INTERVAL !== undefined && Number.isFinite(v) && v >= 0
    ? v * 1000
    : 5000;
}

export function progressLine(stream: NodeJS.WriteStream = process.stderr, quiet = false): ProgressLine {
  const tty = stream.isTTY === true;
  const interval = plainInterval();
  let last = Date.now();
  let shown = false;
  return {
    update(text) {
      if (quiet) return;
      const now = Date.now();
      if (tty) {
        stream.write(`\r\x1b[2K${text}`);
        shown = true;
      } else if (now - last >= interval) {
        stream.write(`${text}\n`);
        last = now;
      }
    },
    done() {
      if (tty && shown) stream.write('\r\x1b[2K');
      shown = false;
    },
  };
}

/**
 * A best so far as the line quotes it, as its metric's registry entry says: accuracies in per cent, BLEU with 2
 * decimals, ppl and KL with 4 (a label no entry has: 4).
 */
function bestText(b: SearchProgress['best']): string {
  if (!b) return 'best –';
  const m = metricOfLabel(b.metric);
  const value =
    m?.scale === 1
      ? quoteValue(m, b.value)
      : Number.isFinite(b.value)
        ? b.value.toFixed(m?.digits ?? 4)
        : 'not finite';
  return `best ${b.metric} ${value} at ${(100 * b.sparsity).toFixed(1)} %${b.note ? ` (${b.note})` : ''}`;
}

/**
 * Turns SearchProgress reports into lines, with the rate and ETA measured from where each phase was first seen
 * in this process: from `startedAt` (the command's start) and nothing done for a fresh run, or from its first
 * report for a resumed one and for every later phase (that first line shows `ETA ?`).
 */
export function searchProgressText(
  startedAt = performance.now(),
  resumed = false,
  clock: () => number = () => performance.now(),
) {
  let phase: string | undefined;
  let base = { t: startedAt, fraction: 0, count: 0 };
  return (p: SearchProgress): string => {
    const now = clock();
    if (p.phase !== phase) {
      const first = phase === undefined;
      phase = p.phase;
      base =
        first && !resumed
          ? { t: startedAt, fraction: 0, count: 0 }
          : { t: now, fraction: p.fraction, count: p.count };
    }
    const own = p.seconds !== undefined;
    const seconds = own ? p.seconds! : (now - base.t) / 1000;
    const done = own ? p.fraction : p.fraction - base.fraction;
    const rate = seconds > 0 ? (own ? p.count : p.count - base.count) / seconds : 0;
    const eta =
      p.fraction >= 1 ? 0 : done > 0 && seconds > 0 ? (seconds / done) * (1 - p.fraction) : Number.NaN;
    return `${p.method} · ${p.step} · ${bestText(p.best)} · ${rate.toFixed(1)} ${p.unit}/s · ETA ${formatSeconds(eta)}`;
  };
}

/** How a run's perplexities were scored, for its summary: token windows of a context, or whole source/target pairs. */
export function windowsText(r: { context: number; scored?: 'pairs' }): string {
  return r.scored === 'pairs' ? 'targets given their sources' : `ctx ${r.context}`;
}
