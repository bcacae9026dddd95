import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkPlan, type LayerShapes, layerShapes, type StructuredPlan } from '../../src/masks/structured.js';
import { forwardFlopsPerToken, parameterCount } from '../../src/model/cost.js';
import { randomLlamaSpec } from '../../src/model/random.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { parseBudget, priceBudget } from '../../src/spaces/structured/budget.js';
import {
  initialAtBudget,
  layerCrossover,
  levelSwitch,
  repair,
  structuredGaOperators,
  uniformAtBudget,
} from '../../src/spaces/structured/operators.js';
import {
  createStructuredSpace,
  planFlopsPerToken,
  STRUCTURED_SPACES,
  type StructuredOrders,
} from '../../src/spaces/structured/space.js';
import { createRng } from '../../src/util/rng.js';

// 3 layers, 4 query heads over 2 KV heads (GQA), MLP width 40 on a grid of step 8 (levels 0, 8, …, 40).
const spec = randomLlamaSpec({
  hiddenSize: 16,
  numLayers: 3,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 40,
  vocabSize: 32,
  maxPositions: 32,
  seed: 7,
});
const total = parameterCount(spec);
const rng0 = createRng(1);
const shuffled = (n: number) => {
  const v = Array.from({ length: n }, (_, j) => j);
  for (let j = n - 1; j > 0; j--) {
    const k = rng0.nextInt(j + 1);
    [v[j], v[k]] = [v[k], v[j]];
  }
  return v;
};
const orders: StructuredOrders = {
  heads: [shuffled(4), shuffled(4), shuffled(4)],
  channels: [shuffled(40), shuffled(40), shuffled(40)],
};
const space = (kind: (typeof STRUCTURED_SPACES)[number]) =>
  createStructuredSpace(spec, total, { kind, orders, widthStep: 8 });

const randomGenome = (s: ReturnType<typeof space>, seed: number) => {
  const r = createRng(seed);
  return Uint8Array.from(s.slots, (slot) => r.nextInt(slot.max + 1));
};

/** Parameters of the physically pruned model, counted from the shapes its tensors would have (written from the plan). */
function prunedParameters(m: ModelSpec, plan: StructuredPlan): number {
  const c = m.config;
  const D = c.hiddenSize;
  const hd = c.headDim;
  let n = 0;
  for (const [name, t] of m.tensors) {
    const layer = /^layers\.(\d+)\.(attn|mlp)\.(q|k|v|o|gate|up|down)\.weight$/.exec(name);
    if (!layer) {
      n += t.shape.reduce((a, b) => a * b, 1);
      continue;
    }
    const i = Number(layer[1]);
    const heads = plan.skipAttention[i] ? [] : plan.heads[i];
    const group = c.numHeads / c.numKvHeads;
    const kv = new Set(heads.map((h) => Math.floor(h / group))).size;
    const width = plan.skipMlp[i] ? 0 : plan.channels[i].length;
    const rows: Record<string, number> = {
      q: heads.length * hd * D,
      o: heads.length * hd * D,
      k: kv * hd * D,
    };
    rows.v = rows.k;
    rows.gate = rows.up = rows.down = width * D;
    n += rows[layer[3]];
  }
  return n;
}

