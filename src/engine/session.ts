/**
 * The only module that imports onnxruntime-node. A session is built once per graph and reused: a search
 * changes only the feeds (masks, tokens), never the session.
 */
import { existsSync, readdirSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GenepruneError } from '../errors.js';
import type { EncodedModel } from '../graph/builder.js';

export type Device = 'cpu' | 'cuda' | 'webgpu';
export const DEVICES: readonly Device[] = ['cpu', 'cuda', 'webgpu'];

export interface EngineOptions {
  /** Execution provider; 'cpu' by default. */
  device?: Device;
  /** Intra-op threads; 0 or undefined lets ONNX Runtime use every physical core. */
  threads?: number;
  /**
   * Benchmarks: ONNX Runtime writes a JSON profile (one event per kernel run) to `<prefix>_<date>.json` in the
   * working directory when the engine is released.
   */
  profileFilePrefix?: string;
  /**
   * false: the intra-op threads sleep as soon as a run ends instead of spinning a while for the next one (ONNX
   * Runtime's default). Timing many sessions round-robin needs it: spinning pools of idle sessions take the cores
   * from the one running. Default: ONNX Runtime's (spinning).
   */
  spinning?: boolean;
  /** The graph's compute dtype, named when a provider cannot start it (default fp32). */
  dtype?: 'fp32' | 'fp16' | 'bf16';
}

export type FeedData = Float32Array | BigInt64Array | Uint8Array | Int32Array;

export interface Feed {
  type: 'float32' | 'int64' | 'bool' | 'int32';
  dims: readonly number[];
  data: FeedData;
}

export interface Output {
  dims: readonly number[];
  data: Float32Array;
}

export interface Engine {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly device: Device;
  run(feeds: Record<string, Feed>): Promise<Record<string, Output>>;
  release(): Promise<void>;
}

/** Devices whose execution provider ships in this onnxruntime-node build. */
export function availableDevices(): Device[] {
  const backends = ort.listSupportedBackends?.() ?? [{ name: 'cpu', bundled: true }];
  return DEVICES.filter((d) => backends.some((b) => b.name === d));
}

/**
 * The CUDA provider is a separate shared library that onnxruntime-node downloads at install time (skipped
 * here by .npmrc). Checking for it first turns ORT's multi-line native log into one clear message.
 */
function cudaProviderMissing(): string | undefined {
  try {
    const pkgDir = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
    const binDir = join(pkgDir, 'bin', 'napi-v6', process.platform, process.arch);
    if (!existsSync(binDir)) return undefined;
    const libs = readdirSync(binDir);
    if (libs.some((f) => f.includes('providers_cuda'))) return undefined;
    return `the CUDA execution provider library is not installed in ${binDir} (on a CUDA machine reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 instead of the skip in .npmrc)`;
  } catch {
    return undefined;
  }
}

function toOrtTensor(name: string, f: Feed): ort.Tensor {
  const n = f.dims.reduce((a, b) => a * b, 1);
  if (n !== f.data.length) {
    throw new GenepruneError(
      'internal',
      `feed ${name}: dims [${f.dims}] need ${n} values, got ${f.data.length}`,
    );
  }
  return new ort.Tensor(f.type, f.data as never, f.dims as number[]);
}

/**
 * Starts ONNX Runtime on a model file, ModelProto bytes, or an encoded model whose external data is in memory
 * (passed as such) or in files of `model.dir` (the graph is written there for the session's start, since ORT
 * finds external files beside the model file). Measured: ORT copies external data into its own buffers, from
 * memory as from a file, so neither the blobs nor the files are needed once the session exists.
 */
export async function createEngine(
  model: Uint8Array | string | EncodedModel,
  opts: EngineOptions = {},
): Promise<Engine> {
  const device = opts.device ?? 'cpu';
  if (!DEVICES.includes(device)) {
    throw new GenepruneError('flag', `unknown device "${device}" (choose ${DEVICES.join(', ')})`, '--device');
  }
  if (device !== 'cpu' && !availableDevices().includes(device)) {
    throw new GenepruneError(
      'device',
      `the ${device} execution provider is not available in this onnxruntime-node build (available: ${availableDevices().join(', ')})`,
      '--device',
    );
  }
  if (device === 'cuda') {
    const missing = cudaProviderMissing();
    if (missing) throw new GenepruneError('device', missing, '--device');
  }
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: device === 'cpu' ? ['cpu'] : [device, 'cpu'],
    graphOptimizationLevel: 'all',
  };
  // More threads than cores only spin against each other (the CLI notes its cap; a library caller gets it quietly).
  if (opts.threads && opts.threads > 0)
    options.intraOpNumThreads = Math.min(opts.threads, availableParallelism());
  if (opts.spinning === false) options.extra = { session: { intra_op: { allow_spinning: '0' } } };
  if (opts.profileFilePrefix) {
    options.enableProfiling = true;
    options.profileFilePrefix = opts.profileFilePrefix;
  }
  let session: ort.InferenceSession;
  let graphFile: string | undefined;
  try {
    if (typeof model === 'string') session = await ort.InferenceSession.create(model, options);
    else if (model instanceof Uint8Array) session = await ort.InferenceSession.create(model, options);
    else if (model.dir !== undefined) {
      graphFile = join(model.dir, `graph-${process.pid}-${Math.random().toString(36).slice(2)}.onnx`);
      await writeFile(graphFile, model.model);
      session = await ort.InferenceSession.create(graphFile, options);
    } else {
      options.externalData = model.externalData.map((f) => {
        if (f.parts.length !== 1 || f.parts[0].offset !== 0) {
          throw new GenepruneError(
            'internal',
            `external data ${f.path} must be one blob to pass it in memory`,
          );
        }
        return { path: f.path, data: f.parts[0].data };
      });
      session = await ort.InferenceSession.create(model.model, options);
    }
  } catch (e) {
    if (e instanceof GenepruneError) throw e;
    const msg = e instanceof Error ? e.message : String(e);
    if (device !== 'cpu' && opts.dtype !== undefined && opts.dtype !== 'fp32') {
      throw new GenepruneError(
        'flag',
        `the ${device} execution provider could not start the ${opts.dtype} graph (${msg.split('\n')[0]}); try --dtype fp32`,
        '--dtype',
        { cause: e },
      );
    }
    if (device !== 'cpu') {
      throw new GenepruneError(
        'device',
        `could not start the ${device} execution provider: ${msg}`,
        '--device',
        {
          cause: e,
        },
      );
    }
    throw new GenepruneError('internal', `ONNX Runtime rejected the graph: ${msg}`, undefined, { cause: e });
  } finally {
    if (graphFile) await rm(graphFile, { force: true });
  }
  return {
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    device,
    async run(feeds) {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, f] of Object.entries(feeds)) ortFeeds[name] = toOrtTensor(name, f);
      const result = await session.run(ortFeeds);
      const out: Record<string, Output> = {};
      for (const [name, t] of Object.entries(result)) {
        out[name] = { dims: t.dims, data: t.data as Float32Array };
      }
      return out;
    },
    release: () => session.release(),
  };
}
