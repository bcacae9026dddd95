/**
 * The TinyStories continuation task: story openings → their real continuations, made from text pages whose
 * documents are separated by `<|endoftext|>` lines (the shared `tinystories/eval` pages; never the calibration
 * pages a search sees).
 *
 * Rules (deterministic, from the text alone):
 * - A document is a story opening only when a separator line precedes it in its file: a page's first document may
 *   start mid-story (pages are consecutive slices of the split), so it is never used.
 * - Sentences are whole ones only: text up to `.`, `!` or `?` (closing quotes and brackets included) followed by
 *   whitespace or the end; a fragment a page cuts off has no such end and is never used.
 * - prompt = the story's first `promptSentences` sentences, reference = the next `referenceSentences`, both as
 *   they stand in the text (line breaks kept); stories with fewer sentences are skipped. Files in name order,
 *   stories in file order, at most `maxItems`.
 */
import { readFile } from 'node:fs/promises';
import { dataError, fileError } from '../errors.js';
import { pushAll } from '../util/arrays.js';
import { dataFiles, firstNonTextByte } from './data.js';
import type { GenerationItem, GenerationTask } from './generation.js';

export interface ContinuationTaskOptions {
  /** Sentences of each story in the prompt (default 2). */
  promptSentences?: number;
  /** Sentences that follow them in the reference (default 2). */
  referenceSentences?: number;
  /** Items at most (default: every story opening). */
  maxItems?: number;
}

const SEPARATOR_LINE = /^<\|endoftext\|>[ \t]*$/m;
const SENTENCE = /\S[\s\S]*?[.!?]+["'”’)\]]*(?=\s|$)/g;

/** Whole sentences of `text` as [start, end) offsets. */
export function sentenceSpans(text: string): [number, number][] {
  const spans: [number, number][] = [];
  for (const m of text.matchAll(SENTENCE)) spans.push([m.index!, m.index! + m[0].length]);
  return spans;
}

/** The task items of one page's text (see the rules above). */
export function continuationItems(pageText: string, opts: ContinuationTaskOptions = {}): GenerationItem[] {
  const p = opts.promptSentences ?? 2;
  const r = opts.referenceSentences ?? 2;
  for (const [name, v] of [
    ['promptSentences', p],
    ['referenceSentences', r],
  ] as const) {
    if (!Number.isInteger(v) || v < 1) throw dataError(name, `must be a positive integer (got ${v})`);
  }
  const items: GenerationItem[] = [];
  // Everything before the first separator may start mid-story: dropped.
  const docs = pageText.replace(/\r\n?/g, '\n').split(SEPARATOR_LINE).slice(1);
  for (const raw of docs) {
    const doc = raw.trim();
    const spans = sentenceSpans(doc);
    if (spans.length < p + r) continue;
    items.push({
      prompt: doc.slice(spans[0][0], spans[p - 1][1]),
      references: [doc.slice(spans[p][0], spans[p + r - 1][1])],
    });
  }
  return items;
}

/** Builds the task from a data path (a page file or a folder of pages, read in name order). */
export async function buildContinuationTask(
  dataPath: string,
  opts: ContinuationTaskOptions = {},
): Promise<GenerationTask> {
  const items: GenerationItem[] = [];
  for (const file of await dataFiles(dataPath)) {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (e) {
      throw fileError(file, `cannot read data file (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
    if (firstNonTextByte(bytes) >= 0) throw fileError(file, 'not text (pages must be UTF-8 text)');
    pushAll(items, continuationItems(bytes.toString('utf8'), opts));
  }
  const max = opts.maxItems ?? items.length;
  if (items.length === 0) {
    throw dataError(
      dataPath,
      'no story openings found (documents after an <|endoftext|> line, with enough sentences)',
    );
  }
  return { source: dataPath, items: items.slice(0, max) };
}

/** JSONL text of a task (`{"prompt", "reference"}` per line; several references as an array). */
export function generationTaskJsonl(task: GenerationTask): string {
  return task.items
    .map((it) =>
      JSON.stringify({
        prompt: it.prompt,
        reference: it.references.length === 1 ? it.references[0] : it.references,
      }),
    )
    .map((line) => `${line}\n`)
    .join('');
}