describe('structured spaces', () => {
  it('give each layer the genes of their space, with the highest level keeping everything', () => {
    assert.deepEqual(
      space('joint')
        .slots.slice(0, 4)
        .map((s) => [s.kind, s.max]),
      [
        ['heads', 4],
        ['width', 5],
        ['attention', 1],
        ['mlp', 1],
      ],
    );
    assert.equal(space('channels').genes, 3);
    assert.equal(space('heads').genes, 3);
    assert.equal(space('blocks').genes, 6);
    for (const kind of STRUCTURED_SPACES) {
      const s = space(kind);
      assert.equal(s.keptParameters(s.full()), total);
      assert.ok(s.isFull(s.full()));
      assert.deepEqual(s.plan(s.full()), {
        heads: [0, 1, 2].map(() => [0, 1, 2, 3]),
        channels: [0, 1, 2].map(() => Array.from({ length: 40 }, (_, j) => j)),
        skipAttention: [false, false, false],
        skipMlp: [false, false, false],
      });
    }
  });

  it('encode and decode round trip, and decode refuses other texts', () => {
    for (const kind of STRUCTURED_SPACES) {
      const s = space(kind);
      for (let seed = 0; seed < 20; seed++) {
        const g = randomGenome(s, seed);
        assert.deepEqual(s.decode(s.encode(g)), g);
        assert.equal(s.key(g), s.encode(g));
      }
    }
    const j = space('joint');
    assert.equal(j.encode(Uint8Array.from([4, 5, 1, 1, 2, 0, 1, 0, 0, 3, 0, 1])), '4.5.1.1/2.0.1.0/0.3.0.1');
    for (const bad of [
      '4.5.1.1/2.0.1.0',
      '5.5.1.1/2.0.1.0/0.3.0.1',
      '4.6.1.1/2.0.1.0/0.3.0.1',
      '4.5.2.1/2.0.1.0/0.3.0.1',
      '4.5.1/2.0.1.0/0.3.0.1',
      '04.5.1.1/2.0.1.0/0.3.0.1',
      '4.5.1.1/2.0.1.0/0.3.0.x',
    ])
      assert.equal(j.decode(bad), undefined, bad);
  });

  it('decode levels through the orders: the best heads and channels are kept', () => {
    const s = space('joint');
    const g = Uint8Array.from([2, 1, 1, 1, 0, 5, 1, 0, 4, 0, 0, 1]);
    const plan = s.plan(g);
    checkPlan(spec.config, plan);
    assert.deepEqual(
      plan.heads[0],
      orders.heads[0].slice(0, 2).sort((a, b) => a - b),
    );
    assert.deepEqual(
      plan.channels[0],
      orders.channels[0].slice(0, 8).sort((a, b) => a - b),
    );
    assert.deepEqual(plan.heads[1], []);
    assert.equal(plan.channels[1].length, 40);
    assert.deepEqual(plan.skipMlp, [false, true, false]);
    assert.deepEqual(plan.skipAttention, [false, false, true]);
    assert.deepEqual(plan.channels[2], []);
  });

  it("price genomes as physical removal keeps them, and their shapes are the plan's", () => {
    for (const kind of STRUCTURED_SPACES) {
      const s = space(kind);
      for (let seed = 0; seed < 30; seed++) {
        const g = randomGenome(s, 100 + seed);
        const plan = s.plan(g);
        assert.deepEqual(s.shapes(g), layerShapes(spec.config, plan));
        assert.equal(s.keptParameters(g), prunedParameters(spec, plan), `${kind} ${s.encode(g)}`);
      }
    }
  });

  it('count FLOPs as cost.ts does for the dense model, and linear in what is kept', () => {
    const s = space('joint');
    assert.equal(planFlopsPerToken(spec.config, s.shapes(s.full()), 16), forwardFlopsPerToken(spec, 16));
    const g = s.full();
    g[1] = 0; // layer 0 keeps no channels: 3 linears × 40 channels × 16 × 2 fewer FLOPs
    assert.equal(
      planFlopsPerToken(spec.config, s.shapes(g), 16),
      forwardFlopsPerToken(spec, 16) - 2 * 3 * 16 * 40,
    );
  });
});

