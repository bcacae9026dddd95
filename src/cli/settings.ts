/**
 * Flags that set a run's settings, for every search command (heads, weights): a table of (commander attribute,
 * flag, setting, parser), the flags' parsed values, and the settings the user typed — what `--resume` compares
 * with the run's own. Values are parsed and range-checked here; defaults and cross-checks are the library's.
 */
import { type Command, Option } from 'commander';
import { checkPromptTemplate, flagError } from '../index.js';
import {
  parseByteSize,
  parseComputeDtype,
  parseDevice,
  parseFloatFlag,
  parseIntFlag,
  parseThreadsFlag,
} from './options.js';
import type { ProgressLine } from './progress.js';

export type Flags = Record<string, string | boolean | undefined>;

export function share(flag: string, v: string): number {
  const x = parseFloatFlag(flag, v, 0);
  if (x > 1) throw flagError(flag, `must be a share between 0 and 1, got ${v}`);
  return x;
}

export function oneOf<T extends string>(flag: string, v: string, options: readonly T[]): T {
  if (!(options as readonly string[]).includes(v))
    throw flagError(flag, `"${v}" is not one of ${options.join(', ')}`);
  return v as T;
}

export type Parse = (flag: string, v: string) => unknown;
export const int =
  (min = 1): Parse =>
  (flag, v) =>
    parseIntFlag(flag, v, min);
export const float: Parse = (flag, v) => parseFloatFlag(flag, v);
export const text: Parse = (_flag, v) => v;
export const choice =
  (options: readonly string[]): Parse =>
  (flag, v) =>
    oneOf(flag, v, options);

/** commander's attribute name, the flag, the setting it sets, its parser. */
export type SettingFlag<K extends string> = [string, string, K, Parse];

/** The data flags of the search commands: the model, its tokenizer, the calibration and the evaluation data. */
export const DATA_SETTING_FLAGS: ReadonlyArray<SettingFlag<'model' | 'tokenizer' | 'calib' | 'eval'>> = [
  ['model', '--model', 'model', text],
  ['tokenizer', '--tokenizer', 'tokenizer', text],
  ['calib', '--calib', 'calib', text],
  ['eval', '--eval', 'eval', text],
];

/** The context, token counts, multi-fidelity, GA loop and engine flags the head and structured searches share. */
export const GA_SETTING_FLAGS: ReadonlyArray<
  SettingFlag<
    | 'context'
    | 'calibTokens'
    | 'lowTokens'
    | 'promote'
    | 'evalTokens'
    | 'population'
    | 'generations'
    | 'tournament'
    | 'crossoverRate'
    | 'elitism'
    | 'seed'
    | 'batchSize'
    | 'dtype'
  >
> = [
  ['ctx', '--ctx', 'context', int()],
  ['calibTokens', '--calib-tokens', 'calibTokens', int()],
  ['lowTokens', '--low-tokens', 'lowTokens', int()],
  ['promote', '--promote', 'promote', int(0)],
  ['evalTokens', '--eval-tokens', 'evalTokens', int()],
  ['population', '--population', 'population', int(2)],
  ['generations', '--generations', 'generations', int()],
  ['tournament', '--tournament', 'tournament', int()],
  ['crossoverRate', '--crossover-rate', 'crossoverRate', share],
  ['elitism', '--elitism', 'elitism', int(0)],
  ['seed', '--seed', 'seed', int(0)],
  ['batchSize', '--batch-size', 'batchSize', int()],
  ['dtype', '--dtype', 'dtype', (_flag, v) => parseComputeDtype(v)],
];

/** The flags' own values, parsed, for the flags present in `f` (no defaults, no cross-checks). */
export function parsedSettingFlags<K extends string>(
  table: ReadonlyArray<SettingFlag<K>>,
  f: Flags,
): Partial<Record<K, unknown>> {
  const out: Partial<Record<K, unknown>> = {};
  for (const [attr, flag, key, parse] of table) {
    const v = f[attr];
    if (v === true) out[key] = true;
    else if (typeof v === 'string') out[key] = parse(flag, v);
  }
  return out;
}

/**
 * The setting flags the user typed (not defaults), parsed, then what a preset stands for (`preset`), then the
 * run-environment flags typed: what --resume compares with the run's own settings.
 */
export function typedSettings<K extends string>(
  table: ReadonlyArray<SettingFlag<K>>,
  f: Flags,
  cmd: Command,
  preset: ReadonlyArray<{ flag: string; key?: K; value: unknown }> = [],
): Array<{ flag: string; key?: K; value: unknown }> {
  const typed = (attr: string) => cmd.getOptionValueSource(attr) === 'cli';
  const parsed = parsedSettingFlags(table, f);
  const given: Array<{ flag: string; key?: K; value: unknown }> = [];
  for (const [attr, flag, key] of table) if (typed(attr)) given.push({ flag, key, value: parsed[key] });
  given.push(...preset);
  for (const attr of ['device', 'threads', 'workers', 'queue', 'quiet', 'json', 'out'])
    if (typed(attr)) given.push({ flag: `--${attr}`, value: f[attr] });
  return given;
}

