/**
 * Export of head-pruned encoder-decoders. On the shared codet5-tiny, with a mask removing heads of all three stacks
 * (encoder head 1 in every encoder block, so its relative-bias column goes; encoder head 2 in block 0 only, so its
 * column stays and the other blocks go on reading it):
 * - the transformers.js folder, loaded by @huggingface/transformers offline, generates exactly the tokens
 *   `geneprune generate --mask` does for eval prompts;
 * - the padded Hugging Face folder (the source's names and shapes, removed heads zero) and the compact one (read
 *   back through the column map in config.json) evaluate (`geneprune eval --data`) equal to the masked model.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { openHfFolder } from '../../src/checkpoint/hf.js';
import { createRunner } from '../../src/engine/runner.js';
import type { GenepruneError } from '../../src/errors.js';
import { type Bitset, packBits } from '../../src/masks/bitset.js';
import { makeMaskFile } from '../../src/masks/headfile.js';
import { prunableMatrices } from '../../src/masks/weights.js';
import { loadModelSpec } from '../../src/model/load.js';
import type { ModelSpec } from '../../src/model/spec.js';
import { exportModel } from '../../src/prune/export.js';
import { tempDir } from '../checkpoint/helpers.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { randomT5 } from '../helpers/t5.js';
import { t5Reference } from '../reference/t5.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const CODET5 = 'models/codet5-tiny';
const EVAL = 'data/codegen/eval.jsonl';
const tmp = tempDir('geneprune-export-t5-');
after(tmp.cleanup);

/** codet5-tiny's genome (3 encoder, 3 decoder blocks of 4 heads; genes encoder, decoder, cross) with `removed` off. */
function genomeWithout(removed: Array<[stack: number, block: number, head: number]>): Uint8Array {
  const g = new Uint8Array(36).fill(1);
  for (const [s, b, h] of removed) g[s * 12 + b * 4 + h] = 0;
  return g;
}

const REMOVED: Array<[number, number, number]> = [
  [0, 0, 1],
  [0, 1, 1],
  [0, 2, 1], // encoder head 1 in every block: column 1 of the encoder table goes
  [0, 0, 2], // encoder head 2 in block 0 only: column 2 stays for block 1
  [0, 1, 3],
  [0, 2, 0],
  [1, 0, 2],
  [1, 1, 3],
  [1, 1, 0],
  [1, 2, 0], // decoder self-attention: no column is lost by every block
  [2, 0, 0],
  [2, 0, 1],
  [2, 1, 0],
  [2, 1, 2],
  [2, 2, 0],
  [2, 2, 3], // cross-attention
];

