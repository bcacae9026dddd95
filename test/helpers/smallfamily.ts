/**
 * One small random folder of each Hugging Face decoder family the structured and per-layer width tests run
 * through the same checks (test/graph/structured.test.ts, test/model/widths.test.ts): three layers, four heads,
 * hidden 32 (24 for Gemma, head_dim 8), MLP width `inter`, only the seed differing between two folders of a family.
 */
import { writeGemma } from './gemma.js';
import { writeGpt2 } from './gpt2.js';
import { writeOpt } from './opt.js';
import { writePhi3 } from './phi3.js';
import { writeQwen3 } from './qwen3.js';

export type SmallFamily = 'opt' | 'phi3' | 'qwen3' | 'gemma' | 'gemma2' | 'gpt2';

/** Writes `family`'s small folder with MLP width `inter` at `dir`, its weights drawn from `seed`. */
export async function writeSmallFamily(
  family: SmallFamily,
  dir: string,
  inter: number,
  seed: number,
): Promise<void> {
  switch (family) {
    case 'opt':
      await writeOpt(dir, { hidden: 32, heads: 4, layers: 3, ffn: inter, vocab: 41, positions: 16 }, seed);
      return;
    case 'phi3':
      await writePhi3(
        dir,
        { hidden: 32, layers: 3, heads: 4, kvHeads: 2, inter, vocab: 41, maxPositions: 32 },
        seed,
      );
      return;
    case 'qwen3':
      await writeQwen3(
        dir,
        { hidden: 32, layers: 3, heads: 4, kvHeads: 2, headDim: 8, inter, vocab: 41 },
        seed,
      );
      return;
    case 'gemma':
    case 'gemma2':
      // MQA for Gemma, two KV heads for Gemma 2.
      await writeGemma(
        dir,
        {
          type: family,
          hidden: 24,
          layers: 3,
          heads: 4,
          kvHeads: family === 'gemma' ? 1 : 2,
          headDim: 8,
          inter,
          vocab: 29,
        },
        seed,
      );
      return;
    case 'gpt2':
      await writeGpt2(dir, { embd: 32, heads: 4, layers: 3, inner: inter, vocab: 41, positions: 16 }, seed);
      return;
  }
}
