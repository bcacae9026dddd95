/**
 * The SVG Vega renders from each spec draws one mark per data point: counted in the named mark's group and
 * compared with rows made here by hand, plus the edge cases (non-finite quality left out, text from runs escaped).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { renderSvg } from '../../src/report/html.js';
import {
  generationsSpec,
  headMaskSpec,
  layerSparsitySpec,
  MARK_NAMES,
  paretoSpec,
  qualityVsSparsitySpec,
  speedupSpec,
} from '../../src/report/specs.js';

/** Child elements of the group Vega renders for the named mark (one per datum). */
function marksOf(svg: string, name: string): number {
  const open = `role-mark ${name}_marks"`;
  const at = svg.indexOf(open);
  assert.ok(at >= 0, `no mark group ${name}_marks`);
  const start = svg.indexOf('>', at) + 1;
  // Data marks are leaf elements (path), so the group closes at the first </g> after them.
  const body = svg.slice(start, svg.indexOf('</g>', start));
  return (body.match(/<path /g) ?? []).length;
}

describe('report figures: one SVG mark per point', () => {
  test('quality vs sparsity draws every finite individual', async () => {
    const rows = [
      { generation: 0, sparsity: 0.1, quality: 4.1 },
      { generation: 0, sparsity: 0.2, quality: 4.6 },
      { generation: 1, sparsity: 0.25, quality: null },
      { generation: 1, sparsity: 0.3, quality: 5.2 },
      { generation: 2, sparsity: 0.35, quality: 5.9 },
    ];
    const svg = await renderSvg(qualityVsSparsitySpec(rows, { qualityName: 'ppl', title: 't' }));
    assert.equal(marksOf(svg, MARK_NAMES.individuals), 4);
  });

  test('generations draw three sparsity and two fitness points per generation', async () => {
    const rows = [0, 1, 2, 3].map((g) => ({
      generation: g,
      bestFitness: -3 + 0.1 * g,
      meanFitness: -3.2 + 0.1 * g,
      bestSparsity: 0.1 * g,
      meanSparsity: 0.08 * g,
      maxSparsity: 0.12 * g,
    }));
    const svg = await renderSvg(generationsSpec(rows, { title: 't' }));
    assert.equal(marksOf(svg, MARK_NAMES.generationSparsity), 12);
    assert.equal(marksOf(svg, MARK_NAMES.generationFitness), 8);
  });

  test('Pareto: archive and front apart', async () => {
    const archive = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6].map((s, i) => ({
      generation: i % 2,
      sparsity: s,
      quality: 4 + i,
    }));
    const front = [
      { sparsity: 0.1, quality: 4, picked: false },
      { sparsity: 0.3, quality: 6, picked: true },
    ];
    const svg = await renderSvg(paretoSpec(archive, front, { qualityName: 'ppl', title: 't' }));
    assert.equal(marksOf(svg, MARK_NAMES.archive), 6);
    assert.equal(marksOf(svg, MARK_NAMES.front), 2);
  });

  test('speedup: one point per run; head mask: one cell per head; layer bars: one per layer and run', async () => {
    const points = [
      { series: 'ga (heads)', run: 'a', speedup: 1.2, quality: 4.5 },
      { series: 'ga (heads)', run: 'b', speedup: 1.4, quality: 5.5 },
      { series: 'wanda (weights)', run: 'c', speedup: 1.8, quality: 20 },
    ];
    const s1 = await renderSvg(
      speedupSpec(points, {
        qualityName: 'ppl',
        speedName: 'x',
        title: 't',
        dense: 3.9,
        lowerIsBetter: true,
      }),
    );
    assert.equal(marksOf(s1, MARK_NAMES.speedup), 3);
    const cells = [0, 1, 2].flatMap((layer) =>
      [0, 1, 2, 3].map((head) => ({ layer, head, kept: head !== layer })),
    );
    assert.equal(marksOf(await renderSvg(headMaskSpec(cells, { title: 't' })), MARK_NAMES.headMask), 12);
    const bars = ['r1', 'r2'].flatMap((run) =>
      [0, 1, 2, 3, 4].map((layer) => ({ run, layer, sparsity: 0.5 })),
    );
    assert.equal(
      marksOf(await renderSvg(layerSparsitySpec(bars, { title: 't' })), MARK_NAMES.layerSparsity),
      10,
    );
  });

  test('text from run files is escaped in the SVG', async () => {
    const svg = await renderSvg(
      headMaskSpec([{ layer: 0, head: 0, kept: true }], { title: '<script>alert(1)</script> & co' }),
    );
    assert.ok(!svg.includes('<script'));
    assert.ok(svg.includes('&lt;script&gt;alert(1)&lt;/script&gt; &amp; co'));
  });
});
