/**
 * llama2.c's `tokenizer.bin`: int32 max_token_length, then per token float32 score, int32 byte length, bytes.
 * The token count is not stored; it comes from the model (or we read to end of file).
 *
 * Encoding and decoding follow run.c exactly (dummy-prefix space, per-codepoint lookup with UTF-8 byte
 * fallback at id byte+3, greedy highest-score pair merging with the leftmost pair winning ties). The merge loop
 * uses a heap over a linked list so long texts stay O(n log n) instead of run.c's O(n^2).
 */
import { readFile } from 'node:fs/promises';
import { dataError, fileError } from '../errors.js';
import { refuseSpecialFile } from '../util/fs.js';
import { textBudget } from './input.js';
import type { EncodeInputOptions, EncodeOptions, ModelInput, Tokenizer } from './types.js';

export const LLAMA2C_BOS_ID = 1;
export const LLAMA2C_EOS_ID = 2;
/** Byte b falls back to token id b + 3 (after <unk>, <s>, </s>). */
const BYTE_FALLBACK_OFFSET = 3;
/** Bound on max_token_length: real files use tens of bytes; this catches garbage headers. */
const MAX_PLAUSIBLE_TOKEN_LENGTH = 1 << 16;
/** run.c starts its best score at -1e10 (as a float) and only takes strictly better pairs. */
const MERGE_SCORE_FLOOR = Math.fround(-1e10);

export interface Llama2cVocab {
  maxTokenLength: number;
  /** Raw bytes of each piece. */
  pieces: Uint8Array[];
  scores: Float32Array;
}

/** Parse and validate a tokenizer.bin image. `source` names the file in errors. */
export function parseLlama2cVocab(bytes: Uint8Array, source: string, vocabSize?: number): Llama2cVocab {
  if (vocabSize !== undefined && (!Number.isInteger(vocabSize) || vocabSize < 3)) {
    throw dataError(source, `vocabulary size ${vocabSize} is not valid for a llama2.c tokenizer (need ≥ 3)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 4) {
    throw fileError(source, `too short to be a llama2.c tokenizer (${bytes.byteLength} bytes)`);
  }
  const maxTokenLength = view.getInt32(0, true);
  if (maxTokenLength <= 0 || maxTokenLength > MAX_PLAUSIBLE_TOKEN_LENGTH) {
    throw fileError(
      source,
      `max_token_length ${maxTokenLength} is not plausible: not a llama2.c tokenizer.bin?`,
    );
  }
  const pieces: Uint8Array[] = [];
  const scoreList: number[] = [];
  let off = 4;
  while (vocabSize === undefined ? off < bytes.byteLength : pieces.length < vocabSize) {
    const i = pieces.length;
    if (off + 8 > bytes.byteLength) {
      const expected = vocabSize === undefined ? '' : ` (the model's vocabulary has ${vocabSize})`;
      throw fileError(source, `truncated: ends inside token ${i} after ${i} complete tokens${expected}`);
    }
    const score = view.getFloat32(off, true);
    const len = view.getInt32(off + 4, true);
    if (len < 0 || len > maxTokenLength) {
      throw fileError(
        source,
        `token ${i} has length ${len} (max_token_length is ${maxTokenLength}): corrupt file`,
      );
    }
    off += 8;
    if (off + len > bytes.byteLength) {
      throw fileError(source, `truncated: token ${i} needs ${len} bytes, ${bytes.byteLength - off} left`);
    }
    pieces.push(bytes.subarray(off, off + len));
    scoreList.push(score);
    off += len;
  }
  if (off < bytes.byteLength) {
    throw fileError(
      source,
      `has ${bytes.byteLength - off} bytes left after the ${vocabSize} tokens of the model's vocabulary: ` +
        'more tokens than the model has (wrong tokenizer for this model?)',
    );
  }
  if (pieces.length < 3) {
    throw fileError(
      source,
      `holds ${pieces.length} tokens; a llama2.c tokenizer has at least <unk>, <s>, </s>`,
    );
  }
  return { maxTokenLength, pieces, scores: Float32Array.from(scoreList) };
}

/** Read a tokenizer.bin. `vocabSize` (from the model) is checked against the file's token count. */
export async function loadLlama2cTokenizer(
  path: string,
  opts: { vocabSize?: number } = {},
): Promise<Tokenizer> {
  await refuseSpecialFile(path, 'tokenizer');
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw fileError(path, `cannot read tokenizer: ${(err as Error).message}`, err);
  }
  return llama2cTokenizer(parseLlama2cVocab(bytes, path, opts.vocabSize), path);
}

