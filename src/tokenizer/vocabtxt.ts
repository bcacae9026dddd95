/**
 * BERT-family checkpoints that ship only `vocab.txt` (one WordPiece token per line, the id its line number) and
 * `tokenizer_config.json`, as many older Hugging Face repositories do: the equivalent tokenizer.json is built
 * here, as transformers' BertTokenizerFast conversion defines it — BertNormalizer (clean text, CJK characters
 * spaced, lowercase and accent stripping per `do_lower_case` / `strip_accents`), BertPreTokenizer, WordPiece with
 * `##` continuations and at most 100 characters per word, and the [CLS] A [SEP] (B [SEP]) template with type ids.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileError } from '../errors.js';
import { hfTokenizerFromJson, readJsonObject } from './hf.js';
import type { Tokenizer } from './types.js';

type JsonObject = Record<string, unknown>;

/** A special token's text from tokenizer_config.json (a string or an AddedToken object), or the default. */
function special(config: JsonObject, key: string, fallback: string): string {
  const v = config[key];
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as JsonObject).content === 'string') {
    return (v as JsonObject).content as string;
  }
  return fallback;
}

/** The tokenizer.json of a WordPiece `vocab.txt` with its tokenizer_config.json (`{}` when absent). */
export function wordPieceJsonFromVocab(text: string, config: JsonObject, path: string): JsonObject {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  const vocab: Record<string, number> = {};
  lines.forEach((line, i) => {
    const token = line.replace(/\r$/, '');
    // transformers keeps the first id of a repeated token.
    if (!Object.hasOwn(vocab, token)) vocab[token] = i;
  });
  if (lines.length === 0) throw fileError(path, 'vocab.txt is empty');
  const tokens = {
    unk: special(config, 'unk_token', '[UNK]'),
    cls: special(config, 'cls_token', '[CLS]'),
    sep: special(config, 'sep_token', '[SEP]'),
    pad: special(config, 'pad_token', '[PAD]'),
    mask: special(config, 'mask_token', '[MASK]'),
  };
  for (const key of ['unk', 'cls', 'sep'] as const) {
    if (!Object.hasOwn(vocab, tokens[key])) {
      throw fileError(
        path,
        `vocab.txt has no ${tokens[key]} token (${key}_token), which a BERT tokenizer needs`,
      );
    }
  }
  const lowercase = config.do_lower_case !== false;
  const stripAccents = typeof config.strip_accents === 'boolean' ? config.strip_accents : null;
  const added = Object.values(tokens)
    .filter((t, i, all) => Object.hasOwn(vocab, t) && all.indexOf(t) === i)
    .map((content) => ({
      id: vocab[content],
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    }))
    .sort((a, b) => a.id - b.id);
  const sp = (id: string, type: number) => ({ SpecialToken: { id, type_id: type } });
  const seq = (id: 'A' | 'B', type: number) => ({ Sequence: { id, type_id: type } });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: config.tokenize_chinese_chars !== false,
      strip_accents: stripAccents,
      lowercase,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [sp(tokens.cls, 0), seq('A', 0), sp(tokens.sep, 0)],
      pair: [sp(tokens.cls, 0), seq('A', 0), sp(tokens.sep, 0), seq('B', 1), sp(tokens.sep, 1)],
      special_tokens: {
        [tokens.cls]: { id: tokens.cls, ids: [vocab[tokens.cls]], tokens: [tokens.cls] },
        [tokens.sep]: { id: tokens.sep, ids: [vocab[tokens.sep]], tokens: [tokens.sep] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: tokens.unk,
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab,
    },
  };
}

/** Reads `vocab.txt` (+ tokenizer_config.json beside it) as the equivalent tokenizer.json. */
export async function readVocabTxt(path: string): Promise<{ json: JsonObject; config: JsonObject }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw fileError(path, `cannot read vocab.txt: ${(err as NodeJS.ErrnoException).code ?? err}`, err);
  }
  const text = bytes.toString('utf8');
  if (text.includes('\u0000') || text.includes('\ufffd'))
    throw fileError(path, 'vocab.txt is not UTF-8 text');
  const configPath = join(dirname(path), 'tokenizer_config.json');
  const config = existsSync(configPath) ? await readJsonObject(configPath, 'tokenizer_config.json') : {};
  return { json: wordPieceJsonFromVocab(text, config, path), config };
}

/** A WordPiece tokenizer from a BERT `vocab.txt`. */
export async function loadVocabTxtTokenizer(
  path: string,
  opts: { vocabSize?: number } = {},
): Promise<Tokenizer> {
  const { json } = await readVocabTxt(path);
  return hfTokenizerFromJson(json, path, opts);
}