export function formatSeconds(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  const whole = Math.round(sec);
  if (whole < 90) return `${whole}s`;
  // From whole seconds, so 119.6 s reads 2m00s, not 1m60s.
  if (whole < 5400) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${(sec / 3600).toFixed(1)}h`;
}

/**
 * Where and how visibly a run works, from its flags: device, threads, memory budget, and the lines it shows
 * on stderr (notes always, status lines unless quiet), each ending the progress line first.
 */
export function runEnvFromFlags(f: Flags, progress: ProgressLine, quiet: boolean) {
  return {
    device: parseDevice(String(f.device)),
    threads: typeof f.threads === 'string' ? parseThreadsFlag(f.threads) : undefined,
    memoryBudget:
      typeof f.memoryBudget === 'string' ? parseByteSize('--memory-budget', f.memoryBudget) : undefined,
    onNote: (line: string) => {
      progress.done();
      process.stderr.write(`note: ${line}\n`);
    },
    onStatus: (line: string) => {
      if (!quiet) {
        progress.done();
        process.stderr.write(`${line}\n`);
      }
    },
  };
}

/** `--prompt-template`: a template with `{text}` and no other field (one line otherwise). */
export const promptTemplate: Parse = (_flag, v) => {
  checkPromptTemplate(v);
  return v;
};

/** The generation-task flags of a run (heads and weights alike): runs/tasks.ts. */
export const TASK_SETTING_FLAGS: ReadonlyArray<
  SettingFlag<
    | 'calibTask'
    | 'calibItems'
    | 'calibNewTokens'
    | 'bleu'
    | 'evalTask'
    | 'evalItems'
    | 'evalNewTokens'
    | 'promptTemplate'
    | 'allowCodeExecution'
    | 'execWorkers'
  >
> = [
  ['calibTask', '--calib-task', 'calibTask', text],
  ['calibItems', '--calib-items', 'calibItems', int()],
  ['calibNewTokens', '--calib-new-tokens', 'calibNewTokens', int()],
  ['bleu', '--bleu', 'bleu', choice(['corpus', 'sentence-mean'])],
  ['evalTask', '--eval-task', 'evalTask', text],
  ['evalItems', '--eval-items', 'evalItems', int()],
  ['evalNewTokens', '--eval-new-tokens', 'evalNewTokens', int()],
  ['promptTemplate', '--prompt-template', 'promptTemplate', promptTemplate],
  ['allowCodeExecution', '--allow-code-execution', 'allowCodeExecution', text],
  ['execWorkers', '--exec-workers', 'execWorkers', int()],
];

/** Their options, defined once so heads and weights read the same. */
export const taskOptions = {
  calibTask: () =>
    new Option(
      '--calib-task <file>',
      '--metric bleu: calibration generation task, JSONL {"prompt","reference"} (default: story continuations built from the --calib pages)',
    ),
  calibItems: () =>
    new Option(
      '--calib-items <n>',
      '--metric bleu or mc-accuracy: calibration task items per evaluation (default: bleu 32, mc-accuracy all)',
    ),
  calibNewTokens: () =>
    new Option('--calib-new-tokens <n>', '--metric bleu: new tokens per calibration prompt (default 32)'),
  bleu: () =>
    new Option(
      '--bleu <kind>',
      "--metric bleu: the BLEU searched on: corpus (sacreBLEU's, default) or sentence-mean (the GenePrune code's mean of NLTK sentence BLEU)",
    ),
  evalTask: () =>
    new Option(
      '--eval-task <file|auto>',
      'also report dense and pruned BLEU on this evaluation task (auto: story continuations built from the --eval pages)',
    ),
  evalItems: () => new Option('--eval-items <n>', 'evaluation task items scored (default: all)'),
  evalNewTokens: () => new Option('--eval-new-tokens <n>', 'new tokens per evaluation prompt (default 64)'),
  promptTemplate: () => promptTemplateOption(),
  allowCodeExecution: () => allowCodeExecutionOption(),
  execWorkers: () => execWorkersOption(),
};

/** `--prompt-template`, the same words on eval, heads and weights. */
export const promptTemplateOption = () =>
  new Option(
    '--prompt-template <t>',
    "the text each task prompt is built from, {text} standing for the item's prompt (text, source) (default: {text})",
  );

/** `--allow-code-execution`, the same words on eval, heads and weights. */
export const allowCodeExecutionOption = () =>
  new Option(
    '--allow-code-execution',
    "run the code the model generates against each task item's tests (pass@1: --metric pass@1, and reported on the task); untrusted code, see the README on what is isolated",
  );

/** `--exec-workers`, the same words on eval, heads and weights. */
export const execWorkersOption = () =>
  new Option(
    '--exec-workers <n>',
    'with --allow-code-execution: generated programs run at once (default: 4, or fewer CPUs)',
  );

/** The multiple-choice flags of a run (heads and weights alike): runs/choices.ts. */
export const CHOICE_SETTING_FLAGS: ReadonlyArray<SettingFlag<'calibChoices' | 'choiceNorm' | 'evalChoices'>> =
  [
    ['calibChoices', '--calib-choices', 'calibChoices', text],
    ['choiceNorm', '--choice-norm', 'choiceNorm', choice(['none', 'chars'])],
    ['evalChoices', '--eval-choices', 'evalChoices', text],
  ];

/** Their options, defined once so heads and weights read the same. */
export const choiceOptions = {
  calibChoices: () =>
    new Option(
      '--calib-choices <file>',
      '--metric mc-accuracy: calibration multiple-choice file, JSONL {"context","choices","label"} (required there; --calib-items and --low-items count its items, default all)',
    ),
  choiceNorm: () =>
    new Option(
      '--choice-norm <kind>',
      '--metric mc-accuracy: none (summed log-likelihood, acc; default) or chars (log-likelihood per character of the choice, acc_norm)',
    ),
  evalChoices: () =>
    new Option(
      '--eval-choices <file>',
      'also report dense and pruned multiple-choice accuracy (acc and acc_norm) on this JSONL file',
    ),
};
