import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parameterCount } from '../../src/model/cost.js';
import { llamaRoleShapes } from '../../src/model/llama.js';
import { randomLlamaSpec } from '../../src/model/random.js';

const small = {
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 96,
  vocabSize: 100,
  maxPositions: 32,
  seed: 42,
};

async function allValues(spec: ReturnType<typeof randomLlamaSpec>): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [role, t] of spec.tensors) out.set(role, await t.load());
  return out;
}

describe('randomLlamaSpec', () => {
  it('has every role of its config with the right shape', () => {
    const spec = randomLlamaSpec(small);
    assert.deepEqual(
      [...spec.tensors].map(([role, t]) => [role, [...t.shape]]),
      llamaRoleShapes(spec.config),
    );
    const D = 64;
    const perLayer = 2 * D + D * D + 2 * 32 * D + D * D + 3 * 96 * D;
    assert.equal(parameterCount(spec), 2 * 100 * D + 2 * perLayer + D);
  });

  it('is deterministic in its seed', async () => {
    const a = await allValues(randomLlamaSpec(small));
    const b = await allValues(randomLlamaSpec(small));
    const c = await allValues(randomLlamaSpec({ ...small, seed: 43 }));
    for (const [role, v] of a) {
      assert.deepEqual(b.get(role), v);
      assert.notDeepEqual(c.get(role), v);
    }
  });

  it('draws weights with std ≈ 0.02·scale and norm weights in [0.8, 1.2]', async () => {
    for (const scale of [1, 3]) {
      const values = await allValues(randomLlamaSpec({ ...small, scale }));
      const w = values.get('layers.1.mlp.up.weight')!;
      const mean = w.reduce((s, x) => s + x, 0) / w.length;
      const std = Math.sqrt(w.reduce((s, x) => s + (x - mean) ** 2, 0) / w.length);
      assert.ok(Math.abs(mean) < 0.002 * scale, `mean ${mean}`);
      assert.ok(Math.abs(std - 0.02 * scale) < 0.001 * scale, `std ${std}`);
      const norm = values.get('layers.0.attn_norm.weight')!;
      assert.ok(norm.every((x) => x >= 0.8 && x <= 1.2));
      assert.ok(Math.max(...norm) - Math.min(...norm) > 0.2, 'norm weights spread over the range');
    }
  });

  it('adds biases as the model type implies, and ties on request', () => {
    const qwen = randomLlamaSpec({ ...small, modelType: 'qwen2', tieEmbeddings: true });
    assert.ok(qwen.tensors.has('layers.0.attn.q.bias'));
    assert.ok(!qwen.tensors.has('layers.0.attn.o.bias'));
    assert.ok(!qwen.tensors.has('lm_head.weight'));
    const llama = randomLlamaSpec({ ...small, attentionBias: true });
    assert.ok(llama.tensors.has('layers.1.attn.o.bias'));
    assert.ok(!randomLlamaSpec(small).tensors.has('layers.0.attn.q.bias'));
  });

  it('rejects impossible shapes', () => {
    assert.throws(() => randomLlamaSpec({ ...small, numKvHeads: 3 }), /multiple of numKvHeads/);
    assert.throws(() => randomLlamaSpec({ ...small, hiddenSize: 30 }), /headDim must be a positive integer/);
  });
});
