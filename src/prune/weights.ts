/**
 * Weight pruning made permanent: a spec whose prunable matrices read back with zeros where a weight mask prunes
 * (what export writes, in any storage dtype: a zero stays a zero in fp16 and bf16), and the sparsity counted
 * back from written files — the zeros of each prunable matrix, so a weight that was already exactly 0 in the
 * dense model (or that a narrow storage dtype rounded to 0) counts as pruned there too.
 */
import { join } from 'node:path';
import { readOnnxFloatInitializers } from '../checkpoint/onnx.js';
import { fileError } from '../errors.js';
import { type Bitset, getBit } from '../masks/bitset.js';
import {
  type PrunableMatrix,
  prunableMatrices,
  type SparsityReport,
  sparsityReport,
} from '../masks/weights.js';
import { parameterCount } from '../model/cost.js';
import { loadModelSpec } from '../model/load.js';
import { loadTensorInto, type ModelSpec, type TensorSource } from '../model/spec.js';

/** The same model with every masked weight set to 0 (tensors still load lazily, one at a time). */
export function zeroMaskedWeights(spec: ModelSpec, masks: ReadonlyMap<string, Bitset>): ModelSpec {
  const tensors = new Map(spec.tensors);
  for (const [role, bits] of masks) {
    const src = spec.tensors.get(role);
    if (!src || src.shape.reduce((a, b) => a * b, 1) !== bits.length) {
      throw new Error(`weight mask of ${role} does not fit the model`);
    }
    const apply = (out: Float32Array) => {
      for (let i = 0; i < out.length; i++) if (!getBit(bits, i)) out[i] = 0;
    };
    const masked: TensorSource = {
      shape: src.shape,
      dtype: src.dtype,
      async load() {
        // Into a fresh array: the source may hand out the very array it holds.
        const out = new Float32Array(bits.length);
        await loadTensorInto(src, out);
        apply(out);
        return out;
      },
      async loadInto(out) {
        await loadTensorInto(src, out);
        apply(out);
      },
    };
    tensors.set(role, masked);
  }
  return { ...spec, tensors };
}

function zeros(data: Float32Array): number {
  let n = 0;
  for (let i = 0; i < data.length; i++) if (data[i] === 0) n++;
  return n;
}

/**
 * The sparsity of the prunable matrices of `spec` (the exported model) as written in `dir`: from
 * model.safetensors and from onnx/model.onnx, whichever were written (both must agree).
 */
export async function writtenSparsity(
  dir: string,
  spec: ModelSpec,
  files: readonly string[],
): Promise<SparsityReport> {
  const matrices = prunableMatrices(spec);
  const counts: Array<{ file: string; zeros: Map<string, number> }> = [];
  if (files.includes('model.safetensors')) {
    // Read back through the family's own loader, so fused or transposed layouts count per role.
    const path = join(dir, 'model.safetensors');
    const written = await loadModelSpec(dir);
    const z = new Map<string, number>();
    for (const m of matrices) {
      const t = written.tensors.get(m.role);
      if (!t) throw fileError(path, `holds no tensor for ${m.role}`);
      z.set(m.role, zeros(await t.load()));
    }
    counts.push({ file: path, zeros: z });
  }
  if (files.includes('onnx/model.onnx')) {
    const path = join(dir, 'onnx', 'model.onnx');
    const z = new Map<string, number>();
    await readOnnxFloatInitializers(path, new Set(matrices.map((m) => m.role)), (name, data) =>
      z.set(name, zeros(data)),
    );
    counts.push({ file: path, zeros: z });
  }
  if (files.includes('onnx/encoder_model.onnx')) {
    // An encoder-decoder's two graphs: the encoder's blocks in one, the decoder's in the other.
    const E = spec.config.encdec?.encoderLayers ?? 0;
    const inEncoder = (role: string) => Number(/^layers\.(\d+)\./.exec(role)?.[1] ?? E) < E;
    const z = new Map<string, number>();
    for (const [file, encoder] of [
      ['encoder_model.onnx', true],
      ['decoder_model_merged.onnx', false],
    ] as const) {
      const names = new Set(matrices.map((m) => m.role).filter((r) => inEncoder(r) === encoder));
      await readOnnxFloatInitializers(join(dir, 'onnx', file), names, (name, data) =>
        z.set(name, zeros(data)),
      );
    }
    counts.push({ file: join(dir, 'onnx'), zeros: z });
  }
  if (counts.length === 0) throw fileError(dir, 'holds no weights file to count');
  for (const c of counts.slice(1)) {
    const differ = matrices.find((m) => c.zeros.get(m.role) !== counts[0].zeros.get(m.role));
    if (differ) {
      throw fileError(
        c.file,
        `${differ.role} has ${c.zeros.get(differ.role)} zeros, ${counts[0].file} has ${counts[0].zeros.get(differ.role)}`,
      );
    }
  }
  return sparsityReport(matrices, (m: PrunableMatrix) => counts[0].zeros.get(m.role)!, parameterCount(spec));
}
