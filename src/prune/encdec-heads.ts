/**
 * Physical head pruning of encoder-decoders (T5, CodeT5): the genome's three stacks — encoder self-attention,
 * decoder self-attention, cross-attention (gene order of arch/encdec.ts) — turned into a smaller ModelSpec, or
 * into the original shapes with the removed heads zeroed (`--hf-layout padded`). Either computes exactly what the
 * full model computes under the genome's head mask.
 *
 * Compact (`pruneEncDecHeads`), per attention (self of every block, cross of every decoder block): the q, k, v rows
 * and o columns of the kept heads (T5 has no grouped keys and no biases). The relative-position table of a stack is
 * read by every layer of that stack, so a table column goes only when every layer of the stack lost the head
 * reading it; each kept self-attention head then reads its column through `relColumnOfQuery` (renumbered among
 * the kept columns), which is left out when every layer reads columns 0, 1, … in order (an unpruned stack, or one
 * whose layers all lost the same heads). Cross-attention has no position bias.
 *
 * Padded (`zeroEncDecHeads`): the removed heads' q, k, v rows and o columns are zero, nothing else changes (a head
 * whose o columns are zero adds nothing, whatever its bias column holds).
 *
 * Genes follow masks/heads.ts: one per head present, head layers in gene order (encoder blocks, decoder blocks'
 * self-attention, decoder blocks' cross-attention), so an already pruned spec is pruned again over its own heads.
 */
import { GenepruneError } from '../errors.js';
import { type Genome, geneCount, geneOffsets } from '../masks/heads.js';
import {
  encdecOf,
  type ModelConfig,
  type ModelSpec,
  relColumnsOfLayer,
  type TensorSource,
} from '../model/spec.js';
import { keepColumnBlocks, keepRowBlocks } from './heads.js';

function modelError(spec: ModelSpec, message: string): GenepruneError {
  return new GenepruneError('model', message, spec.source);
}

/** An attention of the model: `layers.{layer}.{part}` with `heads` heads present. */
interface Attention {
  layer: number;
  part: 'attn' | 'cross';
  heads: number;
  /** Kept heads (the input spec's numbering), ascending. */
  kept: number[];
}

/** Every attention in gene order, with the heads the genome keeps; a malformed genome is refused in one line. */
function attentionsOf(spec: ModelSpec, genome: Genome): Attention[] {
  const c = spec.config;
  const e = encdecOf(c);
  const n = geneCount(c);
  if (genome.length !== n) {
    throw modelError(
      spec,
      `head genome has ${genome.length} genes, the model needs ${n} (encoder, decoder and cross heads present: ${c.headsPerLayer.join(' ')} self, ${e.crossHeadsPerLayer.join(' ')} cross)`,
    );
  }
  const bad = genome.findIndex((g) => g !== 0 && g !== 1);
  if (bad >= 0)
    throw modelError(spec, `head genome gene ${bad} is ${genome[bad]}, genes must be 0 (remove) or 1 (keep)`);
  const offsets = geneOffsets(c);
  const L = c.numLayers;
  const out: Attention[] = [];
  for (let i = 0; i < offsets.length - 1; i++) {
    const self = i < L;
    const heads = self ? c.headsPerLayer[i] : e.crossHeadsPerLayer[i - L];
    const kept: number[] = [];
    for (let h = 0; h < heads; h++) if (genome[offsets[i] + h]) kept.push(h);
    out.push({ layer: self ? i : e.encoderLayers + (i - L), part: self ? 'attn' : 'cross', heads, kept });
  }
  return out;
}

function tensorOf(spec: ModelSpec, role: string, shape: number[]): TensorSource {
  const t = spec.tensors.get(role);
  if (!t) throw modelError(spec, `tensor ${role} is missing from the model`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw modelError(
      spec,
      `tensor ${role} has shape [${t.shape.join(',')}], the config implies [${shape.join(',')}]`,
    );
  }
  return t;
}

const isIdentity = (map: readonly number[]) => map.every((col, h) => col === h);

