/**
 * `generate`: continue a prompt with a model, masked or not (greedy by default, or seeded sampling); an
 * encoder-decoder reads the prompt as its source and writes its target.
 */
import { decodeLoopOf } from '../arch/registry.js';
import { createRunner } from '../engine/runner.js';
import type { ComputeDtype } from '../graph/weights.js';
import { createRng } from '../util/rng.js';
import { type ModelInput, openModelInput, type RuntimeOptions } from './common.js';
import { type HeadMaskChoice, headListText, resolveMasks, type WeightMaskChoice } from './masks.js';

export interface GenerateOptions extends RuntimeOptions, HeadMaskChoice, WeightMaskChoice {
  model?: ModelInput;
  tokenizer?: string;
  /** Text to continue (default: start from BOS alone). */
  prompt?: string;
  /** New tokens at most (default 200). */
  maxNewTokens?: number;
  /** 0 = greedy (default); > 0 samples from softmax(logits / temperature). */
  temperature?: number;
  /** Seed for sampling (default 0). */
  seed?: number;
  /** Called with each new piece of text as it is produced. */
  onText?: (text: string) => void;
  /**
   * Called once, after the model is loaded and before the first token, with the text the output continues: the
   * prompt for a decoder, '' for an encoder-decoder (whose output is a new text, not a continuation).
   */
  onStart?: (continued: string) => void;
  /** Warnings (a prompt longer than the model's context), one line each, before generation starts. */
  onNote?: (line: string) => void;
}

export interface GenerateResult {
  model: string;
  prompt: string;
  /** The generated continuation (without the prompt). */
  text: string;
  /** Prompt token ids (BOS first), then the generated ids. */
  promptTokens: number[];
  /** Prompt tokens beyond the model's context (its beginning), which generation never saw. */
  promptTokensCut: number;
  tokens: number[];
  /** 'length' when maxNewTokens were produced, 'stop' when the model emitted BOS/EOS. */
  finish: 'length' | 'stop';
  prunedHeads: string[];
  mask?: string;
  weightMask?: string;
  recovered?: string;
  temperature: number;
  seed: number;
  seconds: number;
  device: string;
  /** Compute precision used. */
  dtype: ComputeDtype;
}

export async function generate(opts: GenerateOptions = {}): Promise<GenerateResult> {
  const device = opts.device ?? 'cpu';
  const maxNewTokens = opts.maxNewTokens ?? 200;
  const temperature = opts.temperature ?? 0;
  const seed = opts.seed ?? 0;
  const promptText = opts.prompt ?? '';
  const model = await openModelInput(opts.model, opts.tokenizer);
  const weights = await resolveMasks(model.spec, opts);
  const headMask = weights.headMask;
  const tok = model.tokenizer;
  const loop = decodeLoopOf(model.spec.config);
  // An encoder-decoder reads the prompt as its source, encoded with the tokenizer's special tokens (T5/CodeT5:
  // `<s> … </s>`), and writes a new text; a decoder continues the prompt.
  const seq2seq = loop.promptIsSource === true;
  const prompt = seq2seq ? tok.encodeInput(promptText).ids : tok.encode(promptText, { bos: true });
  if (prompt.length === 0) prompt.push(model.spec.config.bosTokenId ?? 1);
  // The decoder sees the last maxPositions tokens: a longer prompt loses its beginning, which must be said.
  const maxPositions = model.spec.config.maxPositions;
  const promptTokensCut = Math.max(0, prompt.length - maxPositions);
  if (promptTokensCut > 0) {
    opts.onNote?.(
      `the prompt is ${prompt.length} tokens, longer than the model's context of ${maxPositions}: its first ${promptTokensCut} tokens are not seen`,
    );
  }
  const dtype = opts.dtype ?? 'fp32';
  const runner = await createRunner(weights.spec, {
    output: 'last_logits',
    device,
    threads: opts.threads,
    dtype,
    weightMasks: weights.roles,
  });
  const eos = model.spec.config.eosTokenId ?? tok.eosId;
  const stopTokens = (seq2seq ? [eos] : [tok.bosId, tok.eosId]).filter((t): t is number => t !== undefined);
  // A seq2seq output starts a text of its own: its first piece has no left neighbour.
  let prev: number | undefined = seq2seq ? undefined : prompt[prompt.length - 1];
  opts.onStart?.(seq2seq ? '' : promptText);
  let text = '';
  const t0 = performance.now();
  let all: number[];
  try {
    all = await loop.generate(runner, prompt, {
      maxNewTokens,
      temperature,
      rng: createRng(seed),
      masks: { headMask, weightMasks: weights.feeds },
      stopTokens,
      onToken: (id) => {
        const piece = tok.decodeToken(prev, id);
        text += piece;
        prev = id;
        opts.onText?.(piece);
      },
    });
  } finally {
    await runner.release();
  }
  const tokens = all.slice(prompt.length);
  return {
    model: model.modelPath,
    prompt: promptText,
    text,
    promptTokens: prompt,
    promptTokensCut,
    tokens,
    finish: tokens.length < maxNewTokens ? 'stop' : 'length',
    prunedHeads: headListText(opts.pruneHeads ?? []),
    ...(opts.mask ? { mask: opts.mask } : {}),
    ...(opts.weightMask ? { weightMask: opts.weightMask } : {}),
    ...(opts.recovered ? { recovered: opts.recovered } : {}),
    temperature,
    seed,
    seconds: (performance.now() - t0) / 1000,
    device,
    dtype,
  };
}
