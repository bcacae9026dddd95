/**
 * llama2.c `tokenizer.bin` → Hugging Face `tokenizer.json` + `tokenizer_config.json`, written the way Hugging
 * Face expresses LLaMA's sentencepiece BPE: a BPE model with byte fallback, '▁' for spaces, a Prepend('▁') +
 * Replace(' ', '▁') normalizer, no pre-tokenizer, and a <s> template.
 *
 * llama2.c stores scores, not merges. Its encoder repeatedly merges the adjacent pair whose concatenation is
 * the highest-scoring piece (leftmost on ties). The equivalent merge list has one rule a+b=c for every way of
 * splitting a piece c into two pieces a and b, ranked by c's score, highest first: BPE then applies, at each
 * step, the lowest-ranked applicable rule, which is the pair llama2.c picks. The one case a rank cannot express
 * is a tie: two different applicable pairs with the same score (two pieces with equal scores, or two splits of
 * one piece present at once). llama2.c takes the leftmost, BPE the lower rank; the outcome differs only when
 * the tie is followed by a merge that depends on which was done first. Sentencepiece-trained vocabularies give
 * every merged piece its own score, so only the second kind of tie can occur there.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dataError, fileError } from '../errors.js';
import { describeFsError, makeDirectory, writeJsonAtomic } from '../util/fs.js';
import { type Llama2cVocab, parseLlama2cVocab } from './llama2c.js';

/** Sentencepiece's whitespace marker. */
const SPACE_MARKER = '\u2581';
const SPECIAL_TOKENS = ['<unk>', '<s>', '</s>'] as const;
const UNK_ID = 0;
const BOS_ID = 1;
const EOS_ID = 2;
/** llama2.c falls back to token byte + 3 and Hugging Face looks up `<0xXX>`: they must be the same token. */
const BYTE_FALLBACK_OFFSET = 3;
/** run.c only merges pairs scoring strictly above -1e10 (as a float). */
const MERGE_SCORE_FLOOR = Math.fround(-1e10);

export type JsonObject = Record<string, unknown>;

export interface TokenizerConfigOptions {
  /** The model's context length, written as model_max_length. */
  modelMaxLength?: number;
}

export interface WriteTokenizerOptions extends TokenizerConfigOptions {
  /** The model's vocabulary size: tokenizer.bin must hold exactly this many tokens. */
  vocabSize?: number;
}

export interface WrittenTokenizerFiles {
  tokenizerJson: string;
  tokenizerConfig: string;
}

function bytePieceName(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}

function addedToken(id: number): JsonObject {
  return {
    id,
    content: SPECIAL_TOKENS[id],
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  };
}

/** Pieces as text (UTF-8 checked), in llama2.c's spelling, with the three control tokens named as in HF. */
function pieceTexts(vocab: Llama2cVocab, source: string): string[] {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  return vocab.pieces.map((bytes, id) => {
    if (id < SPECIAL_TOKENS.length) return SPECIAL_TOKENS[id];
    try {
      return decoder.decode(bytes);
    } catch {
      throw dataError(
        source,
        `token ${id} is not valid UTF-8 (${Buffer.from(bytes).toString('hex')}): tokenizer.json cannot hold it`,
      );
    }
  });
}

function checkByteFallback(texts: string[], source: string): void {
  const end = Math.min(texts.length, BYTE_FALLBACK_OFFSET + 256);
  for (let id = BYTE_FALLBACK_OFFSET; id < end; id++) {
    const expected = bytePieceName(id - BYTE_FALLBACK_OFFSET);
    if (texts[id] !== expected) {
      throw dataError(
        source,
        `token ${id} is ${JSON.stringify(texts[id])}, not the byte-fallback token ${expected}: llama2.c falls ` +
          'back to byte + 3, Hugging Face to the token by name, so this vocabulary cannot be converted faithfully',
      );
    }
  }
}

interface Merge {
  score: number;
  id: number;
  left: number;
  right: number;
}

/**
 * Every split of a mergeable piece into two pieces, ranked as llama2.c applies them: higher score of the result
 * first; ties (which llama2.c breaks by position) fall back to the result's id, then the parts' ids.
 */
function mergesByScore(texts: string[], scores: Float32Array): Merge[] {
  const idOf = new Map<string, number>();
  texts.forEach((t, id) => {
    if (id >= SPECIAL_TOKENS.length) idOf.set(t, id);
  });
  const merges: Merge[] = [];
  for (let id = SPECIAL_TOKENS.length; id < texts.length; id++) {
    const score = scores[id];
    if (!(score > MERGE_SCORE_FLOOR)) continue;
    const chars = Array.from(texts[id]);
    let prefix = '';
    for (let k = 1; k < chars.length; k++) {
      prefix += chars[k - 1];
      const left = idOf.get(prefix);
      if (left === undefined) continue;
      const right = idOf.get(texts[id].slice(prefix.length));
      if (right !== undefined) merges.push({ score, id, left, right });
    }
  }
  merges.sort((a, b) => b.score - a.score || a.id - b.id || a.left - b.left || a.right - b.right);
  return merges;
}

