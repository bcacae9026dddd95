/**
 * Hugging Face `tokenizer.json` (+ `tokenizer_config.json` beside it when present) through
 * @huggingface/tokenizers. The config supplies the BOS/EOS tokens and the add_bos/add_eos defaults.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { dataError, fileError } from '../errors.js';
import { longestFirstLengths, textBudget } from './input.js';
import type { EncodeInputOptions, EncodeOptions, ModelInput, Tokenizer } from './types.js';

type JsonObject = Record<string, unknown>;

function isObject(x: unknown): x is JsonObject {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export async function readJsonObject(path: string, what: string): Promise<JsonObject> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw fileError(
      path,
      code === 'ENOENT' ? `${what} not found` : `cannot read ${what}: ${(err as Error).message}`,
      err,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw fileError(path, `${what} is not valid JSON: ${(err as Error).message}`, err);
  }
  if (!isObject(value)) throw fileError(path, `${what} must hold a JSON object`);
  return value;
}

/** tokenizer_config.json writes special tokens either as a string or as an AddedToken object. */
function tokenContent(x: unknown): string | undefined {
  if (typeof x === 'string') return x;
  if (isObject(x) && typeof x.content === 'string') return x.content;
  return undefined;
}

export interface HfTokenizerOptions {
  /** The model's vocabulary size: the tokenizer's ids must fit in it (models may pad it, so fewer is fine). */
  vocabSize?: number;
  /** tokenizer_config.json; default: beside the tokenizer.json, used when present. */
  configPath?: string;
}

/** The model types @huggingface/tokenizers 0.2 implements; it silently builds a pass-through for others. */
const SUPPORTED_MODEL_TYPES = ['BPE', 'WordPiece', 'Unigram'];

/** Load a tokenizer.json file. */
export async function loadHfTokenizer(path: string, opts: HfTokenizerOptions = {}): Promise<Tokenizer> {
  return hfTokenizerFromJson(await readJsonObject(path, 'tokenizer.json'), path, opts);
}

/** A tokenizer from a tokenizer.json object (read from `path`, or built from it: a BERT vocab.txt). */
export async function hfTokenizerFromJson(
  json: JsonObject,
  path: string,
  opts: HfTokenizerOptions = {},
): Promise<Tokenizer> {
  if (!isObject(json.model)) throw fileError(path, 'not a tokenizer.json: it has no "model" object');
  const modelType = json.model.type;
  if (modelType !== undefined && !SUPPORTED_MODEL_TYPES.includes(modelType as string)) {
    throw fileError(
      path,
      `tokenizer model type ${JSON.stringify(modelType)} is not supported (${SUPPORTED_MODEL_TYPES.join(', ')} are)`,
    );
  }
  if (modelType === 'Unigram' && json.model.byte_fallback === true) {
    // The library would give <unk> where the file's byte-fallback tokens belong: different ids, silently.
    throw fileError(
      path,
      'Unigram with byte_fallback is not supported (only BPE models may use byte fallback)',
    );
  }
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) {
    throw fileError(path, 'not a valid tokenizer.json: "added_tokens" must be a list');
  }
  const configPath = opts.configPath ?? join(dirname(path), 'tokenizer_config.json');
  // The config is optional unless the caller named it.
  const config: JsonObject =
    opts.configPath !== undefined || existsSync(configPath)
      ? await readJsonObject(configPath, 'tokenizer_config.json')
      : {};
  // The library reads these keys unconditionally; older files omit them.
  const full = {
    added_tokens: [],
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    ...json,
  };
  let hf: HfTokenizer;
  try {
    hf = new HfTokenizer(full, config);
  } catch (err) {
    throw fileError(path, `not a usable tokenizer.json: ${(err as Error).message}`, err);
  }
  return hfTokenizer(hf, json, config, path, opts.vocabSize);
}

/** Whether a post-processor (or one inside a Sequence) is RobertaProcessing. */
function hasRobertaProcessing(processor: unknown): boolean {
  if (!isObject(processor)) return false;
  if (processor.type === 'RobertaProcessing') return true;
  return Array.isArray(processor.processors) && processor.processors.some(hasRobertaProcessing);
}

