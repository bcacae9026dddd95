/**
 * File plumbing shared by every writer: atomic file writes (temp beside the target, synced, renamed), fs errors
 * as one readable phrase, content hashes, a lock file owned by a process, removal of temporaries that dead
 * processes left behind, and replacing a whole directory so that a kill at any step loses nothing.
 *
 * Temporary names all carry the writing process's pid, which is how a later process tells a leftover (pid dead)
 * from work in progress (pid alive):
 *   .NAME.PID.HEX.tmp          a file being written atomically
 *   .NAME.partial-PID-HEX      a directory being built
 *   .NAME.old-PID-HEX          the directory a replace moved aside
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import {
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  unlink,
} from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileError, GenepruneError } from '../errors.js';

/** Largest single write(); Node refuses lengths ≥ 2 GiB. */
const IO_CHUNK = 1 << 30;

export function describeFsError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOENT') return 'no such file or directory';
  if (e?.code === 'EACCES' || e?.code === 'EPERM') return 'permission denied';
  if (e?.code === 'EISDIR') return 'is a directory';
  if (e?.code === 'ENOTDIR') return 'a parent is not a directory';
  if (e?.code === 'EEXIST') return 'already exists';
  if (e?.code === 'EROFS') return 'read-only file system';
  if (e?.code === 'ENOSPC') return 'no space left on device';
  if (e?.code === 'EDQUOT') return 'disk quota exceeded';
  return e?.message ?? String(err);
}

/**
 * Creates `path` and any missing parents, failing with the true cause. Node's `mkdir(…, { recursive: true })`
 * reports ENOENT for a parent it could not create on a read-only file system (it stats the path after any
 * error other than EACCES/EPERM/ENOSPC/ENOTDIR), so each missing level is created on its own instead.
 */
export async function makeDirectory(path: string): Promise<void> {
  const abs = resolve(path);
  const missing: string[] = [];
  for (let p = abs; ; p = dirname(p)) {
    const info = await stat(p).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : e));
    if (info instanceof Error) throw info;
    if (info) {
      if (!info.isDirectory()) throw Object.assign(new Error(`not a directory: ${p}`), { code: 'ENOTDIR' });
      break;
    }
    missing.push(p);
    if (dirname(p) === p) break;
  }
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir);
    } catch (e) {
      // Another process may have made it meanwhile; anything else is the real reason.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || !(await isDirectory(dir))) throw e;
    }
  }
}

/** Writes all of `bytes` at the handle's current end (positional writes may be partial). */
export async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, done, Math.min(IO_CHUNK, bytes.length - done));
    done += bytesWritten;
  }
}

/**
 * Writes a file atomically: `write` fills a temp file beside `path`, which is synced and renamed over it, so a
 * crash never leaves a half-written file under the real name (only a `.NAME.PID.HEX.tmp` leftover).
 */
export async function writeFileAtomic(path: string, write: (fh: FileHandle) => Promise<void>): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx');
    await write(fh);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (err) {
    if (fh) await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    if (err instanceof GenepruneError) throw err;
    throw fileError(path, `write failed: ${describeFsError(err)}`, err);
  }
}

export async function writeBytesAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await writeFileAtomic(path, (fh) => writeAll(fh, bytes));
}

export async function writeTextAtomic(path: string, text: string): Promise<void> {
  await writeBytesAtomic(path, Buffer.from(text, 'utf8'));
}

/** Pretty-printed JSON with a final newline, written atomically. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  await writeTextAtomic(path, `${JSON.stringify(value, null, 2)}\n`);
}

export async function sha256File(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw fileError(path, `cannot read: ${describeFsError(err)}`, err);
  }
  return createHash('sha256').update(bytes).digest('hex');
}

export function sha256Text(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * The real path of `path` with symlinks resolved, also when it does not exist yet: the longest existing
 * prefix is resolved and the rest appended. Comparing these is how two spellings of one place are caught.
 */
export async function realPathOf(path: string): Promise<string> {
  const abs = resolve(path);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    if (parent === abs) return abs;
    return join(await realPathOf(parent), basename(abs));
  }
}

/** Whether `inner` is `outer` or lies inside it (both real, absolute paths). */
export function isSameOrInside(inner: string, outer: string): boolean {
  if (inner === outer) return true;
  const prefix = outer.endsWith('/') ? outer : `${outer}/`;
  return inner.startsWith(prefix);
}

