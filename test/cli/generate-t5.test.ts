/**
 * `geneprune generate` on an encoder-decoder (the shared codet5-tiny): the prompt is the source, encoded as the
 * tokenizer's model input (`<s> text </s>`), and the greedy output equals the plain reference's greedy decoding
 * token for token — dense, and with `--prune-heads` over the three stacks (the list's layer counts head layers:
 * encoder 0–2, decoder self 3–5, cross 6–8), whose rows the reference takes as the contract orders them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadModelSpec } from '../../src/model/load.js';
import { loadTokenizer } from '../../src/tokenizer/load.js';
import { runCli } from '../helpers/cli.js';
import { t5Reference } from '../reference/t5.js';
import { sharedPath, skipUnlessShared } from '../shared.js';

const CODET5 = 'models/codet5-tiny';
const EVAL = 'data/codegen/eval.jsonl';

describe('geneprune generate on codet5-tiny', { skip: skipUnlessShared(CODET5, EVAL) }, () => {
  it('generates the reference greedy tokens from the source, dense and with heads pruned in each stack', async () => {
    const dir = sharedPath(CODET5)!;
    const ref = await t5Reference(await loadModelSpec(dir));
    const tok = await loadTokenizer(join(dir, 'tokenizer.json'));
    const rows = readFileSync(sharedPath(EVAL)!, 'utf8')
      .trim()
      .split('\n')
      .slice(0, 3)
      .map((l) => JSON.parse(l) as { text: string });
    // Heads of every stack (head layers 0–2 encoder, 3–5 decoder self, 6–8 cross = head_mask rows 0–8), enough
    // that one of the three outputs changes.
    const list = '0:0,0:1,0:2,1:3,2:1,3:0,4:2,5:1,6:0,6:1,6:2,7:0,7:2,8:3';
    const pruned = new Float32Array(9 * 4).fill(1);
    for (const pair of list.split(',')) {
      const [row, h] = pair.split(':').map(Number);
      pruned[row * 4 + h] = 0;
    }
    const changed: boolean[] = [];
    for (const { text } of rows) {
      const source = tok.encodeInput(text).ids;
      for (const [flags, headMask] of [
        [[], undefined],
        [['--prune-heads', list], pruned],
      ] as const) {
        const r = runCli(['generate', '--model', dir, '--prompt', text, '-n', '64', '--json', ...flags]);
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout) as { promptTokens: number[]; tokens: number[] };
        assert.deepEqual(out.promptTokens, source);
        const want = ref.greedy([source], [source.map(() => 1)], 64, headMask)[0];
        assert.deepEqual(out.tokens, want, `${text} ${flags.join(' ')}`);
        if (headMask)
          changed.push(
            JSON.stringify(want) !== JSON.stringify(ref.greedy([source], [source.map(() => 1)], 64)[0]),
          );
      }
    }
    assert.ok(changed.includes(true), 'the pruned heads change some output');
  });
});
