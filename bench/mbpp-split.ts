/**
 * Writes the MBPP splits by task_id (as ../shared/data/mbpp/README.md states them: prompt 1–10, test 11–510,
 * validation 511–600, train 601–974) as task files geneprune reads: each line the original MBPP row, unchanged.
 * A search calibrates on the validation split and reports on the test split.
 *
 *   npm run mbpp:split [-- --mbpp ../shared/data/mbpp/mbpp.jsonl --out data/mbpp]
 *
 * Writes OUT/{prompt,test,validation,train}.jsonl; refuses a file that is not the 974-problem MBPP (a task_id
 * missing, repeated or outside 1–974).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    mbpp: { type: 'string', default: resolve('..', 'shared', 'data', 'mbpp', 'mbpp.jsonl') },
    out: { type: 'string', default: 'data/mbpp' },
  },
});

const SPLITS: Array<[string, number, number]> = [
  ['prompt', 1, 10],
  ['test', 11, 510],
  ['validation', 511, 600],
  ['train', 601, 974],
];

function fail(message: string): never {
  process.stderr.write(`mbpp-split: ${values.mbpp}: ${message}\n`);
  process.exit(1);
}

let text: string;
try {
  text = readFileSync(values.mbpp, 'utf8');
} catch (e) {
  fail(`cannot read (${(e as NodeJS.ErrnoException).code ?? e})`);
}
const lines = text.split('\n').filter((l) => l.trim() !== '');
const byId = new Map<number, string>();
for (const [i, line] of lines.entries()) {
  let id: unknown;
  try {
    id = (JSON.parse(line) as { task_id?: unknown }).task_id;
  } catch {
    fail(`line ${i + 1} is not JSON`);
  }
  if (!Number.isInteger(id) || (id as number) < 1 || (id as number) > 974) {
    fail(`line ${i + 1}: task_id ${JSON.stringify(id)} is not one of MBPP's 1–974`);
  }
  if (byId.has(id as number)) fail(`task_id ${id} appears twice`);
  byId.set(id as number, line);
}
if (byId.size !== 974) fail(`${byId.size} problems, not MBPP's 974`);
mkdirSync(values.out, { recursive: true });
for (const [name, from, to] of SPLITS) {
  const rows: string[] = [];
  for (let id = from; id <= to; id++) rows.push(byId.get(id)!);
  const file = join(values.out, `${name}.jsonl`);
  writeFileSync(file, `${rows.join('\n')}\n`);
  process.stdout.write(`${file}: task_ids ${from}–${to}, ${rows.length} problems\n`);
}
