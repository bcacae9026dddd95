/**
 * A small ONNX graph builder over onnx-proto's generated protobuf classes. Nodes are added in topological
 * order; every value is named by a string. Large weights become initializers with raw little-endian data,
 * either inside the protobuf (which protobuf limits to 2 GB in all) or as ONNX external-data references into
 * separate byte blobs (no size limit; the blobs can be the very buffers the weights were loaded into).
 */
import onnxProto from 'onnx-proto';
import type { EncodedModel, ExternalFile } from '../checkpoint/onnx.js';

// What an encoded graph is on disk belongs to checkpoint/onnx.ts, which writes it.
export type { EncodedModel, ExternalFile };

const { onnx } = onnxProto;

export type ElemType = 'float32' | 'float16' | 'bfloat16' | 'int64' | 'bool' | 'int32';

const DATA_TYPE: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float16: onnx.TensorProto.DataType.FLOAT16,
  bfloat16: onnx.TensorProto.DataType.BFLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
  int32: onnx.TensorProto.DataType.INT32,
};

/** A dimension: a concrete size or a symbolic name ('batch', 'seq'). */
export type Dim = number | string;

export type AttrValue =
  | number
  | string
  | number[]
  | { float: number }
  | { floats: number[] }
  | { tensor: ConstTensor };

export interface ConstTensor {
  type: ElemType;
  dims: number[];
  /** float16/bfloat16 data is raw bits (Uint16Array). */
  data: Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;
}

interface ValueInfo {
  name: string;
  type: ElemType;
  dims: Dim[];
}