/** Pieces are keyed as latin1 strings (one char per byte) so concatenation is bytewise, as in run.c. */
function bytesKey(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/** UTF-8 bytes of one code point, as a latin1 key. */
function codePointKey(cp: number): string {
  if (cp < 0x80) return String.fromCharCode(cp);
  if (cp < 0x800) return String.fromCharCode(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
  if (cp >= 0xd800 && cp <= 0xdfff) return '\xef\xbf\xbd'; // lone surrogate: UTF-8 encoders write U+FFFD
  if (cp < 0x10000) {
    return String.fromCharCode(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return String.fromCharCode(
    0xf0 | (cp >> 18),
    0x80 | ((cp >> 12) & 0x3f),
    0x80 | ((cp >> 6) & 0x3f),
    0x80 | (cp & 0x3f),
  );
}

interface MergeCandidate {
  score: number;
  left: number;
  right: number;
  id: number;
  leftVersion: number;
  rightVersion: number;
}

/** Heap order: higher score first; on equal scores the leftmost pair (run.c scans left to right, strict >). */
function before(a: MergeCandidate, b: MergeCandidate): boolean {
  return a.score > b.score || (a.score === b.score && a.left < b.left);
}

function heapPush(heap: MergeCandidate[], c: MergeCandidate): void {
  let i = heap.length;
  heap.push(c);
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(heap[i], heap[parent])) break;
    [heap[i], heap[parent]] = [heap[parent], heap[i]];
    i = parent;
  }
}

function heapPop(heap: MergeCandidate[]): MergeCandidate | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length === 0 || last === undefined) return top;
  heap[0] = last;
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let best = i;
    if (l < heap.length && before(heap[l], heap[best])) best = l;
    if (r < heap.length && before(heap[r], heap[best])) best = r;
    if (best === i) break;
    [heap[i], heap[best]] = [heap[best], heap[i]];
    i = best;
  }
  return top;
}