describe('codet5-tiny with heads of all three stacks removed', {
  skip: skipUnlessShared(CODET5, EVAL),
}, () => {
  const model = () => sharedPath(CODET5)!;
  const maskPath = join(tmp.dir, 'mask.json');
  const out = join(tmp.dir, 'tjs');
  const prompts = () =>
    readFileSync(sharedPath(EVAL)!, 'utf8')
      .trim()
      .split('\n')
      .slice(0, 4)
      .map((l) => (JSON.parse(l) as { text: string }).text);

  it('the transformers.js folder generates what geneprune generate --mask does', async () => {
    const source = await loadModelSpec(model());
    writeFileSync(maskPath, JSON.stringify(await makeMaskFile(source, genomeWithout(REMOVED))));
    const exported = runCli(['export', '--model', model(), '--mask', maskPath, '--out', out]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /encoder heads +2 2 2 \(of 4 4 4\)/);
    assert.match(exported.stdout, /decoder heads +3 2 3 \(of 4 4 4\)/);
    assert.match(exported.stdout, /cross heads +2 2 2 \(of 4 4 4\)/);

    // The relative-bias tables: the encoder's lost exactly column 1, the decoder's none; the map says who reads what.
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.deepEqual(config.relative_attention_bias_column_of_head, {
      encoder: [
        [0, 2], // block 0 kept heads 0 and 3: columns 0 and 3 of the source, 0 and 2 of the 3 kept
        [0, 1], // block 1 kept heads 0 and 2: columns 0, 2 → 0, 1
        [1, 2], // block 2 kept heads 2 and 3: columns 2, 3 → 1, 2
      ],
      decoder: [
        [0, 1, 3],
        [1, 2],
        [1, 2, 3],
      ],
    });
    // Provenance as for every family: the source and the removed heads, by stack.
    const mask = JSON.parse(readFileSync(maskPath, 'utf8')) as { removed: string[] };
    assert.equal(mask.removed.length, REMOVED.length);
    assert.deepEqual(config.geneprune.lineage[0].mask.removed, mask.removed);
    assert.ok(
      mask.removed.includes('encoder.0:1') && mask.removed.includes('cross.2:3'),
      mask.removed.join(' '),
    );
    const folder = await openHfFolder(out);
    const table = (stack: string) =>
      folder.tensors.get(`${stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`)!;
    assert.deepEqual(table('encoder').shape, [32, 3]);
    assert.deepEqual(table('decoder').shape, [32, 4]);
    const src = await openHfFolder(model());
    const [before, after] = [
      await src.tensors.get('encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight')!.load(),
      await table('encoder').load(),
    ];
    for (let b = 0; b < 32; b++)
      assert.deepEqual(
        [...after.subarray(b * 3, b * 3 + 3)],
        [before[b * 4], before[b * 4 + 2], before[b * 4 + 3]],
      );
    const generation = JSON.parse(readFileSync(join(out, 'generation_config.json'), 'utf8'));
    assert.equal(generation.decoder_start_token_id, 0);
    assert.equal(generation.eos_token_id, 2);
    assert.equal(generation.pad_token_id, 0);
    assert.equal(generation.max_length, 64); // the source folder's own

    // A previous T5 export (its two graphs included) is one --force may replace.
    const again = runCli(['export', '--model', model(), '--mask', maskPath, '--out', out, '--force']);
    assert.equal(again.code, 0, again.stderr);

    const tjs = await import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = `${tmp.dir}/`;
    const tokenizer = await tjs.AutoTokenizer.from_pretrained('tjs');
    const lm = await tjs.AutoModelForSeq2SeqLM.from_pretrained('tjs', { dtype: 'fp32' });
    let differs = false;
    try {
      for (const text of prompts()) {
        const ours = runCli([
          'generate',
          '--model',
          model(),
          '--mask',
          maskPath,
          '--prompt',
          text,
          '-n',
          '64',
          '--json',
        ]);
        assert.equal(ours.code, 0, ours.stderr);
        const want = JSON.parse(ours.stdout) as { promptTokens: number[]; tokens: number[] };
        const inputs = tokenizer(text) as { input_ids: { tolist(): bigint[][] } };
        assert.deepEqual(
          inputs.input_ids.tolist()[0].map(Number),
          want.promptTokens,
          'the same source tokens',
        );
        const generated = (await lm.generate({
          ...inputs,
          max_new_tokens: 64,
          do_sample: false,
        })) as unknown as {
          tolist(): bigint[][];
        };
        const ids = generated.tolist()[0].map(Number);
        // transformers.js returns the decoder start token, the tokens, and the EOS it stopped at; geneprune the tokens.
        assert.equal(ids[0], 0);
        assert.equal(ids[ids.length - 1], 2, `${text}: stopped at EOS`);
        assert.deepEqual(ids.slice(1, -1), want.tokens, text);
        const dense = runCli(['generate', '--model', model(), '--prompt', text, '-n', '64', '--json']);
        assert.equal(dense.code, 0, dense.stderr);
        differs ||=
          JSON.stringify((JSON.parse(dense.stdout) as { tokens: number[] }).tokens) !==
          JSON.stringify(want.tokens);
      }
    } finally {
      await lm.dispose();
    }
    assert.ok(differs, 'the mask changes some output (so the pruned heads mattered)');
  });

  it('the padded and compact Hugging Face folders evaluate equal to the masked model', async () => {
    const padded = join(tmp.dir, 'padded');
    const compact = join(tmp.dir, 'compact');
    for (const [dir, layout] of [
      [padded, 'padded'],
      [compact, 'compact'],
    ]) {
      const r = runCli([
        'export',
        '--model',
        model(),
        '--mask',
        maskPath,
        '--out',
        dir,
        '--format',
        'hf',
        '--hf-layout',
        layout,
      ]);
      assert.equal(r.code, 0, r.stderr);
    }
    // Padded: the source's tensor names and shapes (what stock transformers' T5ForConditionalGeneration loads), no
    // column map, the removed heads' rows (q, k, v) and columns (o) zero and everything else the source's values.
    const src = await openHfFolder(model());
    const pad = await openHfFolder(padded);
    assert.deepEqual([...pad.tensors.keys()].sort(), [...src.tensors.keys()].sort());
    const padConfig = JSON.parse(readFileSync(join(padded, 'config.json'), 'utf8'));
    assert.equal(padConfig.relative_attention_bias_column_of_head, undefined);
    assert.equal(padConfig.num_heads, 4);
    const zeroRows = new Map<string, number[]>();
    const zeroCols = new Map<string, number[]>();
    for (const [s, b, h] of REMOVED) {
      const p =
        s === 0
          ? `encoder.block.${b}.layer.0.SelfAttention`
          : s === 1
            ? `decoder.block.${b}.layer.0.SelfAttention`
            : `decoder.block.${b}.layer.1.EncDecAttention`;
      for (const m of ['q', 'k', 'v'])
        zeroRows.set(`${p}.${m}.weight`, [...(zeroRows.get(`${p}.${m}.weight`) ?? []), h]);
      zeroCols.set(`${p}.o.weight`, [...(zeroCols.get(`${p}.o.weight`) ?? []), h]);
    }
    for (const [name, t] of pad.tensors) {
      const want = await src.tensors.get(name)!.load();
      assert.deepEqual(t.shape, src.tensors.get(name)!.shape, name);
      const got = await t.load();
      const cols = t.shape[1] ?? 1;
      for (let i = 0; i < got.length; i++) {
        const head = Math.floor((zeroCols.has(name) ? i % cols : Math.floor(i / cols)) / 32);
        const removed = (zeroRows.get(name) ?? zeroCols.get(name) ?? []).includes(head);
        if (got[i] !== (removed ? 0 : want[i]))
          assert.fail(`${name}[${i}] is ${got[i]}, want ${removed ? 0 : want[i]}`);
      }
    }
    // Compact: geneprune reads the per-layer heads and the column map back.
    const back = await loadModelSpec(compact);
    assert.deepEqual(back.config.headsPerLayer, [2, 2, 2, 3, 2, 3]);
    assert.deepEqual(back.config.encdec!.crossHeadsPerLayer, [2, 2, 2]);
    assert.deepEqual(back.config.encdec!.relColumnOfQuery![0], [0, 2]);

    const nll = (args: string[]) => {
      const r = runCli(['eval', ...args, '--data', sharedPath(EVAL)!, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return (JSON.parse(r.stdout) as { meanNll: number }).meanNll;
    };
    const masked = nll(['--model', model(), '--mask', maskPath]);
    const dense = nll(['--model', model()]);
    assert.ok(Math.abs(masked - dense) > 1e-4, `the mask moves the NLL (${masked} vs dense ${dense})`);
    for (const dir of [padded, compact]) {
      const got = nll(['--model', dir]);
      assert.ok(Math.abs(got - masked) <= 1e-6, `${dir}: NLL/token ${got}, masked model ${masked}`);
    }
  });

  it('refuses --recover in one line, before any work', () => {
    // Refitting o after head removal reads windows of a text stream, not an encoder-decoder's source/target pairs.
    const rec = join(tmp.dir, 'recovered');
    assertOneLineError(
      runCli([
        'export',
        '--model',
        model(),
        '--mask',
        maskPath,
        '--recover',
        '--calib',
        sharedPath(EVAL)!,
        '--out',
        rec,
      ]),
      2,
      '--recover',
      'not built for encoder-decoders',
    );
    assert.ok(!existsSync(rec));
  });
});

describe('a random T5 v1.1 (gated-gelu, untied) with headless layers', () => {
  // 2 encoder and 2 decoder blocks of 3 heads; head_mask rows (= genes, 3 per row): encoder 0–1, decoder self 2–3,
  // cross 4–5. Encoder block 0 and cross block 0 lose every head; encoder column 1 goes (no encoder block keeps
  // head 1); the decoder keeps every column, block 1 reading columns 1 and 2 through the map.
  const REMOVED_CELLS = [
    [0, 0],
    [0, 1],
    [0, 2],
    [1, 1],
    [2, 2],
    [3, 0],
    [4, 0],
    [4, 1],
    [4, 2],
    [5, 1],
  ];
  const full = randomT5('v1.1', 7);
  const genome = new Uint8Array(18).fill(1);
  for (const [row, h] of REMOVED_CELLS) genome[row * 3 + h] = 0;
  const headMask = Float32Array.from(genome);
  const src = [
    [4, 9, 13, 2, 7, 30],
    [5, 8, 3, 0, 0, 0],
  ];
  const srcMask = src.map((r, b) => r.map((_, t) => (b === 1 && t >= 3 ? 0 : 1)));
  const dec = [
    [0, 11, 12, 6, 33],
    [0, 3, 3, 9, 21],
  ];
  const int64 = (rows: number[][]) => BigInt64Array.from(rows.flat().map(BigInt));
  const all = join(tmp.dir, 'v11-all');
  const padded = join(tmp.dir, 'v11-padded');

  async function engineLogits(spec: ModelSpec): Promise<Float32Array> {
    const runner = await createRunner(spec, { output: 'logits' });
    try {
      const got = await runner.run({
        batch: 2,
        seq: 6,
        ids: int64(src),
        attentionMask: int64(srcMask),
        decoderIds: int64(dec),
        decoderSeq: 5,
      });
      return Float32Array.from(got);
    } finally {
      await runner.release();
    }
  }

  it('its compact and padded folders evaluate equal to the masked model', async () => {
    const exported = await exportModel({
      spec: full,
      genome,
      out: all,
      format: 'all',
      externalDataThreshold: 0,
    });
    await exportModel({ spec: full, genome, out: padded, format: 'hf', hfLayout: 'padded' });
    // T5 has no class in modeling_geneprune.py and no pruned_heads: the summary says the padded layout is the way.
    assert.ok(!exported.files.includes('modeling_geneprune.py'));
    assert.deepEqual(exported.loaders?.readers, [
      'geneprune',
      'transformers.js (onnx/)',
      'no stock t5 class in Python transformers (use --hf-layout padded)',
    ]);
    const want = (await t5Reference(full))
      .decodeLogits(src, srcMask, dec, headMask)
      .flatMap((r) => r.flatMap((p) => [...p]));
    const maxDiff = (got: ArrayLike<number>) =>
      want.reduce((m, w, i) => Math.max(m, Math.abs(w - got[i])), 0);

    const compact = await loadModelSpec(all);
    assert.deepEqual(compact.config.headsPerLayer, [0, 2, 2, 2]);
    assert.deepEqual(compact.config.encdec!.crossHeadsPerLayer, [0, 2]);
    assert.equal(compact.config.encdec!.encoderBiasColumns, 2);
    assert.equal(compact.config.encdec!.decoderBiasColumns, 3);
    assert.deepEqual(compact.config.encdec!.relColumnOfQuery, [[], [0, 1], [0, 1], [1, 2]]);
    assert.ok(compact.tensors.has('lm_head.weight'), 'untied head kept');
    const table = await compact.tensors.get('rel_bias.encoder.weight')!.load();
    const before = await full.tensors.get('rel_bias.encoder.weight')!.load();
    assert.deepEqual(
      [...table],
      [...Array(8).keys()].flatMap((b) => [before[b * 3], before[b * 3 + 2]]),
    );
    assert.ok(
      maxDiff(await engineLogits(compact)) < 1e-4,
      `compact: ${maxDiff(await engineLogits(compact))}`,
    );
    const pad = await loadModelSpec(padded);
    assert.deepEqual(pad.config.headsPerLayer, [3, 3, 3, 3]);
    assert.equal(pad.config.encdec!.relColumnOfQuery, undefined);
    assert.ok(maxDiff(await engineLogits(pad)) < 1e-4, `padded: ${maxDiff(await engineLogits(pad))}`);

    // Above the (zero) threshold each graph reads its own external data file, and config.json says so.
    for (const f of ['encoder_model.onnx', 'decoder_model_merged.onnx']) {
      assert.ok(
        exported.files.includes(`onnx/${f}`) && exported.files.includes(`onnx/${f}_data`),
        exported.files.join(' '),
      );
    }
    const config = JSON.parse(readFileSync(join(all, 'config.json'), 'utf8'));
    assert.deepEqual(config['transformers.js_config'], {
      use_external_data_format: { 'encoder_model.onnx': 1, 'decoder_model_merged.onnx': 1 },
    });
  });

  it('its transformers.js folder generates the masked model’s greedy tokens, on a padded batch', async () => {
    const ref = await t5Reference(full);
    const want = ref.greedy(src, srcMask, 8, headMask);
    assert.notDeepEqual(want, ref.greedy(src, srcMask, 8), 'the removed heads change the output');
    const tjs = await import('@huggingface/transformers');
    tjs.env.allowRemoteModels = false;
    tjs.env.localModelPath = `${tmp.dir}/`;
    const lm = await tjs.AutoModelForSeq2SeqLM.from_pretrained('v11-all', { dtype: 'fp32' });
    try {
      const generated = (await lm.generate({
        input_ids: new tjs.Tensor('int64', int64(src), [2, 6]),
        attention_mask: new tjs.Tensor('int64', int64(srcMask), [2, 6]),
        max_new_tokens: 8,
        do_sample: false,
      })) as unknown as { tolist(): bigint[][] };
      const rows = generated.tolist().map((r) => r.map(Number));
      rows.forEach((row, b) => {
        assert.equal(row[0], 0, 'the decoder start token');
        const eos = row.indexOf(1, 1);
        const tokens = row.slice(1, eos < 0 ? undefined : eos);
        assert.deepEqual(tokens, want[b], `row ${b}`);
        if (eos >= 0)
          assert.ok(
            row.slice(eos + 1).every((t) => t === 0),
            'padded after EOS',
          );
      });
    } finally {
      await lm.dispose();
    }
  });

  it('with a weight mask, counts the zeros written to its two graphs', async () => {
    // Every third weight of every prunable matrix off: random weights are never 0, so exactly those are zeros.
    const masks = new Map<string, Bitset>();
    let pruned = 0;
    let total = 0;
    for (const m of prunableMatrices(full)) {
      const keep = Array.from({ length: m.rows * m.cols }, (_, i) => (i % 3 === 0 ? 0 : 1));
      masks.set(m.role, packBits(keep));
      pruned += keep.filter((k) => k === 0).length;
      total += keep.length;
    }
    const weightMask = { masks, path: join(tmp.dir, 'wm'), sha256: '0'.repeat(64), sparsity: pruned / total };
    for (const format of ['transformersjs', 'all'] as const) {
      const r = await exportModel({ spec: full, weightMask, out: join(tmp.dir, `v11-wm-${format}`), format });
      assert.ok(r.files.includes('onnx/decoder_model_merged.onnx'), r.files.join(' '));
      // 'all' counts the safetensors and the graphs, and refuses when they disagree.
      assert.equal(r.weightSparsity?.prunable.sparsity, pruned / total, format);
      assert.equal(r.weightSparsity?.prunable.weights, total, format);
    }
  });

  it('refuses in one line what it cannot read or do', async () => {
    // A column map that does not fit the heads the tensors hold.
    const broken = join(tmp.dir, 'v11-broken');
    await exportModel({ spec: full, genome, out: broken, format: 'hf' });
    const path = join(broken, 'config.json');
    const config = JSON.parse(readFileSync(path, 'utf8'));
    config.relative_attention_bias_column_of_head.decoder[1] = [1, 5];
    writeFileSync(path, JSON.stringify(config));
    await assert.rejects(loadModelSpec(broken), (e: GenepruneError) => {
      assert.equal(e.where, path);
      assert.equal(
        e.message,
        `"relative_attention_bias_column_of_head" decoder block 1: expected 2 column indices below the table's 3 columns, got [1,5]`,
      );
      return true;
    });
  });
});
