import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { specialTokens } from '../tokenizer/helpers.js';
import { writeRandomEncoder } from './encoders.js';

/** BERT's special tokens, at ids 0 to 4. */
const SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];

/**
 * A BERT-style WordPiece tokenizer.json for random encoders: [PAD] [UNK] [CLS] [SEP] [MASK], the given whole
 * words, then every lowercase letter and its ## continuation, so any lowercase ASCII text encodes (letter by
 * letter where no word matches). BertNormalizer lowercases; the template adds [CLS] … [SEP] (… B [SEP] for pairs,
 * type id 1).
 */
export function wordPieceTokenizerJson(words: readonly string[]): {
  json: Record<string, unknown>;
  size: number;
} {
  const vocab: Record<string, number> = {};
  for (const t of [...SPECIALS, ...words]) vocab[t] = Object.keys(vocab).length;
  for (let c = 97; c <= 122; c++) {
    const ch = String.fromCharCode(c);
    if (!(ch in vocab)) vocab[ch] = Object.keys(vocab).length;
    vocab[`##${ch}`] = Object.keys(vocab).length;
  }
  return { json: bertTokenizerJson(vocab), size: Object.keys(vocab).length };
}

/**
 * A BERT tokenizer.json over `vocab`, whose first five ids are [PAD] [UNK] [CLS] [SEP] [MASK]: BertNormalizer
 * (lowercasing), BertPreTokenizer, the [CLS] … [SEP] template (… B [SEP] for pairs, type id 1) and WordPiece with
 * the ## prefix; the tokenizer and export tests write it as is over vocabularies of their own.
 */
export function bertTokenizerJson(vocab: Record<string, number>): Record<string, unknown> {
  const special = (id: string, type: number) => ({ SpecialToken: { id, type_id: type } });
  const seq = (id: 'A' | 'B', type: number) => ({ Sequence: { id, type_id: type } });
  return {
    version: '1.0',
    added_tokens: specialTokens(SPECIALS.map((content, id): [string, number] => [content, id])),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [special('[CLS]', 0), seq('A', 0), special('[SEP]', 0)],
      pair: [special('[CLS]', 0), seq('A', 0), special('[SEP]', 0), seq('B', 1), special('[SEP]', 1)],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [2], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [3], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

/**
 * The small random DistilBERT classifier the label-metric tests search (3 labels, hidden 16, 4 heads, 2 layers,
 * 32 positions, seed 8) written at `root`/`name` with wordPieceTokenizerJson(`words`) as its tokenizer.json;
 * returns its folder.
 */
export async function writeWordPieceClassifier(
  root: string,
  name: string,
  words: readonly string[],
): Promise<string> {
  const tok = wordPieceTokenizerJson(words);
  const m = await writeRandomEncoder(root, name, {
    modelType: 'distilbert',
    labels: 3,
    vocab: tok.size,
    maxPositions: 32,
    hidden: 16,
    heads: 4,
    layers: 2,
    seed: 8,
  });
  writeFileSync(join(m.dir, 'tokenizer.json'), JSON.stringify(tok.json));
  return m.dir;
}