/** Wrap a constructed @huggingface/tokenizers Tokenizer built from `json` (the tokenizer.json object). */
export function hfTokenizer(
  hf: HfTokenizer,
  json: JsonObject,
  config: JsonObject,
  source: string,
  modelVocabSize?: number,
): Tokenizer {
  let maxId = -1;
  for (const id of hf.get_vocab(true).values()) if (id > maxId) maxId = id;
  const vocabSize = maxId + 1;
  if (modelVocabSize !== undefined && vocabSize > modelVocabSize) {
    throw fileError(
      source,
      `tokenizer has ids up to ${maxId} but the model's vocabulary has ${modelVocabSize}: wrong tokenizer for this model?`,
    );
  }
  const idOfConfigToken = (key: string): number | undefined => {
    const content = tokenContent(config[key]);
    return content === undefined ? undefined : hf.token_to_id(content);
  };
  const bosId = idOfConfigToken('bos_token');
  const eosId = idOfConfigToken('eos_token');

  // What the tokenizer.json's post-processor does on its own, unless the config overrides it (as transformers
  // does for add_bos_token / add_eos_token).
  const probeRaw = hf.encode('a', { add_special_tokens: false }).ids;
  const probeFull = hf.encode('a', { add_special_tokens: true }).ids;
  const templateBos = bosId !== undefined && probeFull[0] === bosId && probeRaw[0] !== bosId;
  const templateEos = eosId !== undefined && probeFull.at(-1) === eosId && probeRaw.at(-1) !== eosId;
  const configBos = typeof config.add_bos_token === 'boolean' ? config.add_bos_token : undefined;
  const configEos = typeof config.add_eos_token === 'boolean' ? config.add_eos_token : undefined;

  function encode(text: string, opts: EncodeOptions = {}): number[] {
    if (
      opts.bos === undefined &&
      opts.eos === undefined &&
      configBos === undefined &&
      configEos === undefined
    ) {
      // The tokenizer's own template (also covers BERT-style [CLS] … [SEP]).
      return hf.encode(text, { add_special_tokens: true }).ids;
    }
    const ids = hf.encode(text, { add_special_tokens: false }).ids;
    if ((opts.bos ?? configBos ?? templateBos) && bosId !== undefined) ids.unshift(bosId);
    if ((opts.eos ?? configEos ?? templateEos) && eosId !== undefined) ids.push(eosId);
    return ids;
  }

  // tokenizer_config.json's pad_token, else tokenizer.json's padding section (its token, else its id).
  const padding = isObject(json.padding) ? json.padding : {};
  const paddingTokenId =
    typeof padding.pad_token === 'string' ? hf.token_to_id(padding.pad_token) : undefined;
  const paddingId =
    typeof padding.pad_id === 'number' && Number.isInteger(padding.pad_id) && padding.pad_id >= 0
      ? padding.pad_id
      : undefined;
  const padId =
    idOfConfigToken('pad_token') ??
    paddingTokenId ??
    (paddingId !== undefined && paddingId < vocabSize ? paddingId : undefined);

  // transformers rebuilds LLaMA/Gemma-style templates from add_bos_token/add_eos_token, as encode() does.
  const configTemplate = configBos !== undefined || configEos !== undefined;
  const addBos = (configBos ?? templateBos) && bosId !== undefined;
  const addEos = (configEos ?? templateEos) && eosId !== undefined;
  // RoBERTa's processor gives every token type 0 (its models have one token type); the library gives B type 1.
  const singleTokenType = hasRobertaProcessing(json.post_processor);
  const unkId = hf.model?.unk_token_id;

  const idOfToken = (token: string): number => {
    const id = hf.token_to_id(token) ?? unkId;
    if (id === undefined)
      throw dataError(source, `token ${JSON.stringify(token)} has no id and there is no unknown token`);
    return id;
  };

  /** The tokenizer's template around already-tokenized texts: the tokens in order and their type ids. */
  function applyTemplate(
    first: string[],
    second: string[] | undefined,
  ): { tokens: string[]; typeIds: number[] } {
    const fill = (n: number, typeId: number): number[] => new Array<number>(n).fill(typeId);
    if (configTemplate) {
      const bos = addBos ? [hf.id_to_token(bosId!)!] : [];
      const eos = addEos ? [hf.id_to_token(eosId!)!] : [];
      const a = [...bos, ...first, ...eos];
      const b = second === undefined ? [] : [...bos, ...second, ...eos];
      return { tokens: [...a, ...b], typeIds: [...fill(a.length, 0), ...fill(b.length, 1)] };
    }
    if (hf.post_processor === null) {
      const b = second ?? [];
      return { tokens: [...first, ...b], typeIds: [...fill(first.length, 0), ...fill(b.length, 1)] };
    }
    const out = hf.post_processor(first, second ?? null, true);
    // The ByteLevel processor hands the pair back unmerged; the library's own encode then drops it.
    const rest = out.tokens_pair ?? [];
    const tokens = [...out.tokens, ...rest];
    const head =
      out.token_type_ids?.length === out.tokens.length ? out.token_type_ids : fill(out.tokens.length, 0);
    const typeIds = [...head, ...fill(rest.length, 1)];
    return { tokens, typeIds: singleTokenType ? fill(tokens.length, 0) : typeIds };
  }

  function encodeInput(text: string, opts: EncodeInputOptions = {}): ModelInput {
    const { pair, maxLength } = opts;
    const specials = applyTemplate([], pair === undefined ? undefined : []).tokens.length;
    const budget = textBudget(source, maxLength, specials);
    const first = hf.tokenize(text);
    const second = pair === undefined ? undefined : hf.tokenize(pair);
    const [keepFirst, keepSecond] = longestFirstLengths(first.length, second?.length ?? 0, budget);
    const truncated = keepFirst < first.length || keepSecond < (second?.length ?? 0);
    const { tokens, typeIds } = applyTemplate(first.slice(0, keepFirst), second?.slice(0, keepSecond));
    return { ids: tokens.map(idOfToken), typeIds, truncated };
  }

  const checkId = (id: number): void => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw dataError(source, `token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
    }
  };
  const isControl = (id: number): boolean => id === bosId || id === eosId;

  function decode(ids: number[]): string {
    ids.forEach(checkId);
    // BOS/EOS mark documents and carry no text (as in the llama2.c tokenizer); the library rejects [].
    const text = ids.filter((id) => !isControl(id));
    return text.length === 0 ? '' : hf.decode(text);
  }

  function decodeToken(prev: number | undefined, id: number): string {
    checkId(id);
    if (isControl(id)) return '';
    if (prev === undefined || isControl(prev)) return hf.decode([id]);
    checkId(prev);
    // Decoders treat a sequence's first token specially (e.g. Metaspace drops its leading space), so take the
    // pair's text minus the previous token's.
    const before = hf.decode([prev]);
    const both = hf.decode([prev, id]);
    return both.startsWith(before) ? both.slice(before.length) : hf.decode([id]);
  }

  return { vocabSize, bosId, eosId, padId, encode, encodeInput, decode, decodeToken, source };
}