describe('structured budgets', () => {
  it('parse the --budget forms and refuse the rest', () => {
    assert.deepEqual(parseBudget('params:0.6'), { kind: 'params', value: 0.6 });
    assert.deepEqual(parseBudget('flops:.5'), { kind: 'flops', value: 0.5 });
    assert.deepEqual(parseBudget('speedup:1.5'), { kind: 'speedup', value: 1.5 });
    for (const bad of ['params:1.5', 'params:0', 'speedup:0.5', 'size:0.5', 'params', 'flops:-1'])
      assert.throws(() => parseBudget(bad), /--budget/, bad);
  });

  it('refuse a budget the space cannot reach', () => {
    assert.throws(() => priceBudget(space('heads'), parseBudget('params:0.3'), { seq: 16 }), /cannot be met/);
    assert.throws(() => priceBudget(space('joint'), parseBudget('speedup:2'), { seq: 16 }), /latency model/);
  });

  for (const [kind, text] of [
    ['joint', 'params:0.6'],
    ['channels', 'flops:0.7'],
    ['heads', 'params:0.85'],
    ['blocks', 'flops:0.5'],
  ] as const) {
    it(`hold every individual of a ${kind} GA at ${text}: within it, and maximal`, () => {
      const s = space(kind);
      const budget = priceBudget(s, parseBudget(text), { seq: 16 });
      const ops = structuredGaOperators(s, budget, { crossoverRate: 1, switches: 3 });
      const rng = createRng(5);
      const atBudget = (g: Uint8Array) => {
        const cost = budget.cost(layerShapes(spec.config, s.plan(g)));
        assert.ok(cost <= budget.limit, `${s.encode(g)} costs ${cost} > ${budget.limit}`);
        // Maximal: no single level more fits.
        for (let k = 0; k < g.length; k++) {
          if (g[k] === s.slots[k].max) continue;
          const h = g.slice();
          h[k]++;
          assert.ok(
            budget.cost(layerShapes(spec.config, s.plan(h))) > budget.limit,
            `${s.encode(g)} could raise gene ${k}`,
          );
        }
      };
      let pop = ops.initial(12, rng);
      pop.forEach(atBudget);
      for (let gen = 0; gen < 5; gen++) {
        const next: Uint8Array[] = [];
        for (let k = 0; k < pop.length; k += 2) {
          const [a, b] = ops.crossover(pop[k], pop[k + 1], 0, 0, rng);
          next.push(ops.vary(a, rng), ops.vary(b, rng));
        }
        next.forEach(atBudget);
        pop = next;
      }
      // The population is not one genome repeated.
      assert.ok(new Set(pop.map((g) => s.encode(g))).size > 1);
    });
  }

  it('level switch moves one level down and one up; crossover swaps whole layers', () => {
    const s = space('joint');
    const g = Uint8Array.from([2, 3, 1, 1, 1, 2, 1, 0, 4, 0, 0, 1]);
    for (let seed = 0; seed < 20; seed++) {
      const h = levelSwitch(s, g, createRng(seed));
      const diff = Array.from(h, (v, k) => v - g[k])
        .filter((d) => d !== 0)
        .sort();
      assert.deepEqual(diff, [-1, 1]);
    }
    const a = s.full();
    const b = s.smallest();
    const [c1, c2] = layerCrossover(s, a, b, 1, createRng(3));
    for (let i = 0; i < 3; i++) {
      const l1 = Array.from(c1.subarray(4 * i, 4 * i + 4));
      const l2 = Array.from(c2.subarray(4 * i, 4 * i + 4));
      const fromA = l1.join() === Array.from(a.subarray(4 * i, 4 * i + 4)).join();
      assert.deepEqual(fromA ? l2 : l1, [0, 0, 0, 0]);
      assert.deepEqual(fromA ? l1 : l2, [4, 5, 1, 1]);
    }
  });

  it('level switch moves levels within the kind the genome prunes, as EvoPress switches within a unit type', () => {
    const s = space('joint');
    // Heads pruned in layers 0 and 2; every width full, every block running.
    const g = Uint8Array.from([2, 5, 1, 1, 4, 5, 1, 1, 3, 5, 1, 1]);
    let elsewhere = 0;
    for (let seed = 0; seed < 40; seed++) {
      const h = levelSwitch(s, g, createRng(seed));
      const changed = Array.from(h.keys()).filter((k) => h[k] !== g[k]);
      const down = changed.find((k) => h[k] < g[k])!;
      const up = changed.find((k) => h[k] > g[k]);
      if (s.slots[down].kind !== 'heads') {
        elsewhere++;
        continue;
      }
      assert.equal(s.slots[up!].kind, 'heads', `seed ${seed}`);
    }
    // Only the rare any-kind switch (1 in 8) lowers another kind.
    assert.ok(elsewhere <= 12, `${elsewhere} of 40 switches left the heads`);
  });

  it('repair lowers an over-budget genome into the budget', () => {
    const s = space('channels');
    const budget = priceBudget(s, parseBudget('params:0.7'), { seq: 16 });
    const g = repair(s, budget, s.full(), createRng(2));
    assert.ok(budget.cost(s.shapes(g)) <= budget.limit);
    assert.ok(!s.isFull(g));
  });

  it('start from the uniform genome, then from every single-space region of the joint space', () => {
    const heads = space('heads');
    // A limit of exactly three heads in every layer: the uniform genome is that, and nothing more fits.
    const three = Uint8Array.from([3, 3, 3]);
    const exact = {
      spec: { kind: 'params' as const, value: 0 },
      cost: (sh: LayerShapes) => heads.keptParametersOf(sh),
      dense: total,
      limit: heads.keptParameters(three),
      unit: 'parameters',
    };
    assert.deepEqual(uniformAtBudget(heads, exact, createRng(1)), three);
    const joint = space('joint');
    const budget = priceBudget(joint, parseBudget('params:0.9'), { seq: 16 });
    const pop = initialAtBudget(joint, budget, 9, createRng(4));
    const kindOf = (k: number) => joint.slots[k].kind;
    // Individuals 2 and 6 were lowered in the heads only, 3 and 7 in the widths only, 4 and 8 in the blocks only.
    for (const [i, kinds] of [
      [2, ['heads']],
      [6, ['heads']],
      [3, ['width']],
      [7, ['width']],
      [4, ['attention', 'mlp']],
      [8, ['attention', 'mlp']],
    ] as const) {
      for (let k = 0; k < joint.genes; k++) {
        if (!(kinds as readonly string[]).includes(kindOf(k)))
          assert.equal(pop[i][k], joint.slots[k].max, `individual ${i} gene ${k}`);
      }
      assert.ok(!joint.isFull(pop[i]));
    }
  });
});