function valueInfo(v: ValueInfo) {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: DATA_TYPE[v.type],
        shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function tensorBytes(t: ConstTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

function tensorProto(name: string, t: ConstTensor) {
  return { name, dims: t.dims, dataType: DATA_TYPE[t.type], rawData: tensorBytes(t) };
}

function externalTensorProto(
  name: string,
  t: { type: ElemType; dims: number[] },
  location: string,
  offset: number,
  length: number,
) {
  return {
    name,
    dims: t.dims,
    dataType: DATA_TYPE[t.type],
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ],
  };
}

/** Offsets of tensors inside blobs; 64 bytes suits every SIMD load ORT may do straight from the blob. */
export const TENSOR_ALIGN = 64;
/** Where blobs start inside one shared file: page-aligned, so a reader may map each part. */
export const FILE_PART_ALIGN = 4096;

export const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * Buffers that hold weights packed for external data (see graph/weights.ts). An initializer whose data lies in
 * one of them is referenced where it is, never copied.
 */
export interface WeightBlob {
  readonly bytes: Uint8Array;
}

/** An initializer whose data already lies in a file: where, and what it is. */
export interface ExternalTensorRef {
  type: ElemType;
  dims: number[];
  /** The file's name, in `dir`. */
  location: string;
  offset: number;
  byteLength: number;
}

export interface ExternalDataOptions {
  /**
   * External data is used when the initializers hold more than this many bytes in all (0: always; Infinity:
   * never). Past 2 GB inline is impossible, so larger models are always external.
   */
  threshold: number;
  /** File name of the external data (the first blob's, when several files). */
  location: string;
  /** One file holding every blob (a model on disk, e.g. transformers.js's model.onnx_data), else one per blob. */
  singleFile?: boolean;
  /** Blobs that may hold initializer data in place. */
  blobs?: readonly WeightBlob[];
  /** Initializers smaller than this stay inline (ONNX's own converter uses 1024). */
  minTensorBytes?: number;
}

/** Protobuf cannot encode a message over 2 GiB; leave room for the graph itself. */
const INLINE_LIMIT = 2 ** 31 - 2 ** 26;

function attribute(name: string, value: AttrValue) {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) return { name, type: T.FLOAT, f: value };
    return { name, type: T.INT, i: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  if ('floats' in value) return { name, type: T.FLOATS, floats: value.floats };
  return { name, type: T.TENSOR, t: tensorProto('', value.tensor) };
}

export class GraphBuilder {
  private readonly nodes: object[] = [];
  private readonly initializers: Array<{ name: string; t: ConstTensor }> = [];
  private readonly fileInitializers: Array<{ name: string; ref: ExternalTensorRef }> = [];
  private fileDir: string | undefined;
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly used = new Set<string>();
  private counter = 0;

  /** A fresh value name with a readable prefix. */
  fresh(prefix: string): string {
    let name: string;
    do name = `${prefix}_${this.counter++}`;
    while (this.used.has(name));
    this.used.add(name);
    return name;
  }

  input(name: string, type: ElemType, dims: Dim[]): string {
    this.used.add(name);
    this.inputs.push({ name, type, dims });
    return name;
  }

  output(name: string, type: ElemType, dims: Dim[]): void {
    this.outputs.push({ name, type, dims });
  }

  /** A named constant stored as an initializer (weights and tables). */
  initializer(name: string, t: ConstTensor): string {
    if (this.used.has(name)) throw new Error(`graph: duplicate value name ${name}`);
    this.used.add(name);
    this.initializers.push({ name, t });
    return name;
  }

  /** A named constant whose data is in a file of folder `dir` (one folder per graph). */
  externalInitializer(name: string, dir: string, ref: ExternalTensorRef): string {
    if (this.used.has(name)) throw new Error(`graph: duplicate value name ${name}`);
    if (this.fileDir !== undefined && this.fileDir !== dir)
      throw new Error('graph: external files in two folders');
    this.fileDir = dir;
    this.used.add(name);
    this.fileInitializers.push({ name, ref });
    return name;
  }

  private constant(t: ConstTensor): string {
    const name = this.fresh('c');
    this.initializers.push({ name, t });
    return name;
  }

  /** Bytes of every initializer's data. */
  initializerBytes(): number {
    let n = 0;
    for (const { t } of this.initializers) n += t.data.byteLength;
    return n;
  }

  constFloat(values: number[], dims: number[] = [values.length]): string {
    return this.constant({ type: 'float32', dims, data: Float32Array.from(values) });
  }

  constInt64(values: number[], dims: number[] = [values.length]): string {
    return this.constant({
      type: 'int64',
      dims,
      data: BigInt64Array.from(values.map((v) => BigInt(v))),
    });
  }

  /** Adds one node and returns its output names (one by default). */
  node(
    opType: string,
    inputs: string[],
    attrs: Record<string, AttrValue> = {},
    opts: { outputs?: number | string[]; domain?: string; name?: string } = {},
  ): string[] {
    const outs =
      typeof opts.outputs === 'object'
        ? opts.outputs
        : Array.from({ length: opts.outputs ?? 1 }, () => this.fresh(opType.toLowerCase()));
    for (const o of outs) this.used.add(o);
    this.nodes.push({
      opType,
      input: inputs,
      output: outs,
      name: opts.name ?? this.fresh(`n_${opType}`),
      domain: opts.domain ?? '',
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  /** Shorthand for a single-output node. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, domain?: string): string {
    return this.node(opType, inputs, attrs, { domain })[0];
  }

  /** Serialises to ModelProto bytes with every initializer inline. */
  encode(opts: EncodeOptions): Uint8Array {
    return this.encodeModel({ ...opts, external: undefined }).model;
  }

  /** Serialises to ModelProto bytes, with initializers external when `opts.external` says so. */
  encodeModel(opts: EncodeOptions): EncodedModel {
    const external = opts.external;
    const total = this.initializerBytes();
    const useExternal = external !== undefined && (total > external.threshold || total > INLINE_LIMIT);
    let initializer: object[];
    let externalData: ExternalFile[] = [];
    if (!useExternal) {
      if (total > INLINE_LIMIT) {
        throw new Error(`graph: ${total} bytes of weights cannot be inline (protobuf's limit is 2 GiB)`);
      }
      initializer = this.initializers.map(({ name, t }) => tensorProto(name, t));
    } else {
      ({ initializer, externalData } = this.externalInitializers(external));
    }
    const opsetImport: Array<{ domain: string; version: number }> = [{ domain: '', version: opts.opset }];
    if (opts.msOpset) opsetImport.push({ domain: 'com.microsoft', version: opts.msOpset });
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: opts.producer ?? 'geneprune',
      opsetImport,
      graph: {
        name: opts.graphName ?? 'geneprune',
        node: this.nodes,
        initializer: [
          ...initializer,
          ...this.fileInitializers.map(({ name, ref }) =>
            externalTensorProto(name, ref, ref.location, ref.offset, ref.byteLength),
          ),
        ],
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
      },
    });
    const encoded: EncodedModel = { model: onnx.ModelProto.encode(model).finish(), externalData };
    if (this.fileDir !== undefined) encoded.dir = this.fileDir;
    return encoded;
  }

  /**
   * Initializers as external references: data already in a blob stays there; other large tensors are copied
   * once into one extra blob; small ones stay inline.
   */
  private externalInitializers(ext: ExternalDataOptions): {
    initializer: object[];
    externalData: ExternalFile[];
  } {
    const minBytes = ext.minTensorBytes ?? 1024;
    const blobs: Uint8Array[] = (ext.blobs ?? []).map((b) => b.bytes);
    const blobOf = new Map<ArrayBufferLike, number>();
    blobs.forEach((b, i) => {
      if (b.byteOffset !== 0) throw new Error('graph: a weight blob must start its buffer');
      blobOf.set(b.buffer, i);
    });
    // Tensors outside every blob are gathered into one more blob.
    const placed: Array<{ blob: number; offset: number } | undefined> = [];
    let extraBytes = 0;
    const extra: number[] = [];
    for (const [i, { t }] of this.initializers.entries()) {
      const bytes = t.data.byteLength;
      const inBlob = blobOf.get(t.data.buffer);
      if (bytes < minBytes) placed.push(undefined);
      else if (inBlob !== undefined && t.data.byteOffset % TENSOR_ALIGN === 0) {
        placed.push({ blob: inBlob, offset: t.data.byteOffset });
      } else {
        placed.push({ blob: blobs.length, offset: extraBytes });
        extra.push(i);
        extraBytes = alignUp(extraBytes + bytes, TENSOR_ALIGN);
      }
    }
    if (extra.length > 0) {
      const bytes = new Uint8Array(extraBytes);
      for (const i of extra) bytes.set(tensorBytes(this.initializers[i].t), placed[i]!.offset);
      blobs.push(bytes);
    }
    // Only blobs something refers to become files.
    const usedBlobs = [...new Set(placed.filter((p) => p !== undefined).map((p) => p.blob))].sort(
      (a, b) => a - b,
    );
    const where = new Map<number, { path: string; start: number }>();
    const files: ExternalFile[] = [];
    if (ext.singleFile) {
      const file: ExternalFile = { path: ext.location, parts: [], size: 0 };
      for (const b of usedBlobs) {
        const start = alignUp(file.size, FILE_PART_ALIGN);
        where.set(b, { path: ext.location, start });
        file.parts.push({ offset: start, data: blobs[b] });
        file.size = start + blobs[b].byteLength;
      }
      if (file.parts.length > 0) files.push(file);
    } else {
      usedBlobs.forEach((b, k) => {
        const path = k === 0 ? ext.location : `${ext.location}.${k}`;
        where.set(b, { path, start: 0 });
        files.push({ path, parts: [{ offset: 0, data: blobs[b] }], size: blobs[b].byteLength });
      });
    }
    const initializer = this.initializers.map(({ name, t }, i) => {
      const p = placed[i];
      if (!p) return tensorProto(name, t);
      const w = where.get(p.blob)!;
      return externalTensorProto(name, t, w.path, w.start + p.offset, t.data.byteLength);
    });
    return { initializer, externalData: files };
  }
}

/** The ONNX opset every graph here is built for. */
export const OPSET = 17;

export interface EncodeOptions {
  opset: number;
  producer?: string;
  graphName?: string;
  msOpset?: number;
  external?: ExternalDataOptions;
}
