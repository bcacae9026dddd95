/**
 * The CLI round trip every decoder family's test runs on a small random model with the TinyStories splits in
 * ../shared: a short head search, the export of its mask, and `eval` of the export, of the masked source and of
 * the dense source on the same evaluation tokens; and what the stories260K CLI tests share besides: the one JSON
 * line of a `--json` command (cliJson), the calibration and evaluation arguments (smallData), and stories260K
 * with its tokenizer and both splits (storiesArgs).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { CALIB, EVAL, MODEL, sharedPath, TOKENIZER } from '../shared.js';
import { type CliResult, runCli } from './cli.js';

/** The one JSON line a `--json` command printed, after checking it exited 0. */
export function cliJson<T = Record<string, unknown>>(r: CliResult): T {
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, r.stdout);
  return JSON.parse(lines[0]);
}

/** `--calib` and `--eval` from ../shared, `calibTokens` and `evalTokens` of them (1,024 of each unless given). */
export function smallData(calibTokens = 1024, evalTokens = 1024): string[] {
  return [
    '--calib',
    sharedPath(CALIB)!,
    '--eval',
    sharedPath(EVAL)!,
    '--calib-tokens',
    String(calibTokens),
    '--eval-tokens',
    String(evalTokens),
  ];
}

/** `--model`, `--tokenizer`, `--calib` and `--eval`: stories260K, its tokenizer and the TinyStories splits in ../shared. */
export function storiesArgs(): string[] {
  return [
    '--model',
    sharedPath(MODEL) ?? '',
    '--tokenizer',
    sharedPath(TOKENIZER) ?? '',
    '--calib',
    sharedPath(CALIB) ?? '',
    '--eval',
    sharedPath(EVAL) ?? '',
  ];
}

export interface HeadRoundTrip {
  /** The search's own evaluation perplexity. */
  searchEval: number;
  /** The exported (physically pruned) folder. */
  out: string;
  /** Perplexities on the first 1,024 evaluation tokens: the export, the source with the mask, the dense source. */
  pruned: number;
  masked: number;
  dense: number;
}

/** heads (GA, population 4, 2 generations, 25 %) → export → eval of the export, the masked and the dense model. */
export function headSearchExportEval(model: string, dir: string): HeadRoundTrip {
  const run = join(dir, 'heads');
  const search = cliJson<{ eval: { perplexity: number } }>(
    runCli(
      ['heads', '--model', model, ...smallData(), '--target-sparsity', '0.25', '--population', '4'].concat([
        '--generations',
        '2',
        '--out',
        run,
        '--json',
      ]),
      { timeout: 300_000 },
    ),
  );
  const out = join(dir, 'exported');
  const exported = runCli(['export', '--model', model, '--mask', join(run, 'mask.json'), '--out', out]);
  assert.equal(exported.code, 0, exported.stderr);
  const evalPpl = (args: string[]) =>
    cliJson<{ perplexity: number }>(
      runCli(['eval', ...args, '--data', sharedPath(EVAL)!, '--max-tokens', '1024', '--json']),
    ).perplexity;
  return {
    searchEval: search.eval.perplexity,
    out,
    pruned: evalPpl(['--model', out]),
    masked: evalPpl(['--model', model, '--mask', join(run, 'mask.json')]),
    dense: evalPpl(['--model', model]),
  };
}

/** What `weights --json` prints that the family tests read. */
export interface WeightsRun {
  prunableWeights: number;
  sparsity: { achieved: number };
  layers: { weights: number }[];
  eval: { perplexity: number; densePerplexity: number };
}

/** `weights` at sparsity 0.5 with `method` (and its `extra` flags) on the small data, written to `out`: its JSON. */
export function weightsHalf(model: string, method: string, out: string, extra: string[] = []): WeightsRun {
  return cliJson<WeightsRun>(
    runCli(
      ['weights', '--model', model, ...smallData(), '--method', method, '--sparsity', '0.5', ...extra].concat(
        ['--out', out, '--json'],
      ),
      { timeout: 300_000 },
    ),
  );
}
