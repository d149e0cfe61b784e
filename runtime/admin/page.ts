/**
 * The web page the daemon serves at `/` with `--admin-port`: log in (a bearer token
 * from `POST /api/tokens`, kept in the tab's sessionStorage), then pipelines (with
 * "run now" for operators), schedules (enable/disable buttons, next due time, last
 * firing), recent runs with their status, counts and errors, and a throughput chart
 * (records per second of each recent run). It polls the API every 2 seconds. One
 * self-contained HTML document, no build step, no outside resources; every text from
 * the API is set as text, never as HTML.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sluice</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2330; background: #f6f7f9; }
  body { margin: 0; }
  header { display: flex; align-items: center; gap: 1rem; padding: .6rem 1.2rem; background: #1d2330; color: #fff; }
  header h1 { font-size: 1.1rem; margin: 0; font-weight: 600; }
  header .who { margin-left: auto; font-size: .9rem; opacity: .85; }
  main { padding: 1rem 1.2rem; display: grid; gap: 1.2rem; }
  section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .8rem 1rem; }
  h2 { font-size: 1rem; margin: 0 0 .6rem; }
  table { border-collapse: collapse; width: 100%; font-size: .88rem; }
  th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #eef0f3; vertical-align: top; }
  th { font-weight: 600; color: #555e6e; }
  button { font: inherit; font-size: .85rem; padding: .2rem .7rem; border-radius: 4px; border: 1px solid #9aa3b2; background: #fff; cursor: pointer; }
  button:hover { background: #eef1f6; }
  .badge { display: inline-block; padding: .05rem .5rem; border-radius: 9px; font-size: .8rem; }
  .succeeded, .on { background: #dcf5e3; color: #1a6b34; }
  .failed { background: #fbe0e0; color: #9b1c1c; }
  .running { background: #e0ecfb; color: #1c4f9b; }
  .interrupted, .off { background: #eee; color: #555; }
  .err { color: #9b1c1c; font-size: .8rem; }
  #login { max-width: 320px; margin: 4rem auto; display: grid; gap: .6rem; }
  #login input { font: inherit; padding: .4rem; }
  #login-error { color: #9b1c1c; min-height: 1.2em; }
  .muted { color: #7a8394; }
  svg text { font-size: 10px; fill: #555e6e; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<header><h1>sluice</h1><span class="who" id="who"></span><button id="logout" hidden>Log out</button></header>
<form id="login" hidden>
  <h2>Log in</h2>
  <input id="user" name="user" autocomplete="username" placeholder="user" required>
  <input id="password" name="password" type="password" autocomplete="current-password" placeholder="password" required>
  <button type="submit" id="login-button">Log in</button>
  <div id="login-error" role="alert"></div>
</form>
<main id="app" hidden>
  <section>
    <h2>Schedules</h2>
    <table><thead><tr><th>id</th><th>pipeline</th><th>when</th><th>next</th><th>last</th><th>state</th><th></th></tr></thead>
    <tbody id="schedules"></tbody></table>
  </section>
  <section>
    <h2>Recent runs</h2>
    <svg id="chart" width="100%" height="120" role="img" aria-label="records per second of recent runs"></svg>
    <table><thead><tr><th>started</th><th>pipeline</th><th>trigger</th><th>status</th><th>items</th><th>records</th><th>seconds</th><th>errors</th></tr></thead>
    <tbody id="runs"></tbody></table>
  </section>
  <section>
    <h2>Pipelines</h2>
    <table><thead><tr><th>name</th><th>description</th><th>params</th><th></th></tr></thead>
    <tbody id="pipelines"></tbody></table>
  </section>
</main>
<script>
(() => {
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem('sluice-token');
  let me = null;
  let timer = null;

  async function call(method, path, body, auth) {
    const headers = { 'x-sluice-page': '1' };
    if (auth) headers.authorization = auth;
    else if (token) headers.authorization = 'Bearer ' + token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    const data = text ? JSON.parse(text) : null;
    if (res.status === 401 && !auth) { logout(false); throw new Error('logged out'); }
    if (!res.ok) throw new Error((data && data.error) || res.statusText);
    return data;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) { const td = document.createElement('td'); if (c instanceof Node) td.append(c); else td.textContent = c == null ? '' : String(c); tr.append(td); }
    return tr;
  }
  const when = (iso) => iso ? new Date(iso).toLocaleString() : '';
  const canOperate = () => me && (me.role === 'operator' || me.role === 'admin');

  function showLogin(message) {
    $('app').hidden = true; $('logout').hidden = true; $('who').textContent = '';
    $('login').hidden = false; $('login-error').textContent = message || '';
  }

  async function start() {
    try {
      me = await call('GET', '/api/me');
    } catch { return showLogin(); }
    $('login').hidden = true; $('app').hidden = false; $('logout').hidden = false;
    $('who').textContent = me.name + ' (' + me.role + ')';
    await Promise.all([loadPipelines(), refresh()]);
    clearInterval(timer);
    timer = setInterval(() => refresh().catch(() => {}), 2000);
  }

  async function refresh() {
    await Promise.all([loadSchedules(), loadRuns()]);
  }

  async function loadPipelines() {
    const list = await call('GET', '/api/pipelines');
    const body = $('pipelines'); body.replaceChildren();
    for (const p of list) {
      const params = Object.keys((p.params && p.params.properties) || {}).join(', ');
      let action = '';
      if (canOperate() && p.triggerable) {
        action = el('button', 'Run now');
        action.dataset.testid = 'run-' + p.name;
        action.onclick = async () => { try { await call('POST', '/api/pipelines/' + encodeURIComponent(p.name) + '/runs', { params: {} }); await loadRuns(); } catch (e) { alert(e.message); } };
      }
      const tr = row([p.name, p.description, params, action]);
      tr.dataset.pipeline = p.name;
      body.append(tr);
    }
  }

  async function loadSchedules() {
    const list = await call('GET', '/api/schedules');
    const body = $('schedules'); body.replaceChildren();
    if (!list.length) body.append(row([el('span', 'no schedules', 'muted')]));
    for (const s of list) {
      const state = el('span', s.enabled ? 'enabled' : 'disabled', 'badge ' + (s.enabled ? 'on' : 'off'));
      state.dataset.testid = 'state-' + s.id;
      let button = '';
      if (canOperate()) {
        button = el('button', s.enabled ? 'Disable' : 'Enable');
        button.dataset.testid = 'toggle-' + s.id;
        button.onclick = async () => {
          button.disabled = true;
          try { await call('POST', '/api/schedules/' + encodeURIComponent(s.id) + (s.enabled ? '/disable' : '/enable')); } catch (e) { alert(e.message); }
          await loadSchedules();
        };
      }
      const cron = typeof s.cron === 'string' ? s.cron : JSON.stringify(s.cron);
      const last = s.lastFire ? s.lastFire.outcome + ' ' + when(s.lastFire.due) : '';
      const tr = row([s.id, s.pipeline, cron + (s.timezone !== 'UTC' ? ' (' + s.timezone + ')' : ''), when(s.nextDue), last, state, button]);
      tr.dataset.schedule = s.id;
      body.append(tr);
    }
  }

  async function loadRuns() {
    const runs = await call('GET', '/api/runs?limit=30');
    const body = $('runs'); body.replaceChildren();
    if (!runs.length) body.append(row([el('span', 'no runs yet', 'muted')]));
    for (const r of runs) {
      const status = el('span', r.status, 'badge ' + r.status);
      const errors = el('div');
      for (const e of (r.errors || []).slice(0, 3)) errors.append(el('div', (e.item ? e.item + ': ' : '') + e.message, 'err'));
      const tr = row([when(r.startedAt), r.pipeline, r.trigger, status, r.counts.items, r.counts.records, r.durationMs == null ? '' : (r.durationMs / 1000).toFixed(2), errors]);
      tr.dataset.run = r.id;
      tr.dataset.trigger = r.triggerId || '';
      body.append(tr);
    }
    chart(runs.filter((r) => r.durationMs != null).reverse());
  }

  function chart(runs) {
    const svg = $('chart');
    const width = svg.clientWidth || 600, height = 120, pad = 24;
    svg.replaceChildren();
    const ns = 'http://www.w3.org/2000/svg';
    const rates = runs.map((r) => r.counts.records / Math.max(r.durationMs / 1000, 0.001));
    const max = Math.max(1, ...rates);
    const w = (width - pad) / Math.max(runs.length, 1);
    runs.forEach((r, i) => {
      const h = (rates[i] / max) * (height - pad);
      const rect = document.createElementNS(ns, 'rect');
      rect.setAttribute('x', String(pad + i * w + 1)); rect.setAttribute('width', String(Math.max(w - 2, 1)));
      rect.setAttribute('y', String(height - pad / 2 - h)); rect.setAttribute('height', String(h));
      rect.setAttribute('fill', r.status === 'failed' ? '#d9534f' : '#4a7bd0');
      const title = document.createElementNS(ns, 'title');
      title.textContent = r.pipeline + ': ' + Math.round(rates[i]) + ' records/s';
      rect.append(title);
      svg.append(rect);
    });
    const label = document.createElementNS(ns, 'text');
    label.setAttribute('x', '0'); label.setAttribute('y', '10');
    label.textContent = Math.round(max) + ' records/s';
    svg.append(label);
  }

  async function logout(tell) {
    clearInterval(timer);
    if (tell && token) await call('DELETE', '/api/tokens/current').catch(() => {});
    token = null; me = null;
    sessionStorage.removeItem('sluice-token');
    showLogin();
  }

  $('login').onsubmit = async (ev) => {
    ev.preventDefault();
    const auth = 'Basic ' + btoa(unescape(encodeURIComponent($('user').value + ':' + $('password').value)));
    try {
      const t = await call('POST', '/api/tokens', { expiresIn: 43200 }, auth);
      token = t.token;
      sessionStorage.setItem('sluice-token', token);
      $('password').value = '';
      await start();
    } catch (e) {
      $('login-error').textContent = 'Login failed: ' + e.message;
    }
  };
  $('logout').onclick = () => logout(true);
  token ? start() : showLogin();
})();
</script>
</body>
</html>
`;
