/**
 * Every file a run directory holds, by name, and the JSON / JSONL reading and writing they share. Runs, the
 * report and the dashboard all name a run's files from here, so none of them can look for a file under a name
 * another one does not write.
 *
 * A run directory, for any search space (genomes are written in the space's text):
 *   config.json          the frozen run configuration (model identity, data paths and hashes, every option, seed)
 *   run.lock             while a process works in the directory: its pid and host
 *   evals.jsonl          one line per evaluated individual (a block-wise weight search: per scored candidate)
 *   generations.jsonl    one line per generation (best, mean, counters; NSGA-II: the archive's front and pick)
 *   state.json           GA or NSGA-II state after the last finished generation (a weight run: once its mask is
 *                        fixed), written atomically, stamped with what it was computed under (rundir.ts, RunStamp)
 *   front.json           NSGA-II: the non-dominated set of every mask scored (front.ts)
 *   mask.json            a head run's mask (masks/headfile.ts), written at the end
 *   weight-mask.safetensors        a weight run's mask (masks/weightfile.ts)
 *   recovered-weights.safetensors  `--recover`: the refitted weights (masks/recovered.ts)
 *   search-state.json, search-blocks.bin  a block-wise weight search's checkpoint (checkpoints.ts)
 *   method-state.json    a weight method's own state (alloc, after each generation; checkpoints.ts)
 *   result.json          final numbers: calibration and evaluation scores, forward passes, time (results.ts)
 *   bench.json           speed measured by `geneprune bench` for the run's mask, read by the report
 *   workers.json         `--workers N` / `--queue URL`: what the evaluation backend has done (runs/workersfile.ts),
 *                        rewritten atomically at most once a second while scoring and once at the end; read by
 *                        the dashboard's workers panel
 */
import { appendFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileError } from '../errors.js';

export const RUN_FILES = {
  config: 'config.json',
  lock: 'run.lock',
  evals: 'evals.jsonl',
  generations: 'generations.jsonl',
  state: 'state.json',
  front: 'front.json',
  mask: 'mask.json',
  weightMask: 'weight-mask.safetensors',
  recoveredWeights: 'recovered-weights.safetensors',
  searchState: 'search-state.json',
  searchBlocks: 'search-blocks.bin',
  methodState: 'method-state.json',
  result: 'result.json',
  bench: 'bench.json',
  workers: 'workers.json',
} as const;

export const LOCK_FILE = RUN_FILES.lock;
/** A weight run's mask, the file `eval`, `generate` and `export --weight-mask` take. */
export const WEIGHT_MASK_FILE = RUN_FILES.weightMask;
/** `--recover`: the refitted weights beside the run's mask (o of a head run, the prunable matrices of a weight run). */
export const RECOVERED_WEIGHTS_FILE = RUN_FILES.recoveredWeights;
/** The file a report reads for measured speed: `geneprune bench --json --mask RUN/mask.json > RUN/bench.json`. */
export const BENCH_FILE = RUN_FILES.bench;
/** The logs a search's state covers: what it appended up to the moment the state was saved. */
export const SEARCH_LOGS: readonly string[] = [RUN_FILES.evals, RUN_FILES.generations];

/** Appends one record to the JSONL log `file` of the run directory `dir`. */
export async function appendJsonl(dir: string, file: string, record: unknown): Promise<void> {
  await appendFile(join(dir, file), `${JSON.stringify(record)}\n`);
}

/** The text of a JSONL log holding exactly `rows`. */
export function jsonlText(rows: readonly unknown[]): string {
  return rows.map((r) => `${JSON.stringify(r)}\n`).join('');
}

/**
 * Parses a JSONL log (none: no records), dropping a torn last line (a crash mid-append); a torn line elsewhere
 * is corruption.
 */
export async function readJsonl(path: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const lines = text.split('\n');
  const out: Array<Record<string, unknown>> = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]) continue;
    try {
      out.push(JSON.parse(lines[i]));
    } catch {
      if (i >= lines.length - 2) break;
      throw fileError(path, `line ${i + 1} is corrupt`);
    }
  }
  return out;
}

/** A JSON file's value, or undefined when there is no such file; refused in one line when it is not JSON. */
export async function readJsonIfPresent(path: string, what: string): Promise<unknown> {
  if (!(await stat(path).catch(() => undefined))) return undefined;
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    throw fileError(path, `${what} is corrupt (not valid JSON)`);
  }
}
