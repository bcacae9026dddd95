/**
 * A small ONNX graph builder over onnx-proto's generated protobuf classes. Nodes are added in topological
 * order; every value is named by a string. Large weights become initializers with raw little-endian data.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

export type ElemType = 'float32' | 'int64' | 'bool' | 'int32';

const DATA_TYPE: Record<ElemType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
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
  data: Float32Array | BigInt64Array | Int32Array | Uint8Array;
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

function tensorProto(name: string, t: ConstTensor) {
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return { name, dims: t.dims, dataType: DATA_TYPE[t.type], rawData: bytes };
}

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
  private readonly initializers: object[] = [];
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
    this.initializers.push(tensorProto(name, t));
    return name;
  }

  private constant(t: ConstTensor): string {
    const name = this.fresh('c');
    this.initializers.push(tensorProto(name, t));
    return name;
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

  /** Serialises to ModelProto bytes. */
  encode(opts: { opset: number; producer?: string; graphName?: string; msOpset?: number }): Uint8Array {
    const opsetImport: Array<{ domain: string; version: number }> = [{ domain: '', version: opts.opset }];
    if (opts.msOpset) opsetImport.push({ domain: 'com.microsoft', version: opts.msOpset });
    const model = onnx.ModelProto.create({
      irVersion: 8,
      producerName: opts.producer ?? 'geneprune',
      opsetImport,
      graph: {
        name: opts.graphName ?? 'geneprune',
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
