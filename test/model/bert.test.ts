/**
 * The BERT family's loader and writer on small random checkpoints written with transformers' tensor names
 * (test/helpers/encoders.ts): config fields map to the spec, roles read the right tensors, the writer round-trips,
 * and every bad input is refused in one line naming the file at fault.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openHfFolder, writeHfFolder } from '../../src/checkpoint/hf.js';
import type { FileTensor } from '../../src/checkpoint/safetensors.js';
import { GenepruneError } from '../../src/errors.js';
import { bertConfigFromHf, bertSpecFromHf, bertSpecToHf } from '../../src/model/bert.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';
import {
  ENCODER_CASES,
  encoderLayout,
  keepHeads,
  type RandomEncoderOptions,
  randomEncoderTensors,
  writeRandomEncoder,
} from '../helpers/encoders.js';

const tmp = tempDir('geneprune-bert-');
after(tmp.cleanup);
let count = 0;
const fresh = () => `m${count++}`;

/** Writes a checkpoint after letting `edit` change its config and tensors (shapes are taken from the data's map). */
async function editedCheckpoint(
  opts: RandomEncoderOptions,
  edit: (
    config: Record<string, unknown>,
    tensors: Map<string, { shape: number[]; data: Float32Array }>,
  ) => void,
): Promise<string> {
  const { config, shapes } = encoderLayout(opts);
  const values = randomEncoderTensors(shapes, opts.seed);
  const tensors = new Map(shapes.map(([name, shape]) => [name, { shape, data: values.get(name)! }]));
  edit(config, tensors);
  const dir = join(tmp.dir, fresh());
  await writeHfFolder(dir, {
    config,
    tensors: [...tensors].map(([name, t]) => ({ name, shape: t.shape, data: t.data })),
  });
  return dir;
}

async function assertSameTensor(spec: ModelSpec, role: string, expected: Float32Array | undefined) {
  assert.ok(expected, `no expected tensor for ${role}`);
  const t = spec.tensors.get(role);
  assert.ok(t, `role ${role} is missing`);
  assert.deepEqual(await t.load(), expected, role);
}

