/**
 * `geneprune dashboard RUN_DIR` and the `--dashboard [PORT]` / `--host ADDR` flags of heads and weights: the
 * live dashboard of a run (see docs/reports-and-dashboard.md). The URL goes to stderr; the server stops on Ctrl-C or
 * SIGTERM. Beside a search it only reads the run's files and takes the progress line the CLI already prints.
 */
import { type Command, Option } from 'commander';
import { type Dashboard, dashboard, flagError } from '../index.js';
import type { ProgressLine } from './progress.js';
import type { Flags } from './settings.js';
import { untilStopped } from './signals.js';

export const dashboardOption = () =>
  new Option(
    '--dashboard [port]',
    'serve a live dashboard of the run on this port (none or 0: a free one) at 127.0.0.1; the URL goes to stderr; after the run it stays up until Ctrl-C',
  );
export const hostOption = (standalone = false) =>
  new Option(
    '--host <addr>',
    `${standalone ? '' : 'with --dashboard: '}the address or host name to listen on (default: 127.0.0.1, this machine only; a loopback one still is); other machines may connect when they name it (0.0.0.0: one of this machine's addresses or its host name)`,
  );

function parsePort(flag: string, value: unknown): number {
  if (value === undefined || value === true) return 0;
  const text = String(value);
  const port = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port > 65535) throw flagError(flag, `not a port: "${text}" (0–65535)`);
  return port;
}

/** A search command's dashboard, when --dashboard was given: started before the search, on its run directory. */
export async function searchDashboard(f: Flags, runDir: string | undefined): Promise<Dashboard | undefined> {
  if (f.dashboard === undefined) {
    if (f.host !== undefined) throw flagError('--host', 'only with --dashboard');
    return undefined;
  }
  if (!runDir) return undefined;
  const d = await dashboard({
    runDir,
    port: parsePort('--dashboard', f.dashboard),
    ...(typeof f.host === 'string' ? { host: f.host } : {}),
    portFlag: '--dashboard',
    thread: true,
  });
  process.stderr.write(`dashboard: ${d.url}\n`);
  return d;
}

/** The progress line, also shown on the dashboard's page. */
export function withDashboard(progress: ProgressLine, d: Dashboard | undefined): ProgressLine {
  if (!d) return progress;
  return {
    update(text) {
      d.setLive(text);
      progress.update(text);
    },
    done() {
      progress.done();
    },
  };
}

/** After the search (or its failure): keep serving until Ctrl-C when it finished, then stop. */
export async function endSearchDashboard(d: Dashboard | undefined, finished: boolean): Promise<void> {
  if (!d) return;
  try {
    if (finished) {
      d.setLive(null);
      await d.refresh();
      process.stderr.write(`dashboard: the run has finished; still serving ${d.url} until Ctrl-C\n`);
      await untilStopped();
    }
  } finally {
    await d.close();
  }
}

export function registerDashboard(program: Command): void {
  program
    .command('dashboard')
    .description('Serve the live dashboard of a run directory, in progress or finished, until Ctrl-C.')
    .argument('<run-dir>', 'a heads or weights run directory')
    .option('--port <n>', 'port to listen on (default 0: a free one)')
    .addOption(hostOption(true))
    .addHelpText(
      'after',
      `
The page shows the run's progress, ETA, the best mask so far and its plots, updated as the run's files grow
(a run restarted with --resume included). Without --host, or with a loopback one, only this machine can
connect; a request whose Host header names another host is refused whatever --host says.

Examples:
  geneprune dashboard runs/ga25
  geneprune dashboard runs/ga25 --port 8080 --host 0.0.0.0`,
    )
    .action(async (runDir: string, f: Flags) => {
      const d = await dashboard({
        runDir,
        port: parsePort('--port', f.port),
        ...(typeof f.host === 'string' ? { host: f.host } : {}),
        requireRun: true,
      });
      process.stderr.write(`dashboard: ${d.url} (Ctrl-C to stop)\n`);
      await untilStopped();
      await d.close();
    });
}
