/**
 * `--help` and the documentation (README and docs/) tell the same story: every flag a command's help lists is
 * documented there, every flag it names exists, and the defaults the heads help states are the library's defaults.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { HEAD_SEARCH_DEFAULTS } from '../../src/index.js';
import { runCli } from '../helpers/cli.js';
import { REPO_ROOT } from '../shared.js';

const COMMANDS = [
  'eval',
  'generate',
  'heads',
  'weights',
  'structured',
  'export',
  'bench',
  'report',
  'dashboard',
  'pick',
  'worker',
];

function help(command: string): string {
  const r = runCli([command, '--help'], { timeout: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

/** The long flags a help text's Options section lists. */
function flagsOf(text: string): string[] {
  const options = text.slice(text.indexOf('Options:'));
  return [...options.matchAll(/^ {2}(?:-\w, )?(--[a-z][a-z-]*)/gm)]
    .map((m) => m[1])
    .filter((f) => f !== '--help');
}

/** Help text with commander's line wrapping undone, one option per line. */
function unwrapped(text: string): string {
  return text.replace(/\n {20,}/g, ' ');
}

/** The README and every page of the manual in docs/, read as one text: a flag is documented if any of them names it. */
function documentation(): string {
  const pages = readdirSync(join(REPO_ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .sort();
  return [join(REPO_ROOT, 'README.md'), ...pages.map((f) => join(REPO_ROOT, 'docs', f))]
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
}

const readme = documentation();
const helps = new Map(COMMANDS.map((c) => [c, help(c)]));

describe('help texts and the documentation agree', () => {
  for (const command of COMMANDS) {
    test(`every flag of ${command} --help is documented in the README`, () => {
      const missing = flagsOf(helps.get(command)!).filter((f) => !readme.includes(f));
      assert.deepEqual(missing, [], `${command} flags the README never mentions`);
    });
  }

  test('every flag the README names exists in some command', () => {
    const known = new Set([...helps.values()].flatMap(flagsOf));
    // Flags passed to the repository's own scripts (`npm run bench -- --only heads`) belong to those scripts.
    // So do other tools' flags in the commands the manual shows for them (a container to run generated code in,
    // the Redis server a queue needs).
    const text = readme
      .replace(/npm run (?!geneprune\b)[\w:-]+ -- [^\n`|]*/g, '')
      .replace(/(?:docker|podman) run (?:[^\n]*\\\n)*[^\n]*/g, '')
      .replace(/redis-server [^\n`|]*/g, '');
    // A flag ends where a word does: another tool's `--allow_code_execution` names no flag of ours.
    const named = new Set([...text.matchAll(/(?<![\w-])(--[a-z][a-z-]+)(?![\w-])/g)].map((m) => m[1]));
    // npm's own flags and the test runner's, which the README shows in commands.
    for (const f of ['--no-audit', '--no-fund', '--import', '--test', '--force', '--version', '--help'])
      named.delete(f);
    const unknown = [...named].filter((f) => !known.has(f));
    assert.deepEqual(unknown, [], 'flags in the README that no command has');
  });

  for (const command of COMMANDS) {
    test(`${command} --help states each default once, never as an empty list, and its examples paste whole`, () => {
      const text = helps.get(command)!;
      const from = text.indexOf('Options:');
      const end = text.indexOf('\n\n', from);
      const options = unwrapped(text.slice(from, end < 0 ? undefined : end));
      for (const line of options.split('\n')) {
        assert.ok(!line.includes('(default: [])'), `an empty list shown as a default: ${line.trim()}`);
        assert.ok((line.match(/\(default/g) ?? []).length <= 1, `a doubled default: ${line.trim()}`);
      }
      // An example that goes on over an indented line must end in a backslash, or the shell runs half of it; a
      // backslash lost in the source's template literal shows as one line with a gap in it instead.
      const lines = text.split('\n');
      lines.forEach((line, i) => {
        if (!/^ {2}geneprune /.test(line)) return;
        assert.ok(!/\S {3,}--/.test(line), `an example with a lost line continuation: ${line.trim()}`);
        if (/^ {4,}--/.test(lines[i + 1] ?? ''))
          assert.ok(line.endsWith(' \\'), `example continued without a backslash: ${line.trim()}`);
      });
    });
  }

  test('the defaults heads --help states are the library defaults', () => {
    const text = unwrapped(helps.get('heads')!);
    const stated = (flag: string) => {
      const line = text.split('\n').find((l) => l.trimStart().startsWith(`${flag} `));
      const m = line && /\(default ([\d.]+)\)/.exec(line);
      assert.ok(m, `heads --help states no default for ${flag}`);
      return Number(m[1]);
    };
    const d = HEAD_SEARCH_DEFAULTS;
    assert.equal(stated('--population'), d.population);
    assert.equal(stated('--generations'), d.generations);
    assert.equal(stated('--tournament'), d.tournament);
    assert.equal(stated('--crossover-rate'), d.crossoverRate);
    assert.equal(stated('--mutation-rate'), d.mutationRate);
    assert.equal(stated('--removal-bias'), d.removalBias);
    assert.equal(stated('--s-initial'), d.sInitial);
    assert.equal(stated('--elitism'), d.elitism);
    assert.equal(stated('--calib-tokens'), d.calibTokens);
    assert.equal(stated('--promote'), d.promote);
    assert.equal(stated('--lambda'), d.lambda);
  });
});