describe('BERT family: config.json → spec', () => {
  for (const { name, opts } of ENCODER_CASES) {
    it(`${name}: loads through loadModelSpec with the family's fields`, async () => {
      const ckpt = await writeRandomEncoder(tmp.dir, fresh(), { ...opts, seed: 11 });
      const spec = await loadModelSpec(ckpt.dir);
      const c = spec.config;
      const distil = opts.modelType === 'distilbert';
      assert.equal(c.family, 'bert');
      assert.equal(c.arch, 'encoder');
      assert.equal(c.modelType, opts.modelType);
      assert.equal(c.hiddenSize, 16);
      assert.equal(c.numLayers, opts.layers ?? 2);
      assert.equal(c.headDim, 4);
      assert.deepEqual(c.headsPerLayer, Array(c.numLayers).fill(4));
      assert.equal(c.intermediateSize, 32);
      assert.equal(c.normKind, 'layer');
      assert.equal(c.normPlacement, 'post');
      assert.equal(c.mlpKind, 'plain');
      assert.equal(c.positionKind, 'learned');
      assert.equal(c.normEps, opts.layerNormEps ?? 1e-12);
      assert.equal(
        c.activation,
        { gelu: 'gelu', gelu_new: 'gelu_tanh', relu: 'relu' }[opts.activation ?? 'gelu'],
      );
      assert.equal(c.typeVocabSize, distil ? 0 : (opts.typeVocab ?? 2));
      assert.equal(c.padTokenId, opts.modelType === 'roberta' ? 1 : 0);
      // RoBERTa: position 0 reads row pad + 1 = 2, so two rows of the table are not context.
      assert.equal(c.positionOffset ?? 0, opts.modelType === 'roberta' ? 2 : 0);
      assert.equal(c.maxPositions, 24);
      if (opts.labels === undefined) assert.equal(c.classifier, undefined);
      else {
        assert.deepEqual(
          c.classifier?.labels,
          Array.from({ length: opts.labels }, (_, i) => `class_${i}`),
        );
        assert.equal(c.classifier?.poolActivation, distil ? 'relu' : 'tanh');
      }
      assert.equal(spec.tensors.has('embed.token_types'), !distil);
      assert.equal(spec.tensors.has('cls.pool.weight'), opts.labels !== undefined);
    });
  }

  it('roles read the tensors transformers names for them, prefixed or not', async () => {
    const pairs: Array<[RandomEncoderOptions, Array<[string, string]>]> = [
      [
        { modelType: 'bert', seed: 1 },
        [
          ['embed.tokens', 'embeddings.word_embeddings.weight'],
          ['embed.token_types', 'embeddings.token_type_embeddings.weight'],
          ['layers.1.attn.k.weight', 'encoder.layer.1.attention.self.key.weight'],
          ['layers.0.attn_norm.bias', 'encoder.layer.0.attention.output.LayerNorm.bias'],
          ['layers.1.mlp.down.bias', 'encoder.layer.1.output.dense.bias'],
          ['layers.1.mlp_norm.weight', 'encoder.layer.1.output.LayerNorm.weight'],
        ],
      ],
      [
        { modelType: 'bert', labels: 2, seed: 2 },
        [
          ['embed.positions', 'bert.embeddings.position_embeddings.weight'],
          ['layers.0.mlp.up.weight', 'bert.encoder.layer.0.intermediate.dense.weight'],
          ['cls.pool.weight', 'bert.pooler.dense.weight'],
          ['cls.out.bias', 'classifier.bias'],
        ],
      ],
      [
        { modelType: 'roberta', labels: 2, seed: 3 },
        [
          ['layers.1.attn.o.weight', 'roberta.encoder.layer.1.attention.output.dense.weight'],
          ['cls.pool.bias', 'classifier.dense.bias'],
          ['cls.out.weight', 'classifier.out_proj.weight'],
        ],
      ],
      [
        { modelType: 'distilbert', labels: 2, seed: 4 },
        [
          ['embed.norm.weight', 'distilbert.embeddings.LayerNorm.weight'],
          ['layers.1.attn.v.bias', 'distilbert.transformer.layer.1.attention.v_lin.bias'],
          ['layers.0.attn.o.weight', 'distilbert.transformer.layer.0.attention.out_lin.weight'],
          ['layers.0.attn_norm.weight', 'distilbert.transformer.layer.0.sa_layer_norm.weight'],
          ['layers.1.mlp.up.bias', 'distilbert.transformer.layer.1.ffn.lin1.bias'],
          ['layers.1.mlp_norm.bias', 'distilbert.transformer.layer.1.output_layer_norm.bias'],
          ['cls.pool.weight', 'pre_classifier.weight'],
          ['cls.out.weight', 'classifier.weight'],
        ],
      ],
    ];
    for (const [opts, roles] of pairs) {
      const ckpt = await writeRandomEncoder(tmp.dir, fresh(), opts);
      const spec = await loadModelSpec(ckpt.dir);
      for (const [role, name] of roles) await assertSameTensor(spec, role, ckpt.tensors.get(name));
    }
  });

  it('every stored tensor is read once, except the ones knowingly skipped', async () => {
    for (const { opts } of ENCODER_CASES) {
      for (const maskedLm of opts.labels === undefined ? [false, true] : [false]) {
        const ckpt = await writeRandomEncoder(tmp.dir, fresh(), { ...opts, maskedLm, seed: 5 });
        const spec = await loadModelSpec(ckpt.dir);
        const skipped = (n: string) =>
          opts.labels === undefined && /pooler\.|^cls\.predictions|^lm_head\.|^vocab_/.test(n);
        const expected = [...ckpt.tensors.keys()].filter((n) => !skipped(n)).sort();
        const read = [...spec.tensors.values()].map((t) => (t as FileTensor).name).sort();
        assert.deepEqual(read, expected, `${opts.modelType} maskedLm=${maskedLm}`);
      }
    }
  });

  it('reads LayerNorm gamma/beta names of checkpoints converted from TensorFlow', async () => {
    const dir = await editedCheckpoint({ modelType: 'bert', seed: 6 }, (_, tensors) => {
      for (const [name, t] of [...tensors]) {
        const m = /^(.*LayerNorm)\.(weight|bias)$/.exec(name);
        if (!m) continue;
        tensors.delete(name);
        tensors.set(`${m[1]}.${m[2] === 'weight' ? 'gamma' : 'beta'}`, t);
      }
    });
    const spec = await loadModelSpec(dir);
    const folder = await openHfFolder(dir);
    assert.deepEqual(
      await spec.tensors.get('layers.1.attn_norm.weight')!.load(),
      await folder.tensors.get('encoder.layer.1.attention.output.LayerNorm.gamma')!.load(),
    );
  });

  it('config defaults follow transformers where config.json leaves fields out', () => {
    const c = bertConfigFromHf(
      {
        model_type: 'roberta',
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        vocab_size: 50,
      },
      '/x/config.json',
    );
    assert.equal(c.activation, 'gelu');
    assert.equal(c.normEps, 1e-12);
    assert.equal(c.typeVocabSize, 2);
    assert.equal(c.padTokenId, 1);
    assert.equal(c.positionOffset, 2);
    assert.equal(c.maxPositions, 510);
    assert.equal(c.classifier, undefined);
    const cls = bertConfigFromHf(
      {
        model_type: 'distilbert',
        architectures: ['DistilBertForSequenceClassification'],
        dim: 8,
        n_layers: 1,
        n_heads: 2,
        hidden_dim: 16,
        vocab_size: 50,
        layer_norm_eps: 0.5,
      },
      '/x/config.json',
    );
    assert.deepEqual(cls.classifier, { labels: ['LABEL_0', 'LABEL_1'], poolActivation: 'relu' });
    assert.equal(cls.normEps, 1e-12, 'DistilBERT fixes its LayerNorm eps');
    assert.equal(cls.typeVocabSize, 0);
  });
});