/** Build the Tokenizer over a parsed vocabulary. */
export function llama2cTokenizer(vocab: Llama2cVocab, source: string): Tokenizer {
  const vocabSize = vocab.pieces.length;
  const keys = vocab.pieces.map(bytesKey);
  const idOf = new Map<string, number>();
  // First id wins on duplicate pieces (bsearch in run.c leaves this unspecified; sentencepiece has none).
  keys.forEach((k, id) => {
    if (!idOf.has(k)) idOf.set(k, id);
  });
  const { scores } = vocab;

  // Decoded bytes of each token, plain and with run.c's after-BOS leading-space strip.
  const byteToken = /^<0x([0-9A-Fa-f]{2})>$/;
  const plain: Uint8Array[] = vocab.pieces.map((p, id) => {
    const m = byteToken.exec(keys[id]);
    return m ? Uint8Array.of(Number.parseInt(m[1], 16)) : p;
  });
  const afterBos: Uint8Array[] = plain.map((p, id) => (vocab.pieces[id][0] === 0x20 ? p.subarray(1) : p));
  const empty = new Uint8Array(0);

  function pushCodePoint(out: number[], cp: number): void {
    const key = codePointKey(cp);
    const id = idOf.get(key);
    if (id !== undefined) {
      out.push(id);
      return;
    }
    for (let i = 0; i < key.length; i++) {
      const fallback = key.charCodeAt(i) + BYTE_FALLBACK_OFFSET;
      if (fallback >= vocabSize) {
        throw dataError(
          source,
          `cannot encode U+${cp.toString(16).toUpperCase().padStart(4, '0')}: not in the vocabulary and ` +
            `no byte-fallback token (vocabulary has ${vocabSize} tokens)`,
        );
      }
      out.push(fallback);
    }
  }

  function mergePairs(units: number[]): number[] {
    const n = units.length;
    const tok = Int32Array.from(units);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const version = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap: MergeCandidate[] = [];
    const consider = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const id = idOf.get(keys[tok[left]] + keys[tok[right]]);
      if (id === undefined || !(scores[id] > MERGE_SCORE_FLOOR)) return;
      heapPush(heap, {
        score: scores[id],
        left,
        right,
        id,
        leftVersion: version[left],
        rightVersion: version[right],
      });
    };
    for (let i = 0; i + 1 < n; i++) consider(i, i + 1);
    for (let c = heapPop(heap); c !== undefined; c = heapPop(heap)) {
      // Stale entries (either side merged since) are skipped; versions change on every merge.
      if (
        version[c.left] !== c.leftVersion ||
        version[c.right] !== c.rightVersion ||
        next[c.left] !== c.right
      ) {
        continue;
      }
      const { left, right } = c;
      tok[left] = c.id;
      version[left]++;
      version[right]++;
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      consider(prev[left], left);
      consider(left, next[left]);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(tok[i]);
    return out;
  }

  function encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (opts.bos) ids.push(LLAMA2C_BOS_ID);
    if (text.length > 0) {
      const units: number[] = [];
      pushCodePoint(units, 0x20); // sentencepiece's dummy prefix
      for (const ch of text) pushCodePoint(units, ch.codePointAt(0)!);
      for (const id of mergePairs(units)) ids.push(id);
    }
    if (opts.eos) ids.push(LLAMA2C_EOS_ID);
    return ids;
  }

  /** run.c's prompt convention, BOS then the text; llama2.c has no segment template for a second text. */
  function encodeInput(text: string, opts: EncodeInputOptions = {}): ModelInput {
    if (opts.pair !== undefined) {
      throw dataError(source, 'a llama2.c tokenizer has no template for text pairs: give one text');
    }
    const budget = textBudget(source, opts.maxLength, 1);
    const content = encode(text);
    const truncated = content.length > budget;
    const ids = [LLAMA2C_BOS_ID, ...(truncated ? content.slice(0, budget) : content)];
    return { ids, typeIds: new Array<number>(ids.length).fill(0), truncated };
  }

  function tokenBytes(prevId: number | undefined, id: number): Uint8Array {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw dataError(source, `token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
    }
    // <s> and </s> are control tokens: they mark documents, they carry no text.
    if (id === LLAMA2C_BOS_ID || id === LLAMA2C_EOS_ID) return empty;
    // run.c strips the dummy-prefix space after BOS; the start of a list counts as after BOS so that
    // decode(encode(x)) === x with or without BOS.
    return prevId === undefined || prevId === LLAMA2C_BOS_ID ? afterBos[id] : plain[id];
  }

  function decode(ids: number[]): string {
    const parts: Uint8Array[] = [];
    let prevId: number | undefined;
    for (const id of ids) {
      parts.push(tokenBytes(prevId, id));
      prevId = id;
    }
    return Buffer.concat(parts).toString('utf8');
  }

  function decodeToken(prevId: number | undefined, id: number): string {
    // A byte-fallback token alone may be part of a multi-byte character: it decodes to U+FFFD here.
    return Buffer.from(tokenBytes(prevId, id)).toString('utf8');
  }

  return {
    vocabSize,
    bosId: LLAMA2C_BOS_ID,
    eosId: LLAMA2C_EOS_ID,
    encode,
    encodeInput,
    decode,
    decodeToken,
    source,
  };
}
