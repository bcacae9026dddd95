/**
 * The generation task: its file format and errors, and batched greedy decoding on the real stories260K, which
 * must give every prompt exactly the tokens single-prompt `generate` (the path that reproduces llama2.c) gives it,
 * with and without head and weight masks.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generate } from '../../src/arch/generate.js';
import { greedyDecodeBatch } from '../../src/arch/greedy.js';
import { type CandidateMasks, createRunner, type ModelRunner } from '../../src/engine/runner.js';
import { GenepruneError } from '../../src/errors.js';
import { corpusBleu, sentenceMeanBleu } from '../../src/metrics/bleu.js';
import { readDataset } from '../../src/metrics/data.js';
import {
  parseGenerationTask,
  prepareGenerationTask,
  readGenerationTask,
  scoreGeneration,
} from '../../src/metrics/generation.js';
import { type OpenedModel, openModel } from '../../src/model/open.js';
import { tempDir } from '../checkpoint/helpers.js';
import { EVAL, MODEL, sharedPath, skipUnlessShared } from '../shared.js';

const tmp = tempDir('geneprune-generation-');
after(tmp.cleanup);

function taskFile(name: string, lines: string[]): string {
  const path = join(tmp.dir, name);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

describe('task files', () => {
  test('prompt/reference lines, MBPP text/code lines, several references, blank lines', async () => {
    const path = taskFile('ok.jsonl', [
      JSON.stringify({ prompt: 'Once upon a time', reference: 'there was a cat.' }),
      '',
      JSON.stringify({
        text: 'Write a function to add two numbers.',
        code: 'def add(a, b):\n    return a + b',
        task_id: 2,
      }),
      JSON.stringify({ prompt: 'A', reference: ['b c', 'd e'] }),
    ]);
    const task = await readGenerationTask(path);
    assert.deepEqual(task.items, [
      { prompt: 'Once upon a time', references: ['there was a cat.'] },
      { prompt: 'Write a function to add two numbers.', references: ['def add(a, b):\n    return a + b'] },
      { prompt: 'A', references: ['b c', 'd e'] },
    ]);
  });
  test('bad lines are refused naming the file and line', () => {
    const cases: [string[], RegExp][] = [
      [['{"prompt": "a", "reference": "b"}', '{"prompt": "a", '], /^line 2: not valid JSON$/],
      [['[1, 2]'], /^line 1: not a JSON object/],
      [['{"question": "a", "answer": "b"}'], /^line 1: needs fields "prompt" and "reference"/],
      [
        ['{"prompt": 3, "reference": "b"}'],
        /^line 1: the prompt \("prompt" and "reference"\) must be a string/,
      ],
      [['{"prompt": "a"}'], /^line 1: the reference .* must be a string or a non-empty array/],
      [['{"text": "a", "code": " "}'], /^line 1: empty reference/],
      [['', '  '], /^no items/],
    ];
    for (const [lines, message] of cases) {
      assert.throws(
        () => parseGenerationTask('task.jsonl', lines.join('\n')),
        (e: unknown) => e instanceof GenepruneError && e.where === 'task.jsonl' && message.test(e.message),
        lines.join(' / '),
      );
    }
  });
  test('a missing file and a binary file are one-line errors', async () => {
    await assert.rejects(readGenerationTask(join(tmp.dir, 'absent.jsonl')), /cannot read task file/);
    const bin = join(tmp.dir, 'bin.jsonl');
    writeFileSync(bin, Uint8Array.from([0x7b, 0x00, 0x7d]));
    await assert.rejects(readGenerationTask(bin), /not text/);
  });
});

describe('batched greedy decoding on stories260K', { skip: skipUnlessShared(MODEL, EVAL) }, () => {
  let model: OpenedModel;
  let prompts: number[][];
  const role = 'layers.1.mlp.up.weight';
  let headMask: Float32Array;
  let weightMask: Uint8Array;

  before(async () => {
    model = await openModel(sharedPath(MODEL));
    const docs = (await readDataset(sharedPath(EVAL)!)).documents;
    // Prompts of many lengths, including BOS alone and one longer than most.
    const texts = ['', 'Once upon a time', 'Tom', ...docs.slice(0, 6).map((d, i) => d.slice(0, 20 + 37 * i))];
    prompts = texts.map((t) => model.tokenizer.encode(t, { bos: true }));
    if (prompts[0].length === 0) prompts[0] = [1];
    // Heads 0, 3 and 5 of layer 0 and head 2 of layer 4 removed.
    headMask = new Float32Array(5 * 8).fill(1);
    for (const g of [0, 3, 5, 4 * 8 + 2]) headMask[g] = 0;
    const n = model.spec.tensors.get(role)!.shape.reduce((a, b) => a * b, 1);
    weightMask = Uint8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 0 : 1));
  });

  async function oneAtATime(masks: CandidateMasks, maxNewTokens: number): Promise<number[][]> {
    const runner = await createRunner(model.spec, { output: 'last_logits', weightMasks: [role] });
    try {
      const out: number[][] = [];
      for (const p of prompts) {
        const all = await generate(runner, p, { maxNewTokens, masks, stopTokens: [1, 2] });
        out.push(all.slice(p.length));
      }
      return out;
    } finally {
      await runner.release();
    }
  }

  async function batched(masks: CandidateMasks, maxNewTokens: number, batchSize: number) {
    const runner: ModelRunner = await createRunner(model.spec, { output: 'row_logits', weightMasks: [role] });
    try {
      return await greedyDecodeBatch(runner, prompts, { maxNewTokens, masks, stopTokens: [1, 2], batchSize });
    } finally {
      await runner.release();
    }
  }

  for (const [name, masks] of [
    ['dense', () => ({})],
    ['head mask', () => ({ headMask })],
    ['head and weight masks', () => ({ headMask, weightMasks: new Map([[role, weightMask]]) })],
  ] as const) {
    test(`${name}: every prompt gets the tokens it gets alone, at batch sizes 4 and 16`, async () => {
      const m = masks() as CandidateMasks;
      const expected = await oneAtATime(m, 40);
      assert.ok(expected.every((t) => t.length > 0));
      for (const bs of [4, 16]) {
        const got = await batched(m, 40, bs);
        assert.deepEqual(got.tokens, expected, `batch size ${bs}`);
        assert.deepEqual(
          got.finish,
          expected.map((t) => (t.length < 40 ? 'stop' : 'length')),
        );
      }
      if (name !== 'dense')
        assert.notDeepEqual(expected, await oneAtATime({}, 40), 'the masks change the output');
    });
  }

  test('long continuations stop at BOS like generate does', async () => {
    // From BOS alone stories260K finishes its story within 400 tokens and starts a new one (BOS): both paths stop.
    const single = await createRunner(model.spec, { output: 'last_logits' });
    const alone = (await generate(single, [1], { maxNewTokens: 400, stopTokens: [1, 2] })).slice(1);
    await single.release();
    const runner = await createRunner(model.spec, { output: 'row_logits' });
    const got = await greedyDecodeBatch(runner, [[1], prompts[1]], { maxNewTokens: 400, stopTokens: [1, 2] });
    await runner.release();
    assert.deepEqual(got.tokens[0], alone);
    assert.equal(got.finish[0], alone.length < 400 ? 'stop' : 'length');
  });

  test("a task whose references are the model's own continuations scores BLEU 100; a pruned model scores less", async () => {
    const expected = await oneAtATime({}, 24);
    const tok = model.tokenizer;
    const items = prompts.map((p, i) => ({
      prompt: tok.decode(p),
      references: [
        expected[i]
          .map((id, k) => tok.decodeToken(k === 0 ? p[p.length - 1] : expected[i][k - 1], id))
          .join(''),
      ],
    }));
    const prepared = prepareGenerationTask({ source: 'self', items }, tok);
    assert.deepEqual(prepared.prompts, prompts);
    const runner = await createRunner(model.spec, { output: 'row_logits' });
    try {
      const dense = await scoreGeneration(runner, prepared, { maxNewTokens: 24 });
      // 100 up to rounding (exp of a sum of logs of 100).
      assert.ok(Math.abs(dense.corpus.score - 100) < 1e-9, String(dense.corpus.score));
      assert.ok(Math.abs(dense.sentenceMean - 100) < 1e-9, String(dense.sentenceMean));
      assert.equal(dense.bleu, dense.corpus.score);
      assert.equal(
        dense.newTokens,
        expected.reduce((a, t) => a + t.length, 0),
      );
      const pruned = await scoreGeneration(runner, prepared, {
        maxNewTokens: 24,
        masks: { headMask },
        bleu: 'sentence-mean',
      });
      assert.equal(pruned.kind, 'sentence-mean');
      assert.ok(pruned.bleu < 100 && pruned.corpus.score < 100, `pruned BLEU ${pruned.bleu}`);
      // The reported numbers are those of the BLEU functions on the returned continuations.
      const refs = [items.map((it) => it.references[0])];
      assert.equal(pruned.corpus.score, corpusBleu(pruned.hypotheses, refs).score);
      assert.equal(pruned.bleu, sentenceMeanBleu(pruned.hypotheses, refs));
    } finally {
      await runner.release();
    }
  });
});
