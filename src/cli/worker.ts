/**
 * `geneprune worker --queue URL`: scores the evaluation jobs searches post with `--queue` (queue/worker.ts), on
 * this machine, until SIGINT or SIGTERM; then it lets the active job finish and prints a summary. One line per
 * job on stderr (or one JSON object per line on stdout with --json); the URL is only ever shown redacted.
 */
import type { Command } from 'commander';
import { flagError } from '../errors.js';
import { runQueueWorker, type WorkerEvent } from '../queue/worker.js';
import { deviceOption, parseDevice, parseIntFlag, parseThreadsFlag, threadsOption } from './options.js';
import { untilStopped } from './signals.js';

interface WorkerFlags {
  queue?: string;
  model?: string;
  device: string;
  threads?: string;
  lockMs?: string;
  json?: boolean;
}

function text(e: WorkerEvent): string {
  switch (e.event) {
    case 'start':
      return `worker ${e.worker}: taking evaluation jobs from ${e.queue} (lock ${e.lockMs} ms)`;
    case 'scored':
      return `job ${e.job}: ${e.fidelity} quality ${e.quality === null ? 'non-finite' : e.quality.toPrecision(6)} on ${e.tokens} tokens in ${Math.round(e.ms)} ms`;
    case 'refused':
      return `job ${e.job}: refused: ${e.reason}`;
    case 'failed':
      return `job ${e.job}: failed: ${e.reason}`;
    case 'waiting':
      return e.line;
  }
}

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description(
      'Score the candidate evaluations searches post with --queue (BullMQ jobs on Redis), here, until stopped.',
    )
    .option(
      '--queue <url>',
      'the Redis the searches post to: redis://[user:password@]HOST:PORT[/DB] or rediss://…',
    )
    .option(
      '--model <path>',
      "this machine's copy of the model (default: the path the search opened); refused unless its fingerprint is the search's",
    )
    .addOption(deviceOption())
    .addOption(threadsOption())
    .option(
      '--lock-ms <ms>',
      "how long a job's lock lasts without renewal: a killed worker's job is taken again after about this long (default 30000)",
    )
    .option('--json', 'one JSON object per line on stdout for each job and the summary')
    .addHelpText(
      'after',
      `
Jobs carry an objective's identity, a fidelity and masks; the worker reads the search's recipe from Redis,
checks the model fingerprint and the data hashes, and refuses a job it cannot match rather than score it.
Stop it with Ctrl-C (SIGINT) or SIGTERM: the active job finishes first. Examples:
  geneprune worker --queue redis://127.0.0.1:6379
  geneprune worker --queue rediss://:PASSWORD@queue.example.org:6380/2 --model /data/models/stories260K.bin`,
    )
    .action(async (f: WorkerFlags) => {
      if (typeof f.queue !== 'string')
        throw flagError('--queue', 'required: the Redis URL the searches post to');
      const lockMs = typeof f.lockMs === 'string' ? parseIntFlag('--lock-ms', f.lockMs, 100) : undefined;
      const show = (e: WorkerEvent) => {
        if (f.json) process.stdout.write(`${JSON.stringify(e)}\n`);
        else process.stderr.write(`${text(e)}\n`);
      };
      const worker = await runQueueWorker({
        url: f.queue,
        ...(f.model !== undefined ? { model: f.model } : {}),
        device: parseDevice(String(f.device)),
        ...(typeof f.threads === 'string' ? { threads: parseThreadsFlag(f.threads) } : {}),
        ...(lockMs !== undefined ? { lockMs } : {}),
        onEvent: show,
      });
      await untilStopped();
      const s = await worker.close();
      if (f.json) process.stdout.write(`${JSON.stringify({ event: 'summary', ...s })}\n`);
      else
        process.stderr.write(
          `worker ${s.worker}: ${s.scored} jobs scored, ${s.refused} refused, ${s.failed} failed in ${s.seconds.toFixed(1)} s (${s.perSecond.toFixed(2)} jobs/s)\n`,
        );
    });
}
