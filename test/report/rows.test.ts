/**
 * Report rows equal what the run files say, counted independently from the raw logs: individuals per generation,
 * the best per generation, the head mask, the NSGA-II archive and front, per-layer weight sparsity. And the
 * command refuses a missing, foreign, unfinished or corrupt run directory in one line, writing nothing.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { readRunForReport } from '../../src/index.js';
import { assertOneLineError, runCli } from '../helpers/cli.js';
import { CALIB, EVAL, MODEL, skipUnlessShared } from '../shared.js';
import { GENERATIONS, makeShortRuns, POPULATION, type ShortRuns } from './runs.js';

const skip = skipUnlessShared(MODEL, CALIB, EVAL);
const lines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
const json = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

describe('report rows from real run directories', { skip }, () => {
  let runs: ShortRuns;
  before(async () => {
    runs = await makeShortRuns();
  });

  test('GA: every logged individual, POPULATION per generation, and the best of each generation', async () => {
    const r = await readRunForReport(runs.ga);
    const evals = lines(join(runs.ga, 'evals.jsonl'));
    assert.equal(r.individuals.length, evals.length);
    assert.equal(r.generations.length, GENERATIONS);
    for (let g = 0; g < GENERATIONS; g++) {
      const mine = evals.filter((e) => e.generation === g);
      assert.equal(mine.length, POPULATION, `generation ${g} logged ${mine.length}`);
      assert.equal(r.individuals.filter((i) => i.generation === g).length, POPULATION);
      const best = Math.max(...mine.map((e) => e.fitness));
      const row = r.generations.find((x) => x.generation === g)!;
      assert.equal(row.bestFitness, best, `best fitness of generation ${g}`);
      const meanSparsity = mine.reduce((a, e) => a + e.sparsity, 0) / mine.length;
      assert.ok(Math.abs(row.meanSparsity - meanSparsity) < 1e-12);
    }
    // Perplexity is reported as is, and each individual keeps its own logged numbers.
    const first = r.individuals[0];
    assert.equal(first.quality, evals[0].quality);
    assert.equal(first.sparsity, evals[0].sparsity);
  });

  test('heads: the mask grid is the run’s removed heads, layer by head', async () => {
    const r = await readRunForReport(runs.ablation);
    const result = json(join(runs.ablation, 'result.json'));
    assert.equal(r.heads.length, 40);
    const removed = r.heads.filter((c) => !c.kept).map((c) => `${c.layer}:${c.head}`);
    assert.deepEqual(removed.sort(), [...result.removedHeads].sort());
    assert.equal(r.row.keptParameters, result.keptParameters);
    assert.equal(r.row.quality, result.eval.perplexity);
    assert.equal(r.row.calibration.path, json(join(runs.ablation, 'config.json')).calibration.path);
    assert.equal(r.row.calibration.files, 5);
    assert.equal(r.row.evaluation.amount, 1024);
    assert.equal(r.individuals.length, 0, 'a baseline logs no individuals');
  });

  test('NSGA-II: the archive with its generations, the front and the pick', async () => {
    const r = await readRunForReport(runs.nsga);
    const evals = lines(join(runs.nsga, 'evals.jsonl'));
    const front = json(join(runs.nsga, 'front.json'));
    const result = json(join(runs.nsga, 'result.json'));
    assert.equal(r.individuals.length, evals.length);
    assert.deepEqual(
      r.individuals.map((i) => i.generation),
      evals.map((e) => e.generation),
    );
    // --generations 3: generations 0, 1, 2, as a GA's.
    assert.deepEqual([...new Set(evals.map((e) => e.generation))], [0, 1, 2]);
    assert.equal(evals.filter((e) => e.generation === 0).length, POPULATION, 'the initial population');
    // Sparsity is the share of zeros in the logged genome.
    const zeros = (g: string) => [...g].filter((c) => c === '0').length / g.length;
    assert.deepEqual(
      r.individuals.map((i) => i.sparsity),
      evals.map((e) => zeros(e.genome)),
    );
    assert.equal(r.front.length, front.length);
    // The run picks from its front: exactly one point is its mask.
    assert.deepEqual(
      r.front.map((f) => f.picked),
      front.map((f: { genome: string }) => f.genome === result.genome),
    );
    assert.equal(r.front.filter((f) => f.picked).length, 1);
  });

  test('weights: per-layer sparsity and kept parameters from result.json', async () => {
    const r = await readRunForReport(runs.wanda);
    const result = json(join(runs.wanda, 'result.json'));
    assert.deepEqual(
      r.layers.map((l) => [l.layer, l.sparsity, l.pruned]),
      result.layers.map((l: { layer: number; sparsity: number; pruned: number }) => [
        l.layer,
        l.sparsity,
        l.pruned,
      ]),
    );
    const pruned = result.layers.reduce((a: number, l: { pruned: number }) => a + l.pruned, 0);
    assert.equal(r.row.keptParameters, result.parameters - pruned);
    assert.equal(r.row.sparsity, result.sparsity.achieved);
    assert.equal(r.heads.length, 0);
  });

  test('weights, block-wise GA: every logged candidate, coloured by block, its quality and block sparsity', async () => {
    const r = await readRunForReport(runs.gaWeights);
    const evals = lines(join(runs.gaWeights, 'evals.jsonl'));
    // 5 blocks × (4 initial + 2 generations × 4 children).
    assert.equal(evals.length, 5 * (4 + 2 * 4));
    assert.deepEqual(
      r.individuals.map((i) => [i.generation, i.sparsity, i.quality]),
      evals.map((e) => [e.block, e.sparsity, e.quality]),
    );
    // Each block's logged best is the block best the method reports.
    const layers = json(join(runs.gaWeights, 'result.json')).methodReport.layers as Array<{
      layer: number;
      bestQuality: number;
    }>;
    for (const l of layers) {
      const mine = r.individuals.filter((i) => i.generation === l.layer).map((i) => i.quality as number);
      assert.equal(Math.min(...mine), l.bestQuality, `block ${l.layer}`);
    }
    assert.equal(r.generations.length, 0);
  });

  test('refuses a run whose log was truncated, edited or extended after its last state, in one line', () => {
    const cases: Array<[string, string, (text: string) => string, string]> = [
      [
        'ga-truncated',
        runs.ga,
        (t) => t.split('\n').slice(0, POPULATION).join('\n').concat('\n'),
        'truncated',
      ],
      ['ga-edited', runs.ga, (t) => t.replace('"generation":0', '"generation":1'), 'edited'],
      ['ga-extended', runs.ga, (t) => t + t.split('\n')[0].concat('\n'), 'added after the run finished'],
      ['nsga-truncated', runs.nsga, (t) => t.slice(0, t.length >> 1), 'truncated'],
      ['weights-truncated', runs.gaWeights, (t) => t.split('\n').slice(1).join('\n'), 'truncated'],
    ];
    for (const [name, source, change, mention] of cases) {
      const dir = join(runs.root, 'altered', name);
      cpSync(source, dir, { recursive: true });
      const log = join(dir, 'evals.jsonl');
      const text = readFileSync(log, 'utf8');
      assert.notEqual(change(text), text, name);
      writeFileSync(log, change(text));
      const out = join(runs.root, 'altered', `${name}.html`);
      assertOneLineError(runCli(['report', dir, '--out', out]), 1, log, mention);
      assert.ok(!existsSync(out), `no report written for ${name}`);
    }
    // The same copies untouched are reported.
    const intact = join(runs.root, 'altered', 'intact');
    cpSync(runs.ga, intact, { recursive: true });
    const res = runCli(['report', intact, '--out', join(runs.root, 'altered', 'intact.html')]);
    assert.equal(res.code, 0, res.stderr);
  });

  test('refuses a missing, foreign, unfinished or corrupt run directory in one line', () => {
    const bad = join(runs.root, 'bad');
    mkdirSync(join(bad, 'foreign'), { recursive: true });
    writeFileSync(
      join(bad, 'foreign', 'config.json'),
      JSON.stringify({ kind: 'something-else', version: 1 }),
    );
    mkdirSync(join(bad, 'unfinished'));
    writeFileSync(join(bad, 'unfinished', 'config.json'), readFileSync(join(runs.ga, 'config.json')));
    mkdirSync(join(bad, 'corrupt'));
    writeFileSync(join(bad, 'corrupt', 'config.json'), readFileSync(join(runs.ga, 'config.json')));
    writeFileSync(join(bad, 'corrupt', 'result.json'), '{"runDir": ');
    const cases: Array<[string, string[]]> = [
      [join(bad, 'missing'), ['missing', 'run directory does not exist']],
      [join(bad, 'foreign'), ['config.json', 'not a geneprune run']],
      [join(bad, 'unfinished'), ['result.json', 'has not finished']],
      [join(bad, 'corrupt'), ['result.json', 'corrupt']],
    ];
    for (const [dir, mentions] of cases) {
      const out = join(bad, 'report.html');
      const res = runCli(['report', runs.ga, dir, '--out', out]);
      assertOneLineError(res, 1, ...mentions);
      assert.ok(!existsSync(out), `no report written for ${dir}`);
    }
  });
});
