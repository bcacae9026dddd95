/**
 * The README is a start page and docs/ the manual: the README stays short and links every page, every link between
 * them lands on a file and heading that exist, and every table `npm run bench` regenerates into docs/tables/ is
 * quoted by the manual exactly as the file holds it (a regenerated table that nobody copied into its page fails).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { REPO_ROOT } from '../shared.js';

const DOCS = join(REPO_ROOT, 'docs');
const README = join(REPO_ROOT, 'README.md');
const pages = readdirSync(DOCS)
  .filter((f) => f.endsWith('.md'))
  .sort()
  .map((f) => join(DOCS, f));
const text = new Map([README, ...pages].map((f) => [f, readFileSync(f, 'utf8')]));

/** Markdown outside fenced code blocks: a `#` line inside a shell block is a comment, not a heading. */
function prose(md: string): string {
  return md.replace(/^```[\s\S]*?^```/gm, '');
}

/** GitHub's heading anchors: lower case, punctuation and symbols dropped, spaces to hyphens, repeats numbered. */
function anchors(md: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const m of prose(md).matchAll(/^#{1,6} +(.+?) *$/gm)) {
    const base = m[1]
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\p{M} _-]/gu, '')
      .replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** The relative links of a page (images included), without web addresses. */
function links(md: string): string[] {
  return [...prose(md).matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]).filter((l) => !/^[a-z]+:/.test(l));
}

/** The body rows of every markdown table in a text, each table as one string. */
function tables(md: string): string[] {
  return [...md.matchAll(/^\|.*\|\n\|[-:| ]+\|\n(?:\|.*\|\n?)+/gm)].map((m) => m[0].trimEnd());
}

describe('README and the manual in docs/', () => {
  test('the README is a start page: at most 200 lines, the two commands first, every manual page linked', () => {
    const readme = text.get(README)!;
    const lines = readme.trimEnd().split('\n');
    assert.ok(lines.length <= 200, `README.md has ${lines.length} lines`);
    const first = readme.slice(readme.indexOf('```sh'), readme.indexOf('```\n', readme.indexOf('```sh')));
    assert.match(first, /npm install && .*npm run geneprune -- heads /);
    assert.match(first, /\nnpm test\n/);
    const linked = new Set(links(readme).map((l) => resolve(REPO_ROOT, l.split('#')[0])));
    const unlinked = pages.filter((p) => !linked.has(p)).map((p) => relative(REPO_ROOT, p));
    assert.deepEqual(unlinked, [], 'manual pages the README does not link');
  });

  test('every relative link lands on a file, and every #anchor on a heading of that page', () => {
    const broken: string[] = [];
    for (const [file, md] of text) {
      for (const link of links(md)) {
        const [path, anchor] = link.split('#');
        const target = path === '' ? file : resolve(dirname(file), path);
        const where = `${relative(REPO_ROOT, file)}: ${link}`;
        if (!existsSync(target)) {
          broken.push(`${where} (no such file)`);
          continue;
        }
        if (anchor === undefined) continue;
        if (!target.endsWith('.md')) broken.push(`${where} (an anchor into a file that is not markdown)`);
        else if (!anchors(text.get(target) ?? readFileSync(target, 'utf8')).has(anchor))
          broken.push(`${where} (no such heading)`);
      }
    }
    assert.deepEqual(broken, []);
  });

  test('the anchor rule matches GitHub on the headings this manual uses', () => {
    // Worked by hand from GitHub's rule: code spans, colons, parentheses and × go; hyphens stay.
    assert.deepEqual(
      [
        ...anchors(
          '## Precision (`--dtype`)\n### Attention: fused kernel vs the explicit S×S chain\n## Precision (`--dtype`)\n',
        ),
      ],
      ['precision---dtype', 'attention-fused-kernel-vs-the-explicit-ss-chain', 'precision---dtype-1'],
    );
    assert.deepEqual([...anchors('```sh\n# a comment\n```\n# Title\n')], ['title']);
  });

  test('every table npm run bench writes into docs/tables/ is quoted verbatim by a manual page', () => {
    const generated = readdirSync(join(DOCS, 'tables')).filter((f) => f.endsWith('.md'));
    assert.deepEqual(generated.sort(), [
      'engine.md',
      'heads.md',
      'latency.md',
      'prune.md',
      'scale.md',
      'seq2seq.md',
      'structured.md',
      'weights.md',
      'workers.md',
    ]);
    const manual = pages.map((p) => text.get(p)!).join('\n');
    const missing: string[] = [];
    for (const f of generated) {
      const own = tables(readFileSync(join(DOCS, 'tables', f), 'utf8'));
      assert.ok(own.length > 0, `docs/tables/${f} holds no table`);
      own.forEach((t, i) => {
        if (!manual.includes(t)) missing.push(`docs/tables/${f}, table ${i + 1}: ${t.split('\n')[0]}`);
      });
    }
    assert.deepEqual(missing, [], 'regenerated tables the manual does not quote as they are');
  });
});
