/**
 * The checkpoints a weight run keeps in its run directory (names: files.ts), each written atomically and stamped
 * with what it covers (rundir.ts, RunStamp), so a stop at any moment resumes exactly:
 * - state.json once the mask is fixed (MaskFixedState: the mask file's sha256, the method's cost and report);
 * - a block-wise search's checkpoint after each fixed block (search-blocks.bin, the fixed blocks' bits, then
 *   search-state.json naming its sha256), with the evaluation log trimmed to the fixed blocks on reading;
 * - a method's own state (method-state.json: alloc, after each generation).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileError } from '../errors.js';
import { bitsetBytes, bitsetFromBytes, createBitset, unpackRange } from '../masks/bitset.js';
import type { MethodStateStore } from '../spaces/weights/baselines.js';
import type { BlockCheckpoint, CheckpointStore } from '../spaces/weights/blockwise.js';
import { faultPoint, sha256File, writeBytesAtomic, writeJsonAtomic, writeTextAtomic } from '../util/fs.js';
import { RUN_FILES, readJsonIfPresent } from './files.js';
import { refuseChangedSinceState, runStamp } from './rundir.js';

/** A weight run's state.json once its mask is fixed. */
export interface MaskFixedState {
  version: 1;
  stage: 'mask-fixed';
  maskSha256: string;
  /** The method's own forward passes and seconds. */
  forwardPasses: number;
  seconds: number;
  /** The method's own log, when it keeps one (the GA's per-layer fitness). */
  methodReport?: unknown;
}

export function isMaskFixedState(v: unknown): v is MaskFixedState {
  const st = v as MaskFixedState;
  return (
    typeof st === 'object' &&
    st !== null &&
    st.version === 1 &&
    st.stage === 'mask-fixed' &&
    typeof st.maskSha256 === 'string' &&
    Number.isFinite(st.forwardPasses) &&
    Number.isFinite(st.seconds)
  );
}

interface SearchStateFile {
  version: 1;
  method: string;
  done: number;
  /** How many matrices (the first of the run's list) the bits file holds, and its sha256. */
  matrices: number;
  blocksSha256: string;
  rngState: number[];
  reports: unknown[];
  dense: number;
  forwardPasses: number;
  evaluations: number;
  seconds: number;
}

/**
 * Keeps in the evaluation log only the blocks a checkpoint has fixed, once that checkpoint has been read and
 * validated: the candidates of a block that was stopped half-way are scored again when it is searched again.
 */
async function trimEvaluationLog(dir: string, done: number): Promise<void> {
  const path = join(dir, RUN_FILES.evals);
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const kept = text.split('\n').filter((line) => {
    try {
      const r = JSON.parse(line) as { block?: unknown };
      return typeof r.block === 'number' && r.block < done;
    } catch {
      return false; // the empty tail, or a line torn by a stop mid-append
    }
  });
  await writeTextAtomic(path, kept.map((l) => `${l}\n`).join(''));
}

/**
 * The checkpoint of a block-wise search in the run directory: search-blocks.bin (the fixed blocks' keep bits,
 * matrix after matrix, packed) written first, then search-state.json naming its sha256, both atomically, so a
 * stop at any moment leaves either the previous checkpoint or the new one.
 */
export function blockSearchCheckpoint(
  dir: string,
  method: string,
  matrices: readonly { rows: number; cols: number }[],
) {
  const statePath = join(dir, RUN_FILES.searchState);
  const bitsPath = join(dir, RUN_FILES.searchBlocks);
  const store: CheckpointStore<unknown> = {
    async read() {
      const st = (await readJsonIfPresent(statePath, RUN_FILES.searchState)) as SearchStateFile | undefined;
      if (st === undefined) {
        await trimEvaluationLog(dir, 0);
        return undefined;
      }
      const bad = (why: string) => fileError(statePath, `${why}; remove it to search again from block 0`);
      if (
        st?.version !== 1 ||
        st.method !== method ||
        !Number.isSafeInteger(st.done) ||
        !Number.isSafeInteger(st.matrices) ||
        st.matrices > matrices.length ||
        !Array.isArray(st.reports) ||
        st.reports.length !== st.done ||
        !Array.isArray(st.rngState)
      ) {
        throw bad('is corrupt or belongs to another method');
      }
      // Before the log is trimmed to it: a log cut or edited inside what the checkpoint covers is refused.
      await refuseChangedSinceState(dir, st, statePath);
      if ((await sha256File(bitsPath).catch(() => '')) !== st.blocksSha256) {
        throw bad(`does not match ${RUN_FILES.searchBlocks} (missing or changed)`);
      }
      const lengths = matrices.slice(0, st.matrices).map((m) => m.rows * m.cols);
      const total = lengths.reduce((a, b) => a + b, 0);
      const bits = bitsetFromBytes(new Uint8Array(await readFile(bitsPath)), total);
      const keeps: Uint8Array[] = [];
      let at = 0;
      for (const n of lengths) {
        keeps.push(unpackRange(bits, at, n));
        at += n;
      }
      const cp: BlockCheckpoint<unknown> = {
        done: st.done,
        keeps,
        rngState: st.rngState,
        reports: st.reports,
        dense: st.dense,
        forwardPasses: st.forwardPasses,
        evaluations: st.evaluations,
        seconds: st.seconds,
      };
      await trimEvaluationLog(dir, st.done);
      return cp;
    },
    async write(cp) {
      const bits = createBitset(cp.keeps.reduce((a, k) => a + k.length, 0));
      let at = 0;
      for (const k of cp.keeps) {
        for (let i = 0; i < k.length; i++, at++) if (k[i]) bits.words[at >>> 5] |= 1 << (at & 31);
      }
      const bytes = bitsetBytes(bits);
      await writeBytesAtomic(bitsPath, bytes);
      const st: SearchStateFile = {
        version: 1,
        method,
        done: cp.done,
        matrices: cp.keeps.length,
        blocksSha256: await sha256File(bitsPath),
        rngState: cp.rngState,
        reports: cp.reports,
        dense: cp.dense,
        forwardPasses: cp.forwardPasses,
        evaluations: cp.evaluations,
        seconds: cp.seconds,
      };
      await writeJsonAtomic(statePath, { ...st, ...(await runStamp(dir, [RUN_FILES.evals])) });
      faultPoint('weights:block-fixed');
      faultPoint(`weights:block-fixed:${cp.done}`);
    },
  };
  return store;
}

/** A method's own JSON state (alloc: after each generation), named by the method it belongs to. */
export function methodStateStore(dir: string, method: string): MethodStateStore {
  const path = join(dir, RUN_FILES.methodState);
  let writes = 0;
  return {
    async read() {
      const st = (await readJsonIfPresent(path, RUN_FILES.methodState)) as
        | { version?: unknown; method?: unknown; state?: unknown }
        | undefined;
      if (st === undefined) return undefined;
      if (st?.version !== 1 || st.method !== method || st.state === undefined) {
        throw fileError(
          path,
          `is corrupt or belongs to another method; remove it to search again from the start`,
        );
      }
      await refuseChangedSinceState(dir, st, path);
      return st.state;
    },
    async write(state) {
      await writeJsonAtomic(path, { version: 1, method, state, ...(await runStamp(dir, [])) });
      writes++;
      faultPoint(`weights:method-state:${writes}`);
    },
  };
}