/**
 * The tokenizer.json equivalent to a llama2.c vocabulary: encoding text gives llama2.c's `encode(text, bos)`
 * ids (BOS through the post-processor), decoding gives its text. `source` names the file in errors.
 *
 * Known differences, inherent in the format: literal "<unk>", "<s>", "</s>" in text become those special tokens
 * (llama2.c spells them out); a literal '▁' in text encodes as a space (llama2.c byte-falls back); ties in
 * score are broken by rank instead of position (see the file comment).
 */
export function llama2cToTokenizerJson(vocab: Llama2cVocab, source = 'tokenizer.bin'): JsonObject {
  const texts = pieceTexts(vocab, source);
  checkByteFallback(texts, source);
  // HF spells spaces '▁'; byte-fallback pieces and control tokens hold none.
  const hfTexts = texts.map((t) => t.replaceAll(' ', SPACE_MARKER));
  const seen = new Map<string, number>();
  hfTexts.forEach((t, id) => {
    const first = seen.get(t);
    if (first !== undefined) {
      throw dataError(
        source,
        `tokens ${first} and ${id} are both ${JSON.stringify(t)} in tokenizer.json's spelling: ` +
          'its vocabulary maps each piece to one id',
      );
    }
    seen.set(t, id);
  });

  const merges = mergesByScore(texts, vocab.scores).map((m) => `${hfTexts[m.left]} ${hfTexts[m.right]}`);
  const bos = SPECIAL_TOKENS[BOS_ID];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [UNK_ID, BOS_ID, EOS_ID].map(addedToken),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPACE_MARKER },
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE_MARKER },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: bos, type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: bos, type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [bos]: { id: bos, ids: [BOS_ID], tokens: [bos] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE_MARKER }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: SPECIAL_TOKENS[UNK_ID],
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      // fromEntries defines own properties, so even a piece spelled "__proto__" is an ordinary key.
      vocab: Object.fromEntries(hfTexts.map((t, id) => [t, id])),
      merges,
    },
  };
}

/** tokenizer_config.json for a converted llama2.c tokenizer: BOS added, EOS not, text decoded verbatim. */
export function llama2cTokenizerConfig(opts: TokenizerConfigOptions = {}): JsonObject {
  const config: JsonObject = {
    tokenizer_class: 'LlamaTokenizer',
    add_bos_token: true,
    add_eos_token: false,
    bos_token: SPECIAL_TOKENS[BOS_ID],
    eos_token: SPECIAL_TOKENS[EOS_ID],
    unk_token: SPECIAL_TOKENS[UNK_ID],
    pad_token: null,
    // Otherwise decoders "clean up" spaces before punctuation, which llama2.c does not.
    clean_up_tokenization_spaces: false,
    // Keep the Prepend/Replace normalizer (transformers.js swaps in a Metaspace pre-tokenizer otherwise).
    legacy: true,
    added_tokens_decoder: Object.fromEntries(
      [UNK_ID, BOS_ID, EOS_ID].map((id) => {
        const { id: _, ...rest } = addedToken(id);
        return [String(id), rest];
      }),
    ),
  };
  if (opts.modelMaxLength !== undefined) config.model_max_length = opts.modelMaxLength;
  return config;
}

/** Convert `binPath` and write `tokenizer.json` and `tokenizer_config.json` into `dir` (created if needed). */
export async function writeTokenizerFiles(
  dir: string,
  binPath: string,
  opts: WriteTokenizerOptions = {},
): Promise<WrittenTokenizerFiles> {
  let bytes: Buffer;
  try {
    bytes = await readFile(binPath);
  } catch (err) {
    throw fileError(binPath, `cannot read tokenizer: ${(err as Error).message}`, err);
  }
  const json = llama2cToTokenizerJson(parseLlama2cVocab(bytes, binPath, opts.vocabSize), binPath);
  try {
    await makeDirectory(dir);
  } catch (err) {
    throw fileError(dir, `cannot create folder: ${describeFsError(err)}`, err);
  }
  const tokenizerJson = join(dir, 'tokenizer.json');
  const tokenizerConfig = join(dir, 'tokenizer_config.json');
  await writeJsonAtomic(tokenizerJson, json);
  await writeJsonAtomic(tokenizerConfig, llama2cTokenizerConfig(opts));
  return { tokenizerJson, tokenizerConfig };
}