describe('BERT family: spec → Hugging Face folder', () => {
  for (const { name, opts } of ENCODER_CASES) {
    it(`${name}: written and read back, the same config and tensors under transformers' names`, async () => {
      const ckpt = await writeRandomEncoder(tmp.dir, fresh(), { ...opts, seed: 21 });
      const spec = await loadModelSpec(ckpt.dir);
      const hf = bertSpecToHf(spec);
      const dir = join(tmp.dir, fresh());
      await writeHfFolder(dir, hf);
      // Every written name is one the original checkpoint used (its base-model pooler is not written).
      const original = [...ckpt.tensors.keys()].filter(
        (n) => opts.labels !== undefined || !n.includes('pooler'),
      );
      assert.deepEqual([...hf.tensors.keys()].sort(), original.sort());
      const again = await loadModelSpec(dir);
      assert.deepEqual(again.config, spec.config);
      for (const [role, t] of spec.tensors)
        assert.deepEqual(await again.tensors.get(role)!.load(), await t.load());
    });
  }

  it("physically pruned layers round-trip through transformers' pruned_heads", async () => {
    const ckpt = await writeRandomEncoder(tmp.dir, fresh(), { modelType: 'bert', labels: 2, seed: 22 });
    const spec = await loadModelSpec(ckpt.dir);
    // Keep heads 1 and 3 of layer 0 (q/k/v rows and o columns of those heads), none of layer 1.
    const pruned = await keepHeads(spec, [[1, 3], []]);
    const oKept = await pruned.tensors.get('layers.0.attn.o.weight')!.load();
    assert.equal(oKept.length, 16 * 8);
    const dir = join(tmp.dir, fresh());
    const hf = bertSpecToHf(pruned);
    assert.deepEqual(hf.config.pruned_heads, { 0: [2, 3], 1: [0, 1, 2, 3] });
    await writeHfFolder(dir, hf);
    const again = await loadModelSpec(dir);
    assert.deepEqual(again.config, pruned.config);
    assert.deepEqual(await again.tensors.get('layers.0.attn.o.weight')!.load(), oKept);
  });

  it('refuses a spec a BERT checkpoint cannot express', async () => {
    const ckpt = await writeRandomEncoder(tmp.dir, fresh(), { modelType: 'distilbert', seed: 23 });
    const spec = await loadModelSpec(ckpt.dir);
    assert.throws(
      () => bertSpecToHf({ ...spec, config: { ...spec.config, normPlacement: 'pre' } }),
      (err: unknown) =>
        err instanceof GenepruneError &&
        /^a distilbert checkpoint cannot express this model: norms are not post-LayerNorm$/.test(err.message),
    );
  });
});

