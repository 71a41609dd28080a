// The coordinator dashboard (docs/dashboard.md): polls the coordinator's read-only JSON API every 2 s and
// draws jobs, the selected job's loss and byte curves (inline SVG) and the workers. Plain DOM, no
// libraries, no inline code (the page's Content-Security-Policy forbids it), data only via textContent.
'use strict';

(function () {
  const POLL_MS = 2000;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const TOKEN_KEY = 'tributary-dashboard-token';
  const state = { token: null, selectedJob: null, userSelected: false };

  // ---- token: from the URL fragment (#token=..., never sent to the server) or the form ----

  function readToken() {
    const match = /(?:^#|&)token=([^&]*)/.exec(window.location.hash);
    if (match) {
      state.token = decodeURIComponent(match[1]);
      try { window.sessionStorage.setItem(TOKEN_KEY, state.token); } catch (e) { /* storage off: keep it in memory */ }
      // Keep the token out of the address bar, the history and bookmarks.
      window.history.replaceState(null, '', window.location.pathname + window.location.search);
      return;
    }
    try { state.token = window.sessionStorage.getItem(TOKEN_KEY); } catch (e) { state.token = null; }
  }

  function showTokenForm(show) {
    document.getElementById('token-form').hidden = !show;
  }

  document.getElementById('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    state.token = document.getElementById('token-input').value.trim();
    try { window.sessionStorage.setItem(TOKEN_KEY, state.token); } catch (e) { /* memory only */ }
    showTokenForm(false);
    refresh();
  });

  class AuthError extends Error {}

  async function getJson(path) {
    const headers = state.token ? { Authorization: 'Bearer ' + state.token } : {};
    const res = await fetch(path, { headers: headers, cache: 'no-store', credentials: 'omit' });
    if (res.status === 401) throw new AuthError(state.token ? 'the token was refused' : 'a bearer token is needed');
    if (!res.ok) throw new Error(path + ': HTTP ' + res.status);
    return res.json();
  }

  // ---- formatting ----

  function humanBytes(bytes) {
    if (bytes === null || bytes === undefined) return '-';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let value = Number(bytes);
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (unit === 0 ? value.toFixed(0) : value.toFixed(value < 10 ? 2 : 1)) + ' ' + units[unit];
  }

  function loss(value) { return value === null || value === undefined ? '-' : Number(value).toFixed(4); }

  function ago(ms) {
    if (ms < 0) ms = 0;
    if (ms < 60000) return (ms / 1000).toFixed(1) + ' s ago';
    if (ms < 3600000) return Math.floor(ms / 60000) + ' min ago';
    return Math.floor(ms / 3600000) + ' h ago';
  }

  function clockTime(unixMs) { return unixMs ? new Date(unixMs).toLocaleTimeString() : '-'; }

  // ---- DOM helpers ----

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function row(attrs, cells) {
    const tr = el('tr', attrs);
    for (const cell of cells) {
      const td = el('td');
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
      tr.appendChild(td);
    }
    return tr;
  }

  function setStatus(kind, text) {
    const node = document.getElementById('status');
    node.dataset.state = kind;
    node.textContent = text;
  }

  // ---- jobs ----

  function stateClass(jobState) {
    return 'state-' + String(jobState).toLowerCase().replace(/[^a-z]+/g, '-');
  }

  function progressCell(job) {
    const wrap = el('span', { class: 'progress' });
    const bar = el('progress', { max: String(Math.max(1, job.total_rounds)), value: String(job.round) });
    wrap.appendChild(bar);
    wrap.appendChild(el('span', {}, ' ' + job.round + ' / ' + job.total_rounds));
    return wrap;
  }

  function renderJobs(jobs) {
    const body = document.getElementById('jobs-body');
    body.replaceChildren();
    document.getElementById('jobs-empty').hidden = jobs.length > 0;
    for (const job of jobs) {
      const stateNode = el('span', { class: 'badge ' + stateClass(job.state) }, job.state);
      const tr = row({ class: 'job-row', 'data-job-id': job.job_id, 'data-state': job.state }, [
        job.job_id, job.name || '-', job.mode, stateNode, progressCell(job), loss(job.heldout_loss),
        loss(job.train_loss), humanBytes(job.bytes_up), humanBytes(job.bytes_down), clockTime(job.updated_unix_ms)]);
      if (job.job_id === state.selectedJob) tr.classList.add('selected');
      tr.addEventListener('click', function () {
        state.selectedJob = job.job_id;
        state.userSelected = true;
        refresh();
      });
      body.appendChild(tr);
    }
  }

  // The job the detail shows: the user's pick, else the newest running job, else the newest job.
  function chooseJob(jobs) {
    if (state.userSelected && jobs.some(function (j) { return j.job_id === state.selectedJob; })) return state.selectedJob;
    const newest = jobs.slice().sort(function (a, b) { return b.created_unix_ms - a.created_unix_ms; });
    const running = newest.find(function (j) { return j.state === 'RUNNING'; });
    const pick = running || newest[0];
    return pick ? pick.job_id : null;
  }

  // ---- charts ----

  const CHART = { width: 640, height: 280, left: 64, right: 16, top: 14, bottom: 36 };

  function scale(domain, range) {
    const span = domain[1] - domain[0] || 1;
    return function (v) { return range[0] + (v - domain[0]) / span * (range[1] - range[0]); };
  }

  function ticks(lo, hi, count) {
    const out = [];
    for (let i = 0; i <= count; i += 1) out.push(lo + (hi - lo) * i / count);
    return out;
  }

  // Round numbers to label: about ten of them, first to last.
  function roundTicks(first, last) {
    const out = [];
    const step = Math.max(1, Math.ceil((last - first) / 10));
    for (let r = first; r <= last; r += step) out.push(r);
    return out;
  }

  // Axes, grid and labels; returns the x and y scales of the plot area.
  function drawAxes(root, xDomain, yDomain, yLabel, xTicks) {
    const x = scale(xDomain, [CHART.left, CHART.width - CHART.right]);
    const y = scale(yDomain, [CHART.height - CHART.bottom, CHART.top]);
    const axes = svg('g', { class: 'axes' });
    for (const v of ticks(yDomain[0], yDomain[1], 4)) {
      axes.appendChild(svg('line', { class: 'grid', x1: CHART.left, x2: CHART.width - CHART.right, y1: y(v), y2: y(v) }));
      axes.appendChild(svg('text', { class: 'tick', x: CHART.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, yLabel(v)));
    }
    for (const r of xTicks) {
      axes.appendChild(svg('text', { class: 'tick', x: x(r), y: CHART.height - CHART.bottom + 16, 'text-anchor': 'middle' }, String(r)));
    }
    axes.appendChild(svg('text', { class: 'axis-label', x: (CHART.left + CHART.width - CHART.right) / 2, y: CHART.height - 4, 'text-anchor': 'middle' }, 'round'));
    axes.appendChild(svg('line', { class: 'axis', x1: CHART.left, x2: CHART.width - CHART.right, y1: CHART.height - CHART.bottom, y2: CHART.height - CHART.bottom }));
    root.appendChild(axes);
    return { x: x, y: y };
  }

  function emptyChart(root, text) {
    root.appendChild(svg('text', { class: 'empty-chart', x: CHART.width / 2, y: CHART.height / 2, 'text-anchor': 'middle' }, text));
  }

  // One loss series: a path through its points (rounds with a measured loss) and a dot per point.
  function drawSeries(root, scales, points, name) {
    const group = svg('g', { class: 'series ' + name });
    const d = points.map(function (p, i) { return (i === 0 ? 'M' : 'L') + scales.x(p[0]).toFixed(1) + ',' + scales.y(p[1]).toFixed(1); }).join(' ');
    group.appendChild(svg('path', { id: 'loss-' + name, class: 'line ' + name, d: d, 'data-points': points.length }));
    for (const p of points) {
      const dot = svg('circle', { class: 'point ' + name, cx: scales.x(p[0]).toFixed(1), cy: scales.y(p[1]).toFixed(1), r: 3, 'data-round': p[0], 'data-loss': p[1] });
      dot.appendChild(svg('title', {}, name + ' loss ' + loss(p[1]) + ' at round ' + p[0]));
      group.appendChild(dot);
    }
    root.appendChild(group);
  }

  function renderLossChart(rounds) {
    const root = document.getElementById('loss-chart');
    root.replaceChildren();
    const heldout = rounds.filter(function (r) { return r.heldout_loss !== null; }).map(function (r) { return [r.round, r.heldout_loss]; });
    const train = rounds.filter(function (r) { return r.train_loss !== null; }).map(function (r) { return [r.round, r.train_loss]; });
    root.dataset.rounds = String(rounds.length);
    if (heldout.length + train.length === 0) return emptyChart(root, 'no committed round yet');
    const values = heldout.concat(train).map(function (p) { return p[1]; });
    let lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    const pad = (hi - lo) * 0.08 || 0.1;
    lo -= pad; hi += pad;
    const first = rounds[0].round, last = rounds[rounds.length - 1].round;
    const scales = drawAxes(root, [first, Math.max(last, first + 1)], [lo, hi], function (v) { return v.toFixed(2); }, roundTicks(first, last));
    drawSeries(root, scales, train, 'train');
    drawSeries(root, scales, heldout, 'heldout');
  }

  function renderBytesChart(rounds, mode) {
    const root = document.getElementById('bytes-chart');
    root.replaceChildren();
    root.dataset.rounds = String(rounds.length);
    const cluster = mode === 'cluster';
    document.getElementById('bytes-caption').textContent = cluster ? 'Bytes per round, across and inside islands' : 'Bytes per round';
    document.getElementById('bytes-key-island').hidden = !cluster;
    const note = document.getElementById('bytes-note');
    note.hidden = !cluster;
    const series = [['up', 'bytes_up'], ['down', 'bytes_down']];
    if (cluster) {
      series.push(['island', 'island_bytes']);
      const sum = function (key) { return rounds.reduce(function (s, r) { return s + (r[key] || 0); }, 0); };
      const across = sum('bytes_up') + sum('bytes_down'), inside = sum('island_bytes');
      note.textContent = 'Up and down cross the slow links between islands (' + humanBytes(across) + ' in all); the islands\' all-reduce stays inside them (' + humanBytes(inside) + ', ' + (across > 0 ? (inside / across).toFixed(1) + '\u00d7' : '-') + ').';
    } else {
      note.textContent = '';
    }
    if (rounds.length === 0) return emptyChart(root, 'no committed round yet');
    const hi = Math.max(1, Math.max.apply(null, rounds.map(function (r) { return Math.max.apply(null, series.map(function (s) { return r[s[1]] || 0; })); }))) * 1.08;
    const first = rounds[0].round, last = rounds[rounds.length - 1].round;
    const scales = drawAxes(root, [first - 0.5, last + 0.5], [0, hi], humanBytes, roundTicks(first, last));
    const slot = (scales.x(first + 0.5) - scales.x(first - 0.5));
    const width = Math.max(1, slot * 0.72 / series.length);
    const bars = svg('g', { class: 'bars' });
    for (const r of rounds) {
      const base = scales.y(0);
      for (let i = 0; i < series.length; ++i) {
        const kind = series[i][0], value = r[series[i][1]] || 0, offset = (i - series.length / 2) * width;
        const bar = svg('rect', { class: 'bar ' + kind, x: (scales.x(r.round) + offset).toFixed(1), y: scales.y(value).toFixed(1), width: width.toFixed(1), height: Math.max(0, base - scales.y(value)).toFixed(1), 'data-round': r.round, 'data-bytes': value });
        bar.appendChild(svg('title', {}, 'round ' + r.round + ': ' + humanBytes(value) + ' ' + kind));
        bars.appendChild(bar);
      }
    }
    root.appendChild(bars);
  }

  function renderIslands(islands) {
    const body = document.getElementById('islands-body');
    body.replaceChildren();
    document.getElementById('islands-block').hidden = islands.length === 0;
    for (const island of islands) {
      body.appendChild(row({ class: 'island-row', 'data-island-id': island.island_id }, [
        island.island_id, island.leader || '-', island.members.join(', '), String(island.incarnation),
        island.reported ? 'yes' : 'no', String(island.reforms)]));
    }
  }

  function renderDetail(detail) {
    const job = detail.job;
    document.getElementById('job-detail').hidden = false;
    const title = document.getElementById('job-title');
    title.textContent = job.job_id + (job.name ? ' (' + job.name + ')' : '') + ': ' + job.state + ', round ' + job.round + ' of ' + job.total_rounds;
    title.dataset.jobId = job.job_id;
    renderLossChart(detail.rounds);
    renderBytesChart(detail.rounds, job.mode);
    renderIslands(detail.islands || []);
  }

  // ---- workers ----

  function capabilityText(caps) {
    const gpus = caps.gpus.length === 0 ? 'none' : caps.gpus.map(function (g) { return g.name + ' (' + humanBytes(g.memory_bytes) + ')'; }).join(', ');
    const nics = caps.nics.length === 0 ? '-' : caps.nics.map(function (n) {
      return n.name + ' ' + n.kind + (n.speed_mbps ? ' ' + (n.speed_mbps >= 1000 ? n.speed_mbps / 1000 + ' Gb/s' : n.speed_mbps + ' Mb/s') : '') + (n.fabric_id ? ' [' + n.fabric_id + ']' : '');
    }).join(', ');
    const datasets = caps.datasets.length === 0 ? '-' : caps.datasets.map(function (d) { return d.name + ' (' + d.samples + ')'; }).join(', ');
    return { gpus: gpus, nics: nics, datasets: datasets };
  }

  function renderWorkers(view) {
    const body = document.getElementById('workers-body');
    body.replaceChildren();
    document.getElementById('workers-empty').hidden = view.workers.length > 0;
    for (const w of view.workers) {
      const caps = capabilityText(w.capabilities);
      const missed = w.missed_heartbeats > 0 ? ' (' + w.missed_heartbeats + ' missed)' : '';
      const live = el('span', { class: 'badge live-' + w.liveness }, w.liveness + missed);
      const tasklet = w.job_id ? w.job_id + ' round ' + w.round : '-';
      body.appendChild(row({ class: 'worker-row', 'data-worker-id': w.worker_id, 'data-liveness': w.liveness }, [
        w.worker_id + (w.hostname ? ' @ ' + w.hostname : ''), live, ago(view.now_unix_ms - w.last_seen_unix_ms),
        w.state || '-', tasklet, String(w.capabilities.cpu_cores), humanBytes(w.capabilities.memory_bytes), caps.gpus,
        caps.nics, caps.datasets, w.capabilities.software_version || '-']));
    }
  }

  // ---- the poll loop ----

  let timer = null;

  async function refresh() {
    if (timer !== null) { window.clearTimeout(timer); timer = null; }
    try {
      const [jobs, workers] = await Promise.all([getJson('api/jobs'), getJson('api/workers')]);
      state.selectedJob = chooseJob(jobs);
      renderJobs(jobs);
      if (state.selectedJob) renderDetail(await getJson('api/jobs/' + encodeURIComponent(state.selectedJob)));
      renderWorkers(workers);
      showTokenForm(false);
      setStatus('live', 'live');
      document.getElementById('updated').textContent = 'last update ' + new Date().toLocaleTimeString();
    } catch (err) {
      if (err instanceof AuthError) showTokenForm(true);
      setStatus(err instanceof AuthError ? 'auth' : 'error', err.message);
    }
    timer = window.setTimeout(refresh, POLL_MS);
  }

  readToken();
  refresh();
})();
