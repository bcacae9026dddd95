/**
 * `dashboard`: the live dashboard of a run directory (dashboard/server.ts), as the CLI starts it: beside a
 * search it runs in (`--dashboard`, the directory may not exist yet), or on its own for a run in progress or
 * finished (`geneprune dashboard RUN_DIR`, which must hold a run); beside a search, on a thread of its own. Failing to listen is one line naming the
 * flag at fault.
 */
import { stat } from 'node:fs/promises';
import { type Dashboard, type DashboardOptions, startDashboard } from '../dashboard/server.js';
import { startDashboardThread } from '../dashboard/thread.js';
import { fileError, flagError } from '../errors.js';
import { isRunDir } from '../runs/rundir.js';

export interface DashboardRunOptions extends DashboardOptions {
  /** Refuse a directory that holds no run (the standalone command); a search's own may not exist yet. */
  requireRun?: boolean;
  /** The flag that chose the port, for errors (default --port). */
  portFlag?: string;
  /**
   * Serve from a worker thread of its own (default false). Give it when this process also runs a search: a
   * forward pass holds the main thread for its whole length, and a server there would answer only between them.
   */
  thread?: boolean;
}

export async function dashboard(options: DashboardRunOptions): Promise<Dashboard> {
  const { requireRun, portFlag = '--port', thread = false, ...rest } = options;
  const port = rest.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw flagError(portFlag, `not a port: ${port}`);
  if (requireRun) {
    const info = await stat(rest.runDir).catch(() => undefined);
    if (!info?.isDirectory()) throw fileError(rest.runDir, 'run directory does not exist');
    if (!(await isRunDir(rest.runDir)))
      throw fileError(rest.runDir, 'not a geneprune run directory (no config.json of a head or weight run)');
  }
  try {
    return await (thread ? startDashboardThread(rest) : startDashboard(rest));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw flagError(portFlag, `port ${port} is in use`);
    if (code === 'EACCES') throw flagError(portFlag, `not allowed to listen on port ${port}`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EINVAL')
      throw flagError('--host', `cannot listen on ${rest.host ?? '127.0.0.1'} (${code})`);
    throw e;
  }
}
