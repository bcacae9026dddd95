/**
 * The T5 family's loader and writer: the real codet5-tiny (saved by torch in transformers' layout) loads with the
 * sizes its README states, and the plain reference forward over it reproduces the README's dense target NLL and
 * greedy outputs — which checks the tensor names, the config mapping, the tokenizer and the reference at once
 * against published numbers. Random v1.0 / v1.1 folders round-trip; every refusal is one line naming the file.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { writeHfFolder } from '../../src/checkpoint/hf.js';
import { GenepruneError } from '../../src/errors.js';
import { specToHf } from '../../src/model/families.js';
import { loadModelSpec, tokenizerPathFor } from '../../src/model/load.js';
import { type ModelSpec, memoryTensor, type TensorSource } from '../../src/model/spec.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { rejectsFileError, tempDir } from '../checkpoint/helpers.js';
import { randomT5, T5_TEST_SIZES, writeRandomT5 } from '../helpers/t5.js';
import { t5Reference } from '../reference/t5.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-t5-');
after(tmp.cleanup);
let count = 0;
const fresh = () => join(tmp.dir, `m${count++}`);

const CODET5 = 'models/codet5-tiny';
const EVAL = 'data/codegen/eval.jsonl';

async function assertSameTensors(a: ModelSpec, b: ModelSpec) {
  assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
  for (const [role, t] of a.tensors) {
    const u = b.tensors.get(role);
    assert.ok(u);
    assert.deepEqual(u.shape, t.shape, role);
    assert.deepEqual(await u.load(), await t.load(), role);
  }
}

describe('codet5-tiny (the shared trained model)', { skip: skipUnlessShared(CODET5, EVAL) }, () => {
  it('loads with the configuration its README and config.json state', async () => {
    const spec = await loadModelSpec(sharedPath(CODET5)!);
    const c = spec.config;
    assert.equal(c.family, 't5');
    assert.equal(c.arch, 'encdec');
    assert.equal(c.hiddenSize, 128);
    assert.equal(c.headDim, 32);
    assert.equal(c.numHeads, 4);
    assert.equal(c.intermediateSize, 512);
    assert.equal(c.numLayers, 6);
    assert.equal(c.encdec?.encoderLayers, 3);
    assert.deepEqual(c.headsPerLayer, [4, 4, 4, 4, 4, 4]);
    assert.deepEqual(c.encdec?.crossHeadsPerLayer, [4, 4, 4]);
    assert.equal(c.vocabSize, 1252);
    assert.equal(c.tieEmbeddings, true);
    assert.equal(c.mlpKind, 'plain');
    assert.equal(c.activation, 'relu');
    assert.equal(c.normEps, 1e-6);
    assert.equal(c.encdec?.relativeBuckets, 32);
    assert.equal(c.encdec?.relativeMaxDistance, 128);
    assert.equal(c.encdec?.decoderStartTokenId, 0);
    assert.equal(c.encdec?.outputScale, 128 ** -0.5);
    assert.equal(c.eosTokenId, 2);
    assert.equal(c.padTokenId, 0);
    let params = 0;
    for (const t of spec.tensors.values()) params += t.shape.reduce((x, y) => x * y, 1);
    assert.equal(params, 1_538_944); // the README's count (embedding 160,256 counted once)
  });

  it("the reference forward gives the README's dense NLL/token on eval and its greedy code", async () => {
    const dir = sharedPath(CODET5)!;
    const ref = await t5Reference(await loadModelSpec(dir));
    const tok = await loadTokenizer(join(dir, 'tokenizer.json'));
    const rows = readFileSync(sharedPath(EVAL)!, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { text: string; code: string });
    assert.equal(rows.length, 200);
    // The README's format: source `<s> text </s>` (the tokenizer's default); labels `code </s>` without `<s>`.
    const src = rows.map((r) => tok.encodeInput(r.text).ids);
    assert.deepEqual([src[0][0], src[0].at(-1)], [1, 2]);
    const mask = src.map((s) => s.map(() => 1));
    const labels = rows.map((r) => [...tok.encode(r.code, { bos: false, eos: false }), 2]);
    assert.notEqual(labels[0][0], 1);
    const nll = ref.targetNll(src, mask, labels);
    // README: 0.00438 over all 200, printed to 5 decimals, so the true value lies within ±5e-6 of it (the
    // README's own float64 forward matched torch to 1e-6 relative, far inside that).
    assert.ok(Math.abs(nll.sum / nll.count - 0.00438) <= 5e-6, `NLL/token ${nll.sum / nll.count}`);
    // Greedy, 64 new tokens: README pass@1 194/200 and BLEU 0.9867; 190+ exact reproductions of the reference code
    // is the large majority a correct forward gives (a wrong bias bucket or scale derails most of them).
    const gen = ref.greedy(src, mask, 64);
    const exact = gen.filter((g, i) => tok.decode(g) === rows[i].code).length;
    assert.ok(exact >= 190, `${exact}/200 greedy outputs equal the reference code`);
  });
});

describe('T5 folders: write → load', () => {
  for (const version of ['v1.0', 'v1.1'] as const) {
    it(`${version}: round-trips config and tensors, with transformers' names and config keys`, async () => {
      const dir = fresh();
      const spec = await writeRandomT5(dir, version, 3);
      const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
      assert.equal(config.architectures[0], 'T5ForConditionalGeneration');
      assert.equal(config.feed_forward_proj, version === 'v1.0' ? 'relu' : 'gated-gelu');
      assert.equal(config.tie_word_embeddings, version === 'v1.0');
      assert.equal(config.num_decoder_layers, 2);
      const back = await loadModelSpec(dir);
      assert.deepEqual(back.config, spec.config);
      await assertSameTensors(spec, back);
      const names = [...specToHf(spec).tensors.keys()];
      assert.equal(names.includes('lm_head.weight'), version === 'v1.1');
      const ff = version === 'v1.0' ? ['wi'] : ['wi_0', 'wi_1'];
      for (const w of ff) assert.ok(names.includes(`decoder.block.1.layer.2.DenseReluDense.${w}.weight`), w);
      assert.ok(names.includes('decoder.block.0.layer.1.EncDecAttention.k.weight'));
    });
  }

  it("a random folder with codet5-tiny's tokenizer loads both", {
    skip: skipUnlessShared(CODET5),
  }, async () => {
    const dir = fresh();
    const spec = await writeRandomT5(dir, 'v1.0', 10, { tokenizer: true });
    const back = await loadModelSpec(dir);
    assert.deepEqual(back.config, spec.config);
    assert.deepEqual([back.config.vocabSize, back.config.eosTokenId], [1252, 2]);
    const path = tokenizerPathFor(dir);
    assert.equal(path, join(dir, 'tokenizer.json'));
    const tok = await loadTokenizer(path!, { vocabSize: back.config.vocabSize });
    assert.equal(tok.eosId, back.config.eosTokenId);
  });

  it('gated-silu round-trips as a gated SiLU feed-forward', async () => {
    const dir = fresh();
    const spec = await writeRandomT5(dir, 'v1.1', 8, { feedForward: 'gated-silu' });
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.deepEqual(
      [config.feed_forward_proj, config.dense_act_fn, config.is_gated_act],
      ['gated-silu', 'silu', true],
    );
    const back = await loadModelSpec(dir);
    assert.equal(back.config.activation, 'silu');
    assert.equal(back.config.mlpKind, 'gated');
    assert.deepEqual(back.config, spec.config);
  });

  it("fills what config.json leaves out with T5Config's defaults", async () => {
    const spec = randomT5('v1.0', 9, { relativeBuckets: 32, relativeMaxDistance: 128 });
    const files = specToHf(spec);
    for (const key of [
      'num_decoder_layers',
      'relative_attention_num_buckets',
      'relative_attention_max_distance',
      'feed_forward_proj',
      'dense_act_fn',
      'is_gated_act',
      'tie_word_embeddings',
      'layer_norm_epsilon',
      'n_positions',
      'pad_token_id',
      'eos_token_id',
      'decoder_start_token_id',
      'is_encoder_decoder',
      'architectures',
    ]) {
      delete files.config[key];
    }
    const dir = fresh();
    await writeHfFolder(dir, files);
    const c = (await loadModelSpec(dir)).config;
    // num_decoder_layers = num_layers; 32 buckets to distance 128; relu; tied (so output × d_model^−½); eps 1e-6;
    // 512 positions; pad 0, eos 1, decoder start = pad.
    assert.equal(c.numLayers, 4);
    assert.equal(c.encdec?.encoderLayers, 2);
    assert.deepEqual([c.encdec?.relativeBuckets, c.encdec?.relativeMaxDistance], [32, 128]);
    assert.deepEqual([c.mlpKind, c.activation, c.tieEmbeddings], ['plain', 'relu', true]);
    assert.equal(c.encdec?.outputScale, 16 ** -0.5);
    assert.deepEqual([c.normEps, c.maxPositions], [1e-6, 512]);
    assert.deepEqual([c.padTokenId, c.eosTokenId, c.encdec?.decoderStartTokenId], [0, 1, 0]);
  });

  it('reads tied embedding copies transformers may save (embed_tokens, lm_head) and skips them', async () => {
    const spec = randomT5('v1.0', 4);
    const files = specToHf(spec);
    const embed = files.tensors.get('shared.weight') as TensorSource;
    const tensors = new Map(files.tensors);
    tensors.delete('shared.weight');
    tensors.set('encoder.embed_tokens.weight', embed);
    tensors.set('decoder.embed_tokens.weight', embed);
    tensors.set('lm_head.weight', embed);
    const dir = fresh();
    await writeHfFolder(dir, { config: files.config, tensors });
    await assertSameTensors(spec, await loadModelSpec(dir));
  });

  it('reads per-layer head counts from a physically pruned folder', async () => {
    const spec = randomT5('v1.1', 5);
    const hd = T5_TEST_SIZES.headDim;
    const D = T5_TEST_SIZES.hiddenSize;
    // Layer 1 (encoder) keeps heads 0-1 of its self-attention; decoder block 1 (layer 3) keeps one cross head.
    const cut = async (role: string, rows: number, cols: number) => {
      const data = await spec.tensors.get(role)!.load();
      spec.tensors.set(role, memoryTensor([rows, cols], data.slice(0, rows * cols)));
    };
    const cutO = async (role: string, keep: number) => {
      const data = await spec.tensors.get(role)!.load();
      const out = new Float32Array(D * keep);
      for (let r = 0; r < D; r++) out.set(data.subarray(r * 3 * hd, r * 3 * hd + keep), r * keep);
      spec.tensors.set(role, memoryTensor([D, keep], out));
    };
    for (const x of ['q', 'k', 'v']) await cut(`layers.1.attn.${x}.weight`, 2 * hd, D);
    await cutO('layers.1.attn.o.weight', 2 * hd);
    for (const x of ['q', 'k', 'v']) await cut(`layers.3.cross.${x}.weight`, hd, D);
    await cutO('layers.3.cross.o.weight', hd);
    spec.config.headsPerLayer = [3, 2, 3, 3];
    spec.config.kvHeadsPerLayer = [3, 2, 3, 3];
    spec.config.encdec!.crossHeadsPerLayer = [3, 1];
    const dir = fresh();
    await writeHfFolder(dir, specToHf(spec));
    const back = await loadModelSpec(dir);
    assert.deepEqual(back.config, spec.config);
    await assertSameTensors(spec, back);
  });
});

describe('T5 refusals (one line naming the file)', () => {
  /** A v1.0 folder whose config.json / tensors `edit` changed. */
  async function edited(
    edit: (config: Record<string, unknown>, tensors: Map<string, TensorSource>) => void,
    version: 'v1.0' | 'v1.1' = 'v1.0',
  ): Promise<string> {
    const files = specToHf(randomT5(version, 6));
    const tensors = new Map(files.tensors);
    edit(files.config, tensors);
    const dir = fresh();
    await writeHfFolder(dir, { config: files.config, tensors });
    return dir;
  }
  const configOf = (dir: string) => join(dir, 'config.json');
  const exactly = (s: string) => new RegExp(`^${s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);

  it('is_encoder_decoder false', async () => {
    const dir = await edited((c) => {
      c.is_encoder_decoder = false;
    });
    await rejectsFileError(
      loadModelSpec(dir),
      configOf(dir),
      exactly(
        '"is_encoder_decoder" is false: only T5ForConditionalGeneration (encoder and decoder) is supported',
      ),
    );
  });

  it('an architecture other than T5ForConditionalGeneration', async () => {
    const dir = await edited((c) => {
      c.architectures = ['T5EncoderModel'];
    });
    await rejectsFileError(
      loadModelSpec(dir),
      configOf(dir),
      exactly(
        'architecture T5EncoderModel is not supported for model_type t5 (supported: T5ForConditionalGeneration, the encoder-decoder with its LM head)',
      ),
    );
  });

  it('a feed_forward_proj the graphs do not run', async () => {
    const dir = await edited((c) => {
      c.feed_forward_proj = 'gelu';
      delete c.dense_act_fn;
      delete c.is_gated_act;
    });
    await rejectsFileError(
      loadModelSpec(dir),
      configOf(dir),
      exactly('"feed_forward_proj" "gelu" is not supported (supported: relu, gated-gelu, gated-silu)'),
    );
  });

  it('a saved dense_act_fn that contradicts feed_forward_proj', async () => {
    const dir = await edited((c) => {
      c.dense_act_fn = 'gelu';
    });
    await rejectsFileError(
      loadModelSpec(dir),
      configOf(dir),
      exactly('"dense_act_fn" "gelu" contradicts "feed_forward_proj" "relu" (which means "relu")'),
    );
  });

  it('a token id outside the vocabulary', async () => {
    const dir = await edited((c) => {
      c.decoder_start_token_id = 40;
    });
    await rejectsFileError(
      loadModelSpec(dir),
      configOf(dir),
      exactly('"decoder_start_token_id" 40 is outside the vocabulary (vocab_size 40)'),
    );
  });

  it('a relative max distance no larger than the exact buckets', async () => {
    const dir = await edited((c) => {
      c.relative_attention_max_distance = 4;
    });
    await rejectsFileError(
      loadModelSpec(dir),
      configOf(dir),
      exactly(
        '"relative_attention_max_distance" 4 must exceed half the 8 buckets (the distances with buckets of their own)',
      ),
    );
  });

  it('more layers than the checkpoint holds', async () => {
    const dir = await edited((c) => {
      c.num_decoder_layers = 1_000_000_000;
    });
    await rejectsFileError(
      loadModelSpec(dir),
      configOf(dir),
      exactly(
        '"num_decoder_layers" is 1000000000, but the checkpoint holds 2 decoder blocks (decoder.block.N tensors)',
      ),
    );
  });

  it('an untied model without lm_head.weight', async () => {
    const dir = await edited((_c, t) => {
      t.delete('lm_head.weight');
    }, 'v1.1');
    await rejectsFileError(
      loadModelSpec(dir),
      dir,
      exactly('tie_word_embeddings is false but the checkpoint has no lm_head.weight'),
    );
  });

  it('a missing tensor is named', async () => {
    const dir = await edited((_c, t) => {
      t.delete('decoder.block.1.layer.1.EncDecAttention.v.weight');
    });
    await rejectsFileError(
      loadModelSpec(dir),
      dir,
      exactly('missing tensors: decoder.block.1.layer.1.EncDecAttention.v.weight'),
    );
  });

  it('an unknown tensor is refused', async () => {
    const dir = await edited((_c, t) => {
      t.set(
        'encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight',
        memoryTensor([8, 3], new Float32Array(24)),
      );
    });
    await rejectsFileError(
      loadModelSpec(dir),
      join(dir, 'model.safetensors'),
      exactly(
        'unexpected tensor encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight: not part of a T5ForConditionalGeneration model as config.json describes it',
      ),
    );
  });

  it('writing a model T5 cannot express', () => {
    const spec = randomT5('v1.0', 7);
    spec.config.activation = 'gelu';
    assert.throws(
      () => specToHf(spec),
      (err: unknown) =>
        err instanceof GenepruneError &&
        err.message === 'a T5 checkpoint cannot express this model: a plain gelu feed-forward',
    );
  });
});
