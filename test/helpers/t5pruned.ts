/**
 * Physically pruned T5 specs for tests: some self-attention layers keep only some query heads (q/k/v rows and o
 * columns cut, the relative-bias column of each kept head recorded in relColumnOfQuery), some cross-attention
 * layers likewise — what a head export produces, built here by hand from the definition of the layout.
 */
import { type ModelSpec, memoryTensor } from '../../src/model/spec.js';

/** `spec` with query heads `keep[layer]` of some self-attention layers and `keepCross[d]` of some cross layers. */
export async function pruned(
  spec: ModelSpec,
  keep: Record<number, number[]>,
  keepCross: Record<number, number[]>,
): Promise<ModelSpec> {
  const c = spec.config;
  const e = c.encdec!;
  const hd = c.headDim;
  const D = c.hiddenSize;
  const tensors = new Map(spec.tensors);
  const rowsOf = async (role: string, heads: number[]) => {
    const data = await spec.tensors.get(role)!.load();
    const out = new Float32Array(heads.length * hd * D);
    heads.forEach((h, i) => {
      out.set(data.subarray(h * hd * D, (h + 1) * hd * D), i * hd * D);
    });
    tensors.set(role, memoryTensor([heads.length * hd, D], out));
  };
  const colsOf = async (role: string, heads: number[]) => {
    const data = await spec.tensors.get(role)!.load();
    const width = c.headsPerLayer[0] * hd;
    const out = new Float32Array(D * heads.length * hd);
    for (let r = 0; r < D; r++) {
      heads.forEach((h, i) => {
        out.set(data.subarray(r * width + h * hd, r * width + (h + 1) * hd), r * heads.length * hd + i * hd);
      });
    }
    tensors.set(role, memoryTensor([D, heads.length * hd], out));
  };
  const headsPerLayer = [...c.headsPerLayer];
  const relColumnOfQuery = c.headsPerLayer.map((n) => Array.from({ length: n }, (_, h) => h));
  for (const [l, heads] of Object.entries(keep)) {
    for (const p of ['q', 'k', 'v']) await rowsOf(`layers.${l}.attn.${p}.weight`, heads);
    await colsOf(`layers.${l}.attn.o.weight`, heads);
    headsPerLayer[Number(l)] = heads.length;
    relColumnOfQuery[Number(l)] = heads;
  }
  const crossHeadsPerLayer = [...e.crossHeadsPerLayer];
  for (const [d, heads] of Object.entries(keepCross)) {
    const l = e.encoderLayers + Number(d);
    for (const p of ['q', 'k', 'v']) await rowsOf(`layers.${l}.cross.${p}.weight`, heads);
    await colsOf(`layers.${l}.cross.o.weight`, heads);
    crossHeadsPerLayer[Number(d)] = heads.length;
  }
  return {
    ...spec,
    tensors,
    config: {
      ...c,
      headsPerLayer,
      kvHeadsPerLayer: headsPerLayer,
      encdec: { ...e, crossHeadsPerLayer, relColumnOfQuery },
    },
  };
}
