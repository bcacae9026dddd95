/**
 * Hugging Face `tokenizer.json` (+ `tokenizer_config.json` beside it when present) through
 * @huggingface/tokenizers. The config supplies the BOS/EOS tokens and the add_bos/add_eos defaults.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { dataError, fileError, GenepruneError } from '../errors.js';
import { describeFsError, refuseSpecialFile } from '../util/fs.js';
import { longestFirstLengths, textBudget } from './input.js';
import type { EncodeInputOptions, EncodeOptions, ModelInput, Tokenizer } from './types.js';

type JsonObject = Record<string, unknown>;

function isObject(x: unknown): x is JsonObject {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

export async function readJsonObject(path: string, what: string): Promise<JsonObject> {
  await refuseSpecialFile(path, what);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw fileError(
      path,
      code === 'ENOENT' ? `${what} not found` : `cannot read ${what}: ${describeFsError(err)}`,
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

const isId = (x: unknown): boolean => Number.isInteger(x) && (x as number) >= 0;
const quote = (x: unknown): string => JSON.stringify(x)?.slice(0, 40) ?? String(x);

/** A token → id object: the first entry whose id is not a non-negative integer, as text; undefined if none. */
function badVocabEntry(vocab: JsonObject): string | undefined {
  for (const [token, id] of Object.entries(vocab)) if (!isId(id)) return `${quote(token)} has ${quote(id)}`;
  return undefined;
}

/**
 * What is wrong with the fields of the tokenizer.json `model` that the library reads without checking (it would
 * fail with a bare TypeError, or build a tokenizer that silently gives other ids); undefined when they are sound.
 * The kind is the declared `type`, else guessed as the library guesses it.
 */
function modelProblem(model: JsonObject): string | undefined {
  const vocab = model.vocab;
  const kind =
    model.type ?? (Array.isArray(vocab) ? 'Unigram' : Object.hasOwn(model, 'merges') ? 'BPE' : 'WordPiece');
  if (kind === 'Unigram') {
    if (!Array.isArray(vocab) || vocab.length === 0)
      return '"model.vocab" must be a non-empty list of [token, score] pairs';
    const bad = vocab.findIndex(
      (e) =>
        !Array.isArray(e) || typeof e[0] !== 'string' || typeof e[1] !== 'number' || !Number.isFinite(e[1]),
    );
    if (bad >= 0) return `"model.vocab" entry ${bad} is ${quote(vocab[bad])}, not a [token, score] pair`;
    if (
      model.unk_id !== undefined &&
      model.unk_id !== null &&
      !(isId(model.unk_id) && (model.unk_id as number) < vocab.length)
    )
      return `"model.unk_id" ${quote(model.unk_id)} is not an index into "model.vocab" (0..${vocab.length - 1})`;
    return undefined;
  }
  if (!isObject(vocab)) return '"model.vocab" must be an object mapping each token to its id';
  const badEntry = badVocabEntry(vocab);
  if (badEntry) return `"model.vocab" must map each token to a non-negative integer id (${badEntry})`;
  if (model.unk_token !== undefined && model.unk_token !== null && typeof model.unk_token !== 'string')
    return `"model.unk_token" must be a string, not ${quote(model.unk_token)}`;
  if (kind !== 'BPE') return undefined;
  const merges = model.merges;
  if (!Array.isArray(merges)) return '"model.merges" must be a list';
  // Either every merge is "a b" or every merge is ["a", "b"]: the library picks one form from the first.
  const pairs = Array.isArray(merges[0]);
  const bad = merges.findIndex((m) =>
    pairs
      ? !Array.isArray(m) || m.length !== 2 || typeof m[0] !== 'string' || typeof m[1] !== 'string'
      : typeof m !== 'string' || !m.includes(' '),
  );
  if (bad >= 0) {
    const form = pairs ? 'a pair ["a", "b"] (the form of entry 0)' : 'a string "a b"';
    return `"model.merges" entry ${bad} is ${quote(merges[bad])}, not ${form}`;
  }
  return undefined;
}

/** The first malformed entry of "added_tokens" (each needs a string content and a non-negative integer id). */
function addedTokensProblem(added: unknown[]): string | undefined {
  const bad = added.findIndex((t) => !isObject(t) || typeof t.content !== 'string' || !isId(t.id));
  if (bad < 0) return undefined;
  return `"added_tokens" entry ${bad} is ${quote(added[bad])}, not {"id": non-negative integer, "content": string}`;
}

/** The sections of a tokenizer.json the library builds apart from its model, each of which may be null. */
const OPTIONAL_SECTIONS = ['normalizer', 'pre_tokenizer', 'post_processor', 'decoder'] as const;

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
  const problem = modelProblem(json.model) ?? addedTokensProblem((json.added_tokens as unknown[]) ?? []);
  if (problem) throw fileError(path, `not a valid tokenizer.json: ${problem}`);
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
  try {
    return hfTokenizer(new HfTokenizer(full, config), json, config, path, opts.vocabSize);
  } catch (err) {
    if (err instanceof GenepruneError) throw err;
    if (!(err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError))
      throw fileError(path, `not a usable tokenizer.json: ${(err as Error).message}`, err);
    // The library tripped over a shape it does not check: name the section, found by building without it in turn.
    const culprit = OPTIONAL_SECTIONS.find((key) => {
      try {
        hfTokenizer(new HfTokenizer({ ...full, [key]: null }, config), json, config, path);
        return true;
      } catch {
        return false;
      }
    });
    const where = culprit ? `its "${culprit}" section` : 'its "model" section';
    throw fileError(
      path,
      `not a usable tokenizer.json: ${where} is malformed (the tokenizers library cannot read it)`,
      err,
    );
  }
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