/** The spec with the heads the genome removes physically gone (see the module comment). */
export function pruneEncDecHeads(spec: ModelSpec, genome: Genome): ModelSpec {
  const c = spec.config;
  const e = encdecOf(c);
  const hd = c.headDim;
  const D = c.hiddenSize;
  const tensors = new Map(spec.tensors);
  const attentions = attentionsOf(spec, genome);
  for (const a of attentions) {
    if (a.kept.length === a.heads) continue;
    const p = `layers.${a.layer}.${a.part}`;
    for (const m of ['q', 'k', 'v'])
      tensors.set(
        `${p}.${m}.weight`,
        keepRowBlocks(tensorOf(spec, `${p}.${m}.weight`, [a.heads * hd, D]), a.kept, hd),
      );
    tensors.set(
      `${p}.o.weight`,
      keepColumnBlocks(tensorOf(spec, `${p}.o.weight`, [D, a.heads * hd]), a.kept, hd),
    );
  }
  const self = attentions.filter((a) => a.part === 'attn');
  const cross = attentions.filter((a) => a.part === 'cross');
  const E = e.encoderLayers;
  const columns = { encoder: e.encoderBiasColumns, decoder: e.decoderBiasColumns };
  const relColumnOfQuery: number[][] = [];
  for (const [stack, layers] of [
    ['encoder', self.slice(0, E)],
    ['decoder', self.slice(E)],
  ] as const) {
    // The table columns some kept head of the stack reads, in their order: the others go.
    const read = layers.map((a) => relColumnsOfLayer(c, a.layer));
    const used = [...new Set(layers.flatMap((a, i) => a.kept.map((h) => read[i][h])))].sort((x, y) => x - y);
    const rank = new Map(used.map((col, i) => [col, i]));
    for (const [i, a] of layers.entries())
      relColumnOfQuery[a.layer] = a.kept.map((h) => rank.get(read[i][h])!);
    const role = `rel_bias.${stack}.weight`;
    const table = tensorOf(spec, role, [e.relativeBuckets, columns[stack]]);
    if (used.length !== columns[stack]) tensors.set(role, keepColumnBlocks(table, used, 1));
    columns[stack] = used.length;
  }
  const headsPerLayer = self.map((a) => a.kept.length);
  const config: ModelConfig = {
    ...c,
    headsPerLayer,
    kvHeadsPerLayer: [...headsPerLayer],
    encdec: {
      ...e,
      crossHeadsPerLayer: cross.map((a) => a.kept.length),
      encoderBiasColumns: columns.encoder,
      decoderBiasColumns: columns.decoder,
    },
  };
  if (relColumnOfQuery.some((m) => !isIdentity(m))) config.encdec!.relColumnOfQuery = relColumnOfQuery;
  else delete config.encdec!.relColumnOfQuery;
  return { config, tensors, source: spec.source };
}

/** The genome's pruning in the original shapes: the removed heads' q, k, v rows and o columns zero. */
export function zeroEncDecHeads(spec: ModelSpec, genome: Genome): ModelSpec {
  const c = spec.config;
  const hd = c.headDim;
  const D = c.hiddenSize;
  const tensors = new Map(spec.tensors);
  for (const a of attentionsOf(spec, genome)) {
    const drop = [...Array(a.heads).keys()].filter((h) => !a.kept.includes(h));
    if (drop.length === 0) continue;
    const p = `layers.${a.layer}.${a.part}`;
    const zero = (role: string, shape: number[], columns: boolean) => {
      const src = tensorOf(spec, role, shape);
      const cols = shape[1];
      tensors.set(role, {
        shape: src.shape,
        dtype: src.dtype,
        load: async () => {
          const data = Float32Array.from(await src.load());
          for (const h of drop) {
            if (columns)
              for (let r = 0; r < shape[0]; r++) data.fill(0, r * cols + h * hd, r * cols + (h + 1) * hd);
            else data.fill(0, h * hd * cols, (h + 1) * hd * cols);
          }
          return data;
        },
      });
    };
    for (const m of ['q', 'k', 'v']) zero(`${p}.${m}.weight`, [a.heads * hd, D], false);
    zero(`${p}.o.weight`, [D, a.heads * hd], true);
  }
  return { ...spec, tensors };
}