/** Whether a process with this pid runs on this machine (EPERM: it exists but is not ours). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid in a temporary name written by this module, or undefined when `name` is not one. */
export function tempOwnerPid(name: string, of?: string): number | undefined {
  const m = /^\.(.+)\.(?:(\d+)\.[0-9a-f]+\.tmp|(?:partial|old)-(\d+)-[0-9a-f]+)$/.exec(name);
  if (!m || (of !== undefined && m[1] !== of)) return undefined;
  return Number(m[2] ?? m[3]);
}

/**
 * Removes the temporaries in `dir` that processes now dead left behind (all of them, or only those of the
 * entry named `of`); returns their names. Folders moved aside by a replace are left to `recoverReplace`.
 */
export async function removeStaleTemps(dir: string, of?: string): Promise<string[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const pid = tempOwnerPid(name, of);
    if (pid === undefined || pidAlive(pid) || /\.old-\d+-[0-9a-f]+$/.test(name)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/** A fresh temporary name beside `target` for a directory being built. */
export function partialDirFor(target: string): string {
  return join(
    dirname(target),
    `.${basename(target)}.partial-${process.pid}-${randomBytes(3).toString('hex')}`,
  );
}

/** Kills this process with SIGKILL at a named step when GENEPRUNE_FAULT lists it (for the kill tests). */
export function faultPoint(name: string): void {
  const faults = process.env.GENEPRUNE_FAULT;
  if (faults?.split(',').includes(name)) process.kill(process.pid, 'SIGKILL');
}

/**
 * Before writing `target`: finishes what a killed replace left. A folder moved aside whose process is dead is
 * moved back when `target` is missing (the kill came between the two renames, so it is the complete old
 * content), and deleted otherwise; dead processes' partial folders are deleted. Returns one note per action.
 */
export async function recoverReplace(target: string): Promise<string[]> {
  const dir = dirname(target);
  const name = basename(target);
  const notes: string[] = [];
  for (const entry of await removeStaleTemps(dir, name))
    notes.push(`removed ${join(dir, entry)} (left by a process that died)`);
  const asides = (await readdir(dir).catch(() => [] as string[])).filter((n) => {
    const pid = tempOwnerPid(n, name);
    return pid !== undefined && /\.old-\d+-[0-9a-f]+$/.test(n) && !pidAlive(pid);
  });
  for (const aside of asides) {
    const path = join(dir, aside);
    if (!(await lstat(target).catch(() => undefined))) {
      await rename(path, target);
      notes.push(`restored ${target} from ${path} (a replace was interrupted)`);
    } else {
      await rm(path, { recursive: true, force: true });
      notes.push(`removed ${path} (left by an interrupted replace)`);
    }
  }
  return notes;
}

/**
 * Puts the complete directory `built` at `target`. An existing `target` is renamed aside first, `built`
 * renamed in, then the old one deleted: a kill before the second rename leaves the old content (in place, or
 * aside for `recoverReplace` to move back), a kill after it the new one. `built` must be a sibling of `target`.
 */
export async function replaceDirectory(built: string, target: string): Promise<void> {
  const exists = await lstat(target).catch(() => undefined);
  if (!exists) {
    faultPoint('export:before-rename-in');
    await rename(built, target);
    return;
  }
  const aside = join(
    dirname(target),
    `.${basename(target)}.old-${process.pid}-${randomBytes(3).toString('hex')}`,
  );
  faultPoint('export:before-rename-aside');
  await rename(target, aside);
  faultPoint('export:after-rename-aside');
  try {
    await rename(built, target);
  } catch (err) {
    await rename(aside, target).catch(() => {});
    throw err;
  }
  faultPoint('export:after-rename-in');
  await rm(aside, { recursive: true, force: true });
}

/** Follows `path` while it is a symlink; a dangling link yields the path it points at. */
export async function followSymlinks(path: string): Promise<string> {
  let current = resolve(path);
  for (let hops = 0; hops < 40; hops++) {
    const info = await lstat(current).catch(() => undefined);
    if (!info?.isSymbolicLink()) return current;
    current = resolve(dirname(current), await readlink(current));
  }
  throw fileError(path, 'too many levels of symbolic links');
}

export interface LockOwner {
  pid: number;
  host: string;
  since: string;
}

export interface HeldLock {
  path: string;
  release(): Promise<void>;
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    const o = JSON.parse(await readFile(path, 'utf8')) as LockOwner;
    return Number.isInteger(o?.pid) && typeof o.host === 'string' ? o : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the lock file `path`: created whole (written to a temp, then hard-linked, which fails when the lock
 * exists) so another process never reads a half-written owner. A lock held by a live process is refused with
 * one line naming the owner; one whose process is dead (same host) is taken over, with a note. A lock from
 * another host cannot be judged and is refused.
 */
export async function acquireLock(path: string, onNote?: (line: string) => void): Promise<HeldLock> {
  const me: LockOwner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  const tmpName = join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  await writeTextAtomic(tmpName, `${JSON.stringify(me)}\n`);
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        await link(tmpName, path);
        const stopSignals = releaseOnSignal(path, me);
        const held: HeldLock = {
          path,
          release: async () => {
            stopSignals();
            // Only our own lock is removed: a takeover may have replaced it if we were wrongly thought dead.
            const owner = await readOwner(path);
            if (owner?.pid === me.pid && owner.host === me.host) await unlink(path).catch(() => {});
          },
        };
        return held;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw fileError(path, `cannot create lock file: ${describeFsError(err)}`, err);
        }
      }
      const owner = await readOwner(path);
      if (owner && (owner.host !== me.host || pidAlive(owner.pid))) {
        const where = owner.host === me.host ? `pid ${owner.pid}` : `pid ${owner.pid} on ${owner.host}`;
        throw fileError(path, `in use by ${where} since ${owner.since} (another geneprune holds this lock)`);
      }
      // Stale (owner dead, or a lock torn by a crash): move it aside atomically so that of two processes
      // taking it over at once only one succeeds, and check it is still the stale one before dropping it.
      const aside = join(
        dirname(path),
        `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
      );
      try {
        await rename(path, aside);
      } catch {
        continue;
      }
      const moved = await readOwner(aside);
      if (moved && owner && (moved.pid !== owner.pid || moved.since !== owner.since)) {
        await link(aside, path).catch(() => {});
        await unlink(aside).catch(() => {});
        continue;
      }
      await unlink(aside).catch(() => {});
      onNote?.(
        owner
          ? `${path}: taking over a stale lock of pid ${owner.pid} (no longer running)`
          : `${path}: taking over an unreadable lock file`,
      );
    }
    throw fileError(path, 'could not take the lock (it keeps changing hands)');
  } finally {
    await unlink(tmpName).catch(() => {});
  }
}

/**
 * While a lock is held, SIGINT and SIGTERM remove it before the process dies of the signal (a `finally` never
 * runs then): Ctrl-C or a scheduler's stop must not leave a lock for the next start to take over. Synchronous,
 * as a signal handler must finish before the process goes; what is half-written is left to the temp cleanup
 * and to resume, exactly as after SIGKILL. Returns the function that uninstalls the handlers.
 */
function releaseOnSignal(path: string, me: LockOwner): () => void {
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const onSignal = (signal: NodeJS.Signals) => {
    uninstall();
    try {
      const owner = JSON.parse(readFileSync(path, 'utf8')) as LockOwner;
      if (owner?.pid === me.pid && owner.host === me.host) unlinkSync(path);
    } catch {
      // No lock to remove (or not ours): nothing to do before dying.
    }
    // With our handler gone the default action applies: the process ends by this signal, as it would have.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const uninstall = () => {
    for (const sig of signals) process.off(sig, onSignal);
  };
  for (const sig of signals) process.on(sig, onSignal);
  return uninstall;
}

type PathInfo = Awaited<ReturnType<typeof stat>>;

/** What a path that is neither a regular file nor a folder is, in words. */
export function specialKind(info: PathInfo): string {
  if (info.isFIFO()) return 'a named pipe (FIFO)';
  if (info.isSocket()) return 'a socket';
  if (info.isCharacterDevice()) return 'a character device';
  if (info.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/**
 * Refuses a FIFO, socket or device where a file is read whole (a mask, a tokenizer, a config): reading one blocks
 * until a writer comes, forever for a mistyped path. A missing path or a folder is left to the caller's read,
 * which words those itself.
 */
export async function refuseSpecialFile(path: string, what: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info || info.isFile() || info.isDirectory()) return;
  throw fileError(path, `${what} is ${specialKind(info)}, not a regular file`);
}

/** Whether `path` is an existing directory (following symlinks). */
export async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true;
}
