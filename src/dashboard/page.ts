/**
 * The dashboard's page and its script, served by server.ts from this machine only (Vega and Vega-Lite come
 * from node_modules, no CDN). The script builds every element with createElement and sets run data with
 * textContent: nothing read from a run's files is ever parsed as HTML. The server's content security policy
 * forbids inline scripts and any connection but to itself.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>geneprune dashboard</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header>
  <div class="title"><span class="brand">geneprune</span> <h1 id="name">…</h1> <span id="status" class="badge">connecting</span></div>
  <div id="about" class="about"></div>
</header>
<main>
  <section class="panel progress-panel">
    <div class="counters">
      <div><span class="label" id="unit">generation</span> <span id="done" class="big">–</span></div>
      <div id="step-box" hidden><span class="label">generation</span> <span id="step" class="big">–</span></div>
      <div><span class="label">evaluations</span> <span id="evaluations" class="big">0</span></div>
      <div><span class="label">search time</span> <span id="elapsed" class="big">–</span></div>
      <div><span class="label">ETA</span> <span id="eta" class="big">–</span></div>
    </div>
    <div class="bar"><div id="bar-fill"></div></div>
    <div id="live" class="live"></div>
  </section>
  <section class="panel">
    <h2>Calibration score of every evaluated mask</h2>
    <div id="scatter" class="plot"></div>
    <div id="scatter-count" class="note"></div>
  </section>
  <section class="panel">
    <h2 id="progress-title">Best per generation</h2>
    <div id="progress" class="plot"></div>
  </section>
  <section class="panel">
    <h2>Best mask so far</h2>
    <div id="best-about" class="note"></div>
    <div id="grid" class="grid"></div>
  </section>
  <section class="panel" id="workers-panel" hidden>
    <h2>Workers</h2>
    <div id="workers-about" class="note"></div>
    <div class="counters" id="workers-jobs"></div>
    <table id="workers-table"><thead><tr><th>worker</th><th>evaluations</th><th>evaluations/s</th><th>busy</th></tr></thead><tbody></tbody></table>
  </section>
  <section class="panel">
    <h2>Result</h2>
    <table id="result"><tbody></tbody></table>
    <div id="result-none" class="note">not yet: the run writes result.json when it finishes</div>
  </section>
</main>
<footer><span id="dir"></span> · <span id="connection">connecting…</span> · served from this machine only</footer>
<script src="/assets/vega.min.js"></script>
<script src="/assets/vega-lite.min.js"></script>
<script src="/app.js"></script>
</body>
</html>
`;

export const PAGE_CSS = `
:root { --fg: #1d2330; --muted: #667085; --line: #d0d5dd; --accent: #2e6fd8; --bg: #f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 14px 22px 10px; background: #fff; border-bottom: 1px solid var(--line); }
.title { display: flex; align-items: baseline; gap: 10px; flex-wrap: wrap; }
.brand { color: var(--muted); font-weight: 600; }
h1 { margin: 0; font-size: 20px; word-break: break-all; }
h2 { margin: 0 0 8px; font-size: 14px; font-weight: 600; }
.about { color: var(--muted); margin-top: 4px; word-break: break-all; }
.badge { font-size: 12px; padding: 2px 8px; border-radius: 10px; background: #e4e7ec; }
.badge.running { background: #d1f0dc; color: #106b34; }
.badge.finished { background: #dbe8fb; color: #1d4f99; }
.badge.stopped, .badge.disconnected { background: #fde3cf; color: #8a3b0b; }
main { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 14px; padding: 14px 22px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
.progress-panel { grid-column: 1 / -1; }
.counters { display: flex; gap: 36px; flex-wrap: wrap; }
.label { color: var(--muted); margin-right: 4px; }
.big { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.bar { height: 8px; background: #e4e7ec; border-radius: 4px; margin-top: 10px; overflow: hidden; }
#bar-fill { height: 100%; width: 0; background: var(--accent); }
.live { color: var(--muted); margin-top: 6px; min-height: 1.4em; font-family: ui-monospace, monospace; font-size: 12px; }
.note { color: var(--muted); font-size: 12px; margin-top: 4px; }
.plot { min-height: 300px; }
.grid { display: inline-grid; gap: 3px; margin-top: 6px; }
.grid .row { display: flex; gap: 3px; align-items: center; }
.grid .layer { width: 34px; color: var(--muted); font-size: 12px; }
.grid .cell { width: 18px; height: 18px; border-radius: 3px; border: 1px solid #98a2b3; }
.grid .cell.kept { background: var(--accent); border-color: var(--accent); }
.grid .cell.removed { background: #fff; }
.grid .count { margin-left: 8px; color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; }
td { padding: 3px 14px 3px 0; vertical-align: top; }
td:first-child { color: var(--muted); }
th { text-align: left; font-weight: 600; color: var(--muted); padding: 3px 14px 3px 0; }
#workers-table td { font-variant-numeric: tabular-nums; }
#workers-jobs { margin: 6px 0 8px; gap: 24px; }
footer { color: var(--muted); font-size: 12px; padding: 4px 22px 18px; word-break: break-all; }
`;

/** The page's script: plain browser JavaScript, no build step. */
export const PAGE_SCRIPT = `'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { meta: null, specs: null, evals: [], generations: [], views: {}, provisional: null, pending: Promise.resolve() };

  function text(id, value) { $(id).textContent = value == null ? '' : String(value); }

  function duration(s) {
    if (s == null || !isFinite(s)) return '–';
    if (s < 60) return s.toFixed(1) + ' s';
    const m = Math.floor(s / 60), r = Math.round(s % 60);
    if (m < 60) return m + ' min ' + r + ' s';
    return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
  }

  function progressRow(g) {
    const v = g[state.specs.progressField];
    return v == null ? null : { generation: g.generation, value: v };
  }
  function scatterRows(list) {
    const x = (state.specs && state.specs.scatterField) || 'sparsity';
    return list.filter((p) => p.score != null && p[x] != null);
  }
  // A weight search's current block: its best so far, a point of the progress plot until the block's own arrives.
  function provisionalRow(meta) {
    const s = meta.search;
    if (!s || s.bestScore == null || !state.specs || state.specs.progressField !== 'bestScore') return null;
    if (state.generations.some((g) => g.generation === s.block)) return null;
    return { generation: s.block, value: s.bestScore, provisional: true };
  }

  async function makeView(id, spec, name, rows) {
    const old = state.views[id];
    if (old) old.finalize();
    $(id).replaceChildren();
    const compiled = vegaLite.compile(spec).spec;
    const view = new vega.View(vega.parse(compiled), { renderer: 'svg', container: $(id), hover: true });
    view.insert(name, rows);
    await view.runAsync();
    state.views[id] = view;
  }

  async function redraw() {
    const points = scatterRows(state.evals);
    await makeView('scatter', state.specs.scatter, 'points', points);
    const provisional = provisionalRow(state.meta);
    const best = state.generations.map(progressRow).filter(Boolean);
    await makeView('progress', state.specs.progress, 'best', provisional ? best.concat([provisional]) : best);
    state.provisional = provisional;
    $('scatter').dataset.points = String(points.length);
    $('progress').dataset.points = String(best.length + (provisional ? 1 : 0));
  }

  async function append(evals, generations) {
    const points = scatterRows(evals);
    const best = generations.map(progressRow).filter(Boolean);
    if (points.length) await state.views.scatter.insert('points', points).runAsync();
    const provisional = provisionalRow(state.meta);
    const old = state.provisional;
    const moved = JSON.stringify(old) !== JSON.stringify(provisional);
    if (best.length || moved) {
      const change = vega.changeset().insert(best);
      if (moved && old) change.remove((d) => d.provisional === true);
      if (moved && provisional) change.insert([provisional]);
      await state.views.progress.change('best', change).runAsync();
      state.provisional = provisional;
    }
    $('scatter').dataset.points = String(scatterRows(state.evals).length);
    $('progress').dataset.points = String(state.generations.map(progressRow).filter(Boolean).length + (state.provisional ? 1 : 0));
  }

  function showGrid(meta) {
    const grid = $('grid');
    grid.replaceChildren();
    const best = meta.best;
    if (!best) { text('best-about', meta.kind === 'weights' ? 'weight masks are shown per block in the plots' : 'none yet'); return; }
    const from = best.from === 'mask' ? 'final mask (mask.json)' : 'best so far';
    const parts = [from];
    if (best.score != null) parts.push(meta.score.label + ' ' + best.score.toFixed(4));
    if (best.sparsity != null) parts.push((100 * best.sparsity).toFixed(1) + ' % removed');
    if (best.fitness != null) parts.push('fitness ' + best.fitness.toFixed(4));
    text('best-about', parts.join(' · '));
    if (!best.genome || !meta.layers) return;
    let at = 0;
    meta.layers.forEach((heads, layer) => {
      const row = document.createElement('div');
      row.className = 'row';
      const label = document.createElement('span');
      label.className = 'layer';
      label.textContent = 'L' + layer;
      row.append(label);
      let kept = 0;
      for (let h = 0; h < heads; h++, at++) {
        const cell = document.createElement('span');
        const on = best.genome[at] === '1';
        kept += on ? 1 : 0;
        cell.className = 'cell ' + (on ? 'kept' : 'removed');
        cell.title = 'layer ' + layer + ' head ' + h + (on ? ' kept' : ' removed');
        row.append(cell);
      }
      const count = document.createElement('span');
      count.className = 'count';
      count.textContent = kept + '/' + heads + ' kept';
      row.append(count);
      grid.append(row);
    });
  }

  // workers.json (--workers N, --queue URL): the backend, its jobs and each worker; no panel without the file.
  function showWorkers(w) {
    const panel = $('workers-panel');
    const jobs = $('workers-jobs');
    const body = $('workers-table').tBodies[0];
    jobs.replaceChildren();
    body.replaceChildren();
    panel.hidden = !w;
    if (!w) return;
    text('workers-about', w.label + ' · ' + w.workers.length + ' worker' + (w.workers.length === 1 ? '' : 's') + ' · ' + duration(w.seconds));
    for (const [label, value] of [['waiting', w.waiting], ['active', w.active], ['done', w.done], ['failed', w.failed]]) {
      const box = document.createElement('div');
      const l = document.createElement('span');
      const v = document.createElement('span');
      l.className = 'label';
      l.textContent = label;
      v.className = 'big';
      v.dataset.jobs = label;
      v.textContent = String(value);
      box.append(l, ' ', v);
      jobs.append(box);
    }
    for (const x of w.workers) {
      const tr = document.createElement('tr');
      const cells = [x.id, String(x.evaluations), x.perSecond == null ? '–' : x.perSecond.toFixed(2), x.busy == null ? '–' : (100 * x.busy).toFixed(0) + ' %'];
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = c;
        tr.append(td);
      }
      body.append(tr);
    }
  }

  function showMeta(meta) {
    state.meta = meta;
    text('name', meta.name);
    document.title = meta.name + ' · geneprune dashboard';
    const badge = $('status');
    badge.textContent = meta.status === 'waiting' ? 'waiting for the run to start' : meta.status;
    badge.className = 'badge ' + meta.status;
    const about = [];
    if (meta.kind) about.push(meta.kind === 'heads' ? 'head search' : 'weight pruning');
    if (meta.method) about.push('method ' + meta.method);
    if (meta.model) about.push('model ' + meta.model);
    text('about', about.join(' · '));
    text('dir', meta.dir);
    text('unit', meta.unit);
    // A block search under way: the block being searched and its generation, as its progress line says them.
    const search = meta.status !== 'finished' ? meta.search : null;
    const shown = search ? search.block + 1 : meta.done;
    text('done', meta.total != null ? shown + ' / ' + meta.total : String(shown));
    $('step-box').hidden = !search;
    if (search) text('step', search.generations != null ? search.generation + ' / ' + search.generations : String(search.generation));
    text('evaluations', meta.evaluations + (meta.nonFinite ? ' (' + meta.nonFinite + ' not finite)' : ''));
    text('elapsed', duration(meta.searchSeconds));
    text('eta', meta.status === 'finished' ? 'done' : meta.status === 'running' ? duration(meta.etaSeconds) : '–');
    const share = meta.status === 'finished' ? 1 : search ? search.share : meta.total ? Math.min(meta.done / meta.total, 1) : 0;
    $('bar-fill').style.width = (100 * share).toFixed(1) + '%';
    const live = meta.live || (meta.unreadable ? meta.unreadable + ' log lines could not be read' : '');
    text('live', live);
    const provisional = provisionalRow(meta);
    text('progress-title', state.specs && state.specs.progressField === 'bestFitness' ? 'Best fitness per generation' : 'Best per ' + meta.unit + (provisional ? ' (the last point: the current block, best so far)' : ''));
    showGrid(meta);
    const body = $('result').tBodies[0];
    body.replaceChildren();
    for (const [label, value] of meta.result || []) {
      const tr = document.createElement('tr');
      const a = document.createElement('td');
      const b = document.createElement('td');
      a.textContent = label;
      b.textContent = value;
      tr.append(a, b);
      body.append(tr);
    }
    $('result-none').hidden = !!meta.result;
    showWorkers(meta.workers);
    text('scatter-count', state.evals.length + ' evaluations' + (meta.nonFinite ? ', ' + meta.nonFinite + ' not finite (not plotted)' : ''));
  }

  function onSnapshot(data) {
    state.specs = data.specs;
    state.evals = data.evals.slice();
    state.generations = data.generations.slice();
    showMeta(data.meta);
    return redraw();
  }

  function onAppend(data) {
    // A loop, not push(...): an append after a resume may carry more points than call arguments can.
    for (const e of data.evals) state.evals.push(e);
    for (const g of data.generations) state.generations.push(g);
    showMeta(data.meta);
    return append(data.evals, data.generations);
  }

  // Events are applied one after another: a plot is never updated while it is being rebuilt.
  function queue(fn) { state.pending = state.pending.then(fn).catch((e) => text('live', 'display error: ' + e.message)); }

  const source = new EventSource('/events');
  source.addEventListener('snapshot', (e) => { const d = JSON.parse(e.data); queue(() => onSnapshot(d)); });
  source.addEventListener('append', (e) => { const d = JSON.parse(e.data); queue(() => onAppend(d)); });
  source.onopen = () => {
    text('connection', 'live');
    if (state.meta) showMeta(state.meta);
  };
  source.onerror = () => {
    // A closed source is not retried: the server refused it (too many open pages) or is gone.
    text('connection', source.readyState === EventSource.CLOSED ? 'refused or closed by the server; reload to try again' : 'disconnected, retrying…');
    $('status').className = 'badge disconnected';
  };
})();
`;
