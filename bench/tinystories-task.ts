/**
 * Writes the TinyStories continuation task (story openings → their real continuations) as JSONL
 * `{"prompt", "reference"}`, from the evaluation pages only (rules: src/metrics/storytask.ts).
 *
 *   npm run task:tinystories [-- --eval ../shared/data/tinystories/eval --out runs/tasks/tinystories-continuation.jsonl
 *                               --prompt-sentences 2 --reference-sentences 2]
 *
 * The file is written atomically (a temporary file renamed into place); the same pages give the same bytes.
 */
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { buildContinuationTask, GenepruneError, generationTaskJsonl } from '../src/index.js';
import { writeTextAtomic } from '../src/util/fs.js';

const { values } = parseArgs({
  options: {
    eval: { type: 'string', default: join(resolve('..', 'shared'), 'data/tinystories/eval') },
    out: { type: 'string', default: 'runs/tasks/tinystories-continuation.jsonl' },
    'prompt-sentences': { type: 'string', default: '2' },
    'reference-sentences': { type: 'string', default: '2' },
  },
});

try {
  const task = await buildContinuationTask(values.eval, {
    promptSentences: Number(values['prompt-sentences']),
    referenceSentences: Number(values['reference-sentences']),
  });
  mkdirSync(dirname(resolve(values.out)), { recursive: true });
  await writeTextAtomic(values.out, generationTaskJsonl(task));
  console.log(`${values.out}: ${task.items.length} items from ${values.eval}`);
} catch (e) {
  console.error(`task:tinystories: ${e instanceof GenepruneError ? e.oneLine() : e}`);
  process.exit(1);
}
