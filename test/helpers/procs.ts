/**
 * This process's live child processes, from /proc (Linux): the pool's evaluation workers are child processes, and
 * tests check that a release ends them. Undefined where /proc is absent.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';

export function childPids(): number[] | undefined {
  if (!existsSync('/proc/self/stat')) return undefined;
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // ended while listed
    }
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // A zombie (state Z) has ended; only its exit status is left for the parent to collect.
    if (Number(fields[1]) === process.pid && fields[0] !== 'Z') out.push(Number(name));
  }
  return out;
}

/** Waits (up to 5 s) until `count()` is at most `n`; returns the last count. */
export async function settleTo(count: () => number, n: number): Promise<number> {
  for (let i = 0; i < 250 && count() > n; i++) await new Promise((r) => setTimeout(r, 20));
  return count();
}
