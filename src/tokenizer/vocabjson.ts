/**
 * Byte-level BPE repositories that ship only `vocab.json` + `merges.txt` (+ tokenizer_config.json /
 * special_tokens_map.json), as CodeT5's and many RoBERTa/GPT-2-style ones do: the equivalent tokenizer.json is built
 * here the way transformers turns the slow RobertaTokenizer into a fast one — BPE over the ByteLevel pre-tokenizer
 * (GPT-2's regex, add_prefix_space from the config, default false), no unknown token (every byte has a symbol),
 * the ByteLevel decoder, RobertaProcessing (`<s> A </s>`, pairs `<s> A </s></s> B </s>`), and the special tokens
 * as added tokens that are never split (the mask token strips the space to its left, as RobertaTokenizer's does).
 *
 * merges.txt is read as the slow tokenizer reads it: its first line (the `#version` header) and its last line (empty
 * after the final newline) are dropped. A file whose first line is not a header would lose its first merge that way,
 * so it is refused rather than read differently from transformers.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileError } from '../errors.js';
import { describeFsError } from '../util/fs.js';
import { hfTokenizerFromJson, readJsonObject } from './hf.js';
import type { Tokenizer } from './types.js';

type JsonObject = Record<string, unknown>;

/** RobertaTokenizer's special tokens and their defaults, in the order transformers registers them. */
const SPECIALS = [
  ['bos_token', '<s>'],
  ['eos_token', '</s>'],
  ['unk_token', '<unk>'],
  ['sep_token', '</s>'],
  ['pad_token', '<pad>'],
  ['cls_token', '<s>'],
  ['mask_token', '<mask>'],
] as const;

/** A special token's text (a string or an AddedToken object), undefined when absent. */
function contentOf(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as JsonObject).content === 'string') {
    return (v as JsonObject).content as string;
  }
  return undefined;
}

async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw fileError(path, `cannot read ${what}: ${describeFsError(err)}`, err);
  }
}

/**
 * The tokenizer.json of a byte-level BPE `vocab.json` (token → id), its `merges.txt` text and its configuration
 * (tokenizer_config.json merged over special_tokens_map.json; `{}` when neither exists).
 */
export function byteLevelBpeJson(
  vocabJson: JsonObject,
  mergesText: string,
  config: JsonObject,
  paths: { vocab: string; merges: string },
): JsonObject {
  const vocab: Record<string, number> = {};
  for (const [token, id] of Object.entries(vocabJson)) {
    if (!Number.isInteger(id) || (id as number) < 0) {
      throw fileError(
        paths.vocab,
        `vocab.json maps ${JSON.stringify(token)} to ${JSON.stringify(id)}, not an id`,
      );
    }
    vocab[token] = id as number;
  }
  if (Object.keys(vocab).length === 0) throw fileError(paths.vocab, 'vocab.json is empty');

  const lines = mergesText.split('\n');
  if (!lines[0].startsWith('#')) {
    throw fileError(
      paths.merges,
      'merges.txt has no "#version" first line: transformers skips the first line, so its first merge would be lost',
    );
  }
  const merges: string[] = [];
  for (const [i, raw] of lines.slice(1, -1).entries()) {
    const parts = raw.trim().split(/\s+/);
    if (parts.length !== 2 || parts[0] === '') {
      throw fileError(
        paths.merges,
        `merges.txt line ${i + 2} is ${JSON.stringify(raw)}, not two symbols "a b"`,
      );
    }
    merges.push(`${parts[0]} ${parts[1]}`);
  }

  const text: Record<string, string> = {};
  for (const [key, fallback] of SPECIALS) text[key] = contentOf(config[key]) ?? fallback;
  const additional = Array.isArray(config.additional_special_tokens)
    ? config.additional_special_tokens.map(contentOf).filter((t): t is string => t !== undefined)
    : [];
  // tokenizer_config.json's added_tokens_decoder (newer transformers) states each added token's id and flags.
  const declared = new Map<string, JsonObject>();
  if (typeof config.added_tokens_decoder === 'object' && config.added_tokens_decoder !== null) {
    for (const [id, t] of Object.entries(config.added_tokens_decoder as JsonObject)) {
      const content = contentOf(t);
      if (content === undefined) continue;
      if (vocab[content] !== undefined && String(vocab[content]) !== id) {
        throw fileError(
          paths.vocab,
          `tokenizer_config.json gives ${JSON.stringify(content)} id ${id}, vocab.json ${vocab[content]}`,
        );
      }
      declared.set(content, { ...(t as JsonObject), id: Number(id) });
    }
  }
  const added: JsonObject[] = [];
  const seen = new Set<string>();
  for (const content of [...Object.values(text), ...additional, ...declared.keys()]) {
    if (seen.has(content)) continue;
    seen.add(content);
    const flags = declared.get(content);
    const id = vocab[content] ?? (flags?.id as number | undefined);
    if (id === undefined) {
      throw fileError(
        paths.vocab,
        `special token ${JSON.stringify(content)} has no id in vocab.json (transformers would append it; this reader does not)`,
      );
    }
    added.push({
      id,
      content,
      single_word: flags?.single_word === true,
      lstrip: typeof flags?.lstrip === 'boolean' ? flags.lstrip : content === text.mask_token,
      rstrip: flags?.rstrip === true,
      normalized: flags?.normalized === true,
      special: flags?.special !== false,
    });
    vocab[content] = id;
  }
  added.sort((a, b) => (a.id as number) - (b.id as number));
  const addPrefixSpace = config.add_prefix_space === true;
  const byteLevel = {
    type: 'ByteLevel',
    add_prefix_space: addPrefixSpace,
    trim_offsets: true,
    use_regex: true,
  };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: {
      type: 'RobertaProcessing',
      sep: [text.sep_token, vocab[text.sep_token]],
      cls: [text.cls_token, vocab[text.cls_token]],
      trim_offsets: true,
      add_prefix_space: addPrefixSpace,
    },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/** The configuration a slow tokenizer folder gives: special_tokens_map.json, overridden by tokenizer_config.json. */
async function folderConfig(dir: string): Promise<JsonObject> {
  let config: JsonObject = {};
  for (const name of ['special_tokens_map.json', 'tokenizer_config.json']) {
    const p = join(dir, name);
    if (existsSync(p)) config = { ...config, ...(await readJsonObject(p, name)) };
  }
  return config;
}

/** Reads `vocab.json` and the `merges.txt` beside it (+ configs) as the equivalent tokenizer.json. */
export async function readVocabJson(path: string): Promise<JsonObject> {
  const dir = dirname(path);
  const mergesPath = join(dir, 'merges.txt');
  if (!existsSync(mergesPath)) {
    throw fileError(path, 'vocab.json without merges.txt beside it: a byte-level BPE tokenizer needs both');
  }
  const vocab = await readJsonObject(path, 'vocab.json');
  const merges = await readText(mergesPath, 'merges.txt');
  return byteLevelBpeJson(vocab, merges, await folderConfig(dir), { vocab: path, merges: mergesPath });
}

/** A byte-level BPE tokenizer from `vocab.json` + `merges.txt`, as transformers' RobertaTokenizer builds it. */
export async function loadVocabJsonTokenizer(
  path: string,
  opts: { vocabSize?: number } = {},
): Promise<Tokenizer> {
  const json = await readVocabJson(path);
  return hfTokenizerFromJson(json, path, opts);
}