describe('BERT family: bad checkpoints are refused in one line naming the file', () => {
  const configPath = (dir: string) => join(dir, 'config.json');
  const weights = (dir: string) => join(dir, 'model.safetensors');
  const oneLine = (err: GenepruneError) => assert.ok(!err.oneLine().includes('\n'), err.oneLine());

  it('a missing tensor names the folder and the tensor', async () => {
    const dir = await editedCheckpoint({ modelType: 'bert', labels: 2, seed: 31 }, (_, t) => {
      t.delete('bert.encoder.layer.1.attention.self.value.bias');
    });
    oneLine(
      await rejectsFileError(
        loadModelSpec(dir),
        dir,
        /^missing tensors: bert\.encoder\.layer\.1\.attention\.self\.value\.bias$/,
      ),
    );
  });

  it('a classification head missing from a classification checkpoint', async () => {
    const dir = await editedCheckpoint({ modelType: 'roberta', labels: 2, seed: 32 }, (_, t) => {
      t.delete('classifier.out_proj.weight');
      t.delete('classifier.out_proj.bias');
    });
    await rejectsFileError(loadModelSpec(dir), dir, /missing tensors: classifier\.out_proj\.weight/);
  });

  it('a wrong shape names the weights file, the tensor and both shapes', async () => {
    const dir = await editedCheckpoint({ modelType: 'distilbert', seed: 33 }, (_, t) => {
      t.set('transformer.layer.0.ffn.lin1.weight', { shape: [31, 16], data: new Float32Array(31 * 16) });
    });
    oneLine(
      await rejectsFileError(
        loadModelSpec(dir),
        weights(dir),
        /tensor transformer\.layer\.0\.ffn\.lin1\.weight has shape \[31,16\], config\.json implies \[32,16\]/,
      ),
    );
  });

  it('a classifier with another label count than id2label', async () => {
    const dir = await editedCheckpoint({ modelType: 'bert', labels: 3, seed: 34 }, (config) => {
      config.id2label = { 0: 'neg', 1: 'pos' };
    });
    await rejectsFileError(
      loadModelSpec(dir),
      weights(dir),
      /tensor classifier\.weight has shape \[3,16\].*\[2,16\]/,
    );
  });

  it('an unexpected tensor names the weights file and the tensor', async () => {
    const dir = await editedCheckpoint({ modelType: 'roberta', labels: 2, seed: 35 }, (_, t) => {
      t.set('roberta.encoder.layer.0.attention.self.distance_embedding.weight', {
        shape: [4, 4],
        data: new Float32Array(16),
      });
    });
    await rejectsFileError(
      loadModelSpec(dir),
      weights(dir),
      /unexpected tensor roberta\.encoder\.layer\.0\.attention\.self\.distance_embedding\.weight: not part of a RobertaForSequenceClassification model/,
    );
  });

  it('a masked-LM head inside a classification checkpoint is unexpected', async () => {
    const dir = await editedCheckpoint({ modelType: 'bert', labels: 2, seed: 36 }, (_, t) => {
      t.set('cls.predictions.bias', { shape: [40], data: new Float32Array(40) });
    });
    await rejectsFileError(loadModelSpec(dir), weights(dir), /unexpected tensor cls\.predictions\.bias/);
  });

  const configCases: Array<[string, RandomEncoderOptions, (c: Record<string, unknown>) => void, RegExp]> = [
    [
      'an unknown position_embedding_type',
      { modelType: 'bert', seed: 40 },
      (c) => {
        c.position_embedding_type = 'relative_key';
      },
      /^position_embedding_type "relative_key" is not supported \(only "absolute" is\)$/,
    ],
    [
      'sinusoidal DistilBERT positions',
      { modelType: 'distilbert', seed: 41 },
      (c) => {
        c.sinusoidal_pos_embds = true;
      },
      /^sinusoidal_pos_embds is true: only learned position embeddings are supported$/,
    ],
    [
      'a regression head',
      { modelType: 'roberta', labels: 1, seed: 42 },
      (c) => {
        c.problem_type = 'regression';
      },
      /^problem_type "regression" is not supported \(only single-label classification is\)$/,
    ],
    [
      'a multi-label head',
      { modelType: 'distilbert', labels: 3, seed: 43 },
      (c) => {
        c.problem_type = 'multi_label_classification';
      },
      /problem_type "multi_label_classification" is not supported/,
    ],
    [
      'another task head',
      { modelType: 'bert', seed: 44 },
      (c) => {
        c.architectures = ['BertForTokenClassification'];
      },
      /^architecture BertForTokenClassification is not supported for model_type bert \(supported: BertModel, /,
    ],
    [
      'an activation transformers has but the graph does not',
      { modelType: 'bert', seed: 45 },
      (c) => {
        c.hidden_act = 'gelu_fast';
      },
      /^hidden_act "gelu_fast" is not supported/,
    ],
    [
      'DistilBERT sizes under BERT names',
      { modelType: 'distilbert', seed: 46 },
      (c) => {
        c.hidden_size = c.dim;
        delete c.dim;
      },
      /^"dim" is missing$/,
    ],
    [
      'heads that do not divide the hidden size',
      { modelType: 'bert', seed: 47 },
      (c) => {
        c.num_attention_heads = 3;
      },
      /^hidden_size 16 is not a multiple of the 3 heads$/,
    ],
    [
      'pruned_heads naming a layer the model lacks',
      { modelType: 'roberta', seed: 50 },
      (c) => {
        c.pruned_heads = { 5: [0] };
      },
      /^"pruned_heads" names layer "5", outside 0\.\.1$/,
    ],
    [
      'a causal BERT',
      { modelType: 'bert', seed: 48 },
      (c) => {
        c.is_decoder = true;
      },
      /is_decoder is true/,
    ],
  ];
  for (const [what, opts, edit, pattern] of configCases) {
    it(`config.json with ${what}`, async () => {
      const dir = await editedCheckpoint(opts, (c) => edit(c));
      oneLine(await rejectsFileError(loadModelSpec(dir), configPath(dir), pattern));
    });
  }

  it('a folder of another family is not read as BERT', async () => {
    const ckpt = await writeRandomEncoder(tmp.dir, fresh(), { modelType: 'bert', seed: 49 });
    const folder = await openHfFolder(ckpt.dir);
    folder.config = { ...folder.config, model_type: 'llama' };
    await rejectsFileError(
      () => bertSpecFromHf(folder),
      configPath(ckpt.dir),
      /"model_type" "llama" is not supported \(supported: bert, roberta, distilbert\)/,
    );
  });
});
