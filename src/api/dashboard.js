// LeadRouter operations page: the capacity feed (websocket) and the REST API of the server that
// served it, nothing else. Text from the API is only ever set as textContent.
'use strict';

const $ = (sel) => document.querySelector(sel);
const KEY = 'leadrouter.key';
const state = { brokers: new Map(), caps: new Map(), selected: null, lastOps: null, socket: null, authWait: null, loading: null };

/** An element with attributes, properties and children (strings become text nodes). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') el.className = v;
    else if (k === 'on') for (const [ev, f] of Object.entries(v)) el.addEventListener(ev, f);
    else if (k === 'data') for (const [d, x] of Object.entries(v)) el.dataset[d] = x;
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

const pct = (x) => (x === null || x === undefined || Number.isNaN(x) ? '–' : (100 * x).toFixed(1) + '%');
const num = (x, d = 0) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const money = (x) => (x === null || x === undefined ? '–' : '$' + num(x, 0));
const ratio = (a, b) => (b > 0 ? a / b : null);
const minutes = (s) => (s === null || s === undefined ? '–' : s < 90 ? num(s, 0) + ' s' : num(s / 60, 1) + ' min');

function key() { return sessionStorage.getItem(KEY) || ''; }

/** Asks for a key once; every caller waits for the same answer. */
function askKey(status) {
  if (!state.authWait) {
    $('#keywhy').textContent = status === 403 ? 'That key was refused. Enter a valid API key (kept for this browser tab only).' : 'This engine needs an API key. It is kept for this browser tab only.';
    $('#keybox').classList.add('open');
    $('#keyinput').focus();
    state.authWait = new Promise((resolve) => { state.authResolve = resolve; });
  }
  return state.authWait;
}

$('#keyform').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, $('#keyinput').value.trim());
  $('#keyinput').value = '';
  $('#keybox').classList.remove('open');
  $('#forget').hidden = false;
  const done = state.authResolve;
  state.authWait = null;
  if (done) done();
  connect();
});
$('#forget').addEventListener('click', () => { sessionStorage.removeItem(KEY); $('#forget').hidden = true; location.reload(); });

async function api(path) {
  for (;;) {
    const headers = key() ? { Authorization: 'Bearer ' + key() } : {};
    const r = await fetch(path, { headers });
    if (r.status === 401 || r.status === 403) { await askKey(r.status); continue; }
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const msg = body && body.error ? body.error.message : r.statusText;
      throw Object.assign(new Error(msg), { status: r.status });
    }
    return body;
  }
}

function showError(e) { $('#error').textContent = e ? String(e.message || e) : ''; }

// ---- brokers and the heatmap ----

/** Reloads the brokers; concurrent callers share one load. */
function loadBrokers() {
  if (!state.loading) state.loading = fetchBrokers().finally(() => { state.loading = null; });
  return state.loading;
}

async function fetchBrokers() {
  const all = [];
  for (let offset = 0; ; offset += 1000) {
    const page = await api('/api/brokers?limit=1000&offset=' + offset);
    all.push(...page.brokers);
    if (all.length >= page.total || page.brokers.length === 0) break;
  }
  state.brokers = new Map(all.map((b) => [b.id, b]));
  for (const b of all) if (!state.caps.has(b.id)) state.caps.set(b.id, { brokerId: b.id, openLeads: b.load.openLeads, seats: b.load.maxConcurrent, utilization: b.load.utilization, status: b.status, throttled: false, overloaded: false });
  $('#brokercount').textContent = all.length + ' brokers';
  renderHeatmap();
}

function colour(u) { const x = Math.max(0, Math.min(1, u || 0)); return `hsl(${Math.round(120 * (1 - x))} ${65 + 15 * x}% ${45 + 5 * Math.sin(Math.PI * x)}%)`; }

function cellClass(c) {
  return ['cell', c.status === 'away' ? 'away' : '', c.status === 'offline' ? 'offline' : '', c.throttled ? 'throttled' : '', c.overloaded ? 'overloaded' : '', state.selected === c.brokerId ? 'selected' : ''].filter(Boolean).join(' ');
}

function paintCell(el, c) {
  el.className = cellClass(c);
  el.style.background = colour(c.utilization);
  el.dataset.util = String(c.utilization);
  el.dataset.open = String(c.openLeads);
  const b = state.brokers.get(c.brokerId);
  el.title = `${b ? b.name + ' · ' : ''}${c.brokerId}\n${c.openLeads}/${c.seats} seats (${pct(c.utilization)}) · ${c.status}${c.throttled ? ' · throttled' : ''}${c.overloaded ? ' · overloaded' : ''}`;
}

function renderHeatmap() {
  const by = $('#groupby').value;
  const groups = new Map();
  for (const b of state.brokers.values()) {
    const g = by === 'state' ? (b.licenses[0] ? b.licenses[0].state : 'none') : (b.group || 'none');
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(b);
  }
  const root = $('#heatmap');
  root.replaceChildren();
  if (groups.size === 0) { root.append(h('p', { class: 'empty' }, 'No brokers yet.')); return; }
  for (const g of [...groups.keys()].sort()) {
    const cells = groups.get(g).map((b) => {
      const el = h('div', { data: { broker: b.id }, on: { click: () => openBroker(b.id) } });
      paintCell(el, state.caps.get(b.id) || { brokerId: b.id, utilization: 0, openLeads: 0, seats: 0, status: b.status });
      return el;
    });
    root.append(h('div', { class: 'group' }, h('div', { class: 'label', title: g }, g), h('div', { class: 'cells' }, cells)));
  }
}

function applyCapacity(c) {
  state.caps.set(c.brokerId, c);
  const el = document.querySelector(`.cell[data-broker="${CSS.escape(c.brokerId)}"]`);
  if (el) paintCell(el, c);
  else if (!state.brokers.has(c.brokerId)) loadBrokers().catch(showError);
  if (state.selected === c.brokerId) renderLoad(c);
}

function connect() {
  if (state.socket) { state.socket.onclose = null; state.socket.close(); }
  const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws/capacity';
  const hex = [...new TextEncoder().encode(key())].map((b) => b.toString(16).padStart(2, '0')).join('');
  const ws = key() ? new WebSocket(url, ['leadrouter', 'leadrouter.key.' + hex]) : new WebSocket(url);
  state.socket = ws;
  ws.onopen = () => { $('#conn').textContent = 'live'; $('#conn').classList.add('live'); };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === 'snapshot') msg.brokers.forEach(applyCapacity);
    else if (msg.type === 'delta') applyCapacity(msg);
  };
  ws.onclose = () => {
    $('#conn').textContent = 'reconnecting'; $('#conn').classList.remove('live');
    setTimeout(connect, 2000);
  };
}

// ---- the figures ----

function kpi(label, value, note) { return h('div', { class: 'kpi' }, h('span', {}, label), h('b', {}, value), note ? h('span', {}, note) : null); }

async function refreshOps() {
  const o = await api('/api/operations');
  const prev = state.lastOps;
  const rate = prev ? (o.decisions - prev.decisions) / Math.max(0.001, (Date.parse(o.at) - Date.parse(prev.at)) / 1000) : null;
  state.lastOps = o;
  const h1 = o.lastHour, d = o.today;
  const routed = (a) => a.assigned + a.queued;
  $('#kpis').replaceChildren(
    kpi('Decisions / s', rate === null ? '…' : num(rate, 1), num(o.decisions) + ' since start'),
    kpi('Assigned · last hour', pct(ratio(h1.assigned, routed(h1))), `${num(h1.assigned)} assigned, ${num(h1.queued)} queued`),
    kpi('Queue', num(o.queueLength), 'oldest waits ' + minutes(o.oldestWaitSeconds)),
    kpi('SLA · last hour', pct(ratio(h1.slaHits, h1.contacted)), 'first contact ' + (h1.contacted ? num(h1.contactMinutes / h1.contacted, 1) + ' min' : '–')),
    kpi('SLA · today', pct(ratio(d.slaHits, d.contacted)), 'first contact ' + (d.contacted ? num(d.contactMinutes / d.contacted, 1) + ' min' : '–')),
    kpi('Conversions · today', num(d.converted), money(d.revenue) + ' revenue'),
    kpi('Re-routes · today', num(d.rerouted), num(d.assigned) + ' first assignments'),
  );
  $('#updated').textContent = 'updated ' + new Date(o.at).toLocaleTimeString();
}

async function refreshStrategies() {
  const r = await api('/api/analytics/routing-efficiency?window=1d');
  const rows = Object.entries(r.byStrategy || {});
  $('#strategies').replaceChildren(rows.length === 0 ? h('p', { class: 'empty' }, 'No leads arrived today.') : h('table', {},
    h('tr', {}, h('th', {}, 'strategy'), h('th', { class: 'n' }, 'leads'), h('th', { class: 'n' }, 'conversion'), h('th', { class: 'n' }, 'revenue'), h('th', { class: 'n' }, 'per lead'), h('th', { class: 'n' }, 'SLA')),
    rows.map(([name, s]) => h('tr', {}, h('td', {}, name), h('td', { class: 'n' }, num(s.leads)), h('td', { class: 'n' }, pct(s.conversionRate)), h('td', { class: 'n' }, money(s.revenue)), h('td', { class: 'n' }, money(s.revenuePerLead)), h('td', { class: 'n' }, pct(s.slaCompliance))))));
}

async function refreshModel() {
  const m = await api('/api/models/status');
  const a = m.active;
  const drift = m.drift || {};
  $('#model').replaceChildren(h('table', {},
    h('tr', {}, h('th', {}, 'active version'), h('td', {}, a ? a.version : 'none (empirical-Bayes estimates)')),
    a && a.metrics ? h('tr', {}, h('th', {}, 'validation AUC'), h('td', {}, num(a.metrics.auc, 3), h('span', { class: 'muted' }, ` (baseline ${num(a.baseline.auc, 3)})`))) : null,
    h('tr', {}, h('th', {}, 'versions'), h('td', {}, num((m.versions || []).length))),
    h('tr', {}, h('th', {}, 'predictions served'), h('td', {}, num(m.predictions))),
    h('tr', {}, h('th', {}, 'drift (predicted − observed)'), h('td', {}, drift.difference === null || drift.difference === undefined ? 'not enough outcomes' : pct(drift.difference), h('span', { class: 'muted' }, ` over ${num(drift.outcomes)} outcomes`))),
    m.lastJob ? h('tr', {}, h('th', {}, 'last training job'), h('td', {}, `${m.lastJob.status}${m.lastJob.version ? ' ' + m.lastJob.version : ''}${m.lastJob.error ? ': ' + m.lastJob.error : ''}`)) : null));
}

function intervalBar(lo, hi, p) {
  const bar = h('div', { class: 'bar', title: `${pct(lo)} – ${pct(hi)}` });
  const i = h('i'); i.style.left = (100 * lo) + '%'; i.style.width = Math.max(0.5, 100 * (hi - lo)) + '%';
  const e = h('em'); e.style.left = (100 * p) + '%';
  bar.append(i, e);
  return bar;
}

async function refreshExperiments() {
  const list = (await api('/api/experiments?status=running')).experiments;
  if (list.length === 0) { $('#experiments').replaceChildren(h('p', { class: 'empty' }, 'No experiment is running.')); return; }
  const blocks = [];
  for (const x of list) {
    const r = await api('/api/experiments/' + encodeURIComponent(x.id) + '/results');
    const head = h('p', {}, h('strong', {}, x.name),
      h('span', { class: 'muted' }, ` · ${num(r.exposures)} exposures · ${num(r.runningDays, 1)} days · primary ${x.primaryMetric}${r.srm && r.srm.mismatch ? ' · sample-ratio mismatch!' : ''}`));
    const arm = (a) => h('tr', {}, h('td', {}, a.name), h('td', { class: 'n' }, num(a.exposures)), h('td', { class: 'n' }, pct(a.conversionRate)),
      h('td', {}, intervalBar(a.conversionInterval[0], a.conversionInterval[1], a.conversionRate), h('span', { class: 'muted' }, `${pct(a.conversionInterval[0])} – ${pct(a.conversionInterval[1])}`)),
      h('td', { class: 'n' }, money(a.revenuePerLead)), h('td', { class: 'n' }, pct(a.slaCompliance)), h('td', { class: 'n' }, `${pct(a.observedShare)} / ${pct(a.plannedShare)}`));
    const titles = h('tr', {}, h('th', {}, 'arm'), h('th', { class: 'n' }, 'exposures'), h('th', { class: 'n' }, 'conversion'), h('th', {}, '95% interval'),
      h('th', { class: 'n' }, 'revenue / lead'), h('th', { class: 'n' }, 'SLA'), h('th', { class: 'n' }, 'share'));
    blocks.push(h('div', { class: 'experiment' }, head, h('table', {}, titles, r.arms.map(arm))));
  }
  $('#experiments').replaceChildren(...blocks);
}

// ---- drill-downs ----

function renderLoad(c) {
  const el = $('#drill-load');
  if (el) el.textContent = `${c.openLeads} open of ${c.seats} seats (${pct(c.utilization)})${c.throttled ? ', throttled' : ''}${c.overloaded ? ', overloaded' : ''} · ${c.status}`;
}

async function openBroker(id) {
  state.selected = id;
  document.querySelectorAll('.cell.selected').forEach((e) => e.classList.remove('selected'));
  const cell = document.querySelector(`.cell[data-broker="${CSS.escape(id)}"]`);
  if (cell) cell.classList.add('selected');
  const [p, leads] = await Promise.all([api('/api/brokers/' + encodeURIComponent(id) + '/performance'), api('/api/brokers/' + encodeURIComponent(id) + '/leads')]);
  const b = state.brokers.get(id);
  const row = (label, all, recent) => h('tr', {}, h('th', {}, label), h('td', { class: 'n' }, all), h('td', { class: 'n' }, recent));
  $('#drill').replaceChildren(h('h2', {}, 'Broker'),
    h('p', { id: 'drill-broker' }, h('strong', {}, b ? b.name : id), h('span', { class: 'muted' }, ` · ${id}${b && b.group ? ' · ' + b.group : ''}`)),
    h('p', { id: 'drill-load', class: 'muted' }),
    h('table', {}, h('tr', {}, h('th', {}), h('th', { class: 'n' }, 'all time'), h('th', { class: 'n' }, `last ${p.windowDays} days`)),
      row('leads', num(p.allTime.leads), num(p.recent.leads)), row('conversion', pct(p.allTime.conversionRate), pct(p.recent.conversionRate)),
      row('SLA compliance', pct(p.allTime.slaCompliance), pct(p.recent.slaCompliance)), row('first contact', p.allTime.avgFirstContactMinutes === null ? '–' : num(p.allTime.avgFirstContactMinutes, 1) + ' min', p.recent.avgFirstContactMinutes === null ? '–' : num(p.recent.avgFirstContactMinutes, 1) + ' min'),
      row('value captured', money(p.allTime.valueCaptured), money(p.recent.valueCaptured))),
    h('h2', { style: 'margin-top:12px' }, `Open leads (${leads.length})`),
    leadTable(leads));
  const c = state.caps.get(id);
  if (c) renderLoad(c);
}

function leadTable(leads) {
  if (leads.length === 0) return h('p', { class: 'empty' }, 'None.');
  const row = (l) => h('tr', {}, h('td', {}, h('a', { class: 'lead', on: { click: () => showLead(l.leadId) } }, l.leadId)),
    h('td', {}, l.stage), h('td', {}, new Date(l.reservedAt).toLocaleTimeString()));
  return h('table', { id: 'drill-leads' }, h('tr', {}, h('th', {}, 'lead'), h('th', {}, 'stage'), h('th', {}, 'reserved')), leads.map(row));
}

function breakdownRows(bd) {
  return ['specialty', 'performance', 'capacity', 'sla', 'semantic'].filter((f) => bd[f] && typeof bd[f] === 'object' && 'contribution' in bd[f])
    .map((f) => h('tr', {}, h('td', {}, f), h('td', { class: 'n' }, num(bd[f].value, 3)), h('td', { class: 'n' }, num(bd[f].weight, 2)), h('td', { class: 'n' }, num(bd[f].contribution, 3))));
}

async function showLead(id) {
  $('#leadid').value = id;
  const out = $('#lead');
  let lead;
  try { lead = await api('/api/leads/' + encodeURIComponent(id)); } catch (e) { out.replaceChildren(h('p', { class: 'empty' }, e.status === 404 ? `No lead ${id}.` : String(e.message))); return; }
  const decisions = lead.decisions.map((d, i) => {
    const whyOut = h('div');
    const whyNot = async (broker) => {
      try {
        const w = await api('/api/leads/' + encodeURIComponent(id) + '/why-not/' + encodeURIComponent(broker));
        whyOut.replaceChildren(h('div', { class: 'verdict' }, h('strong', {}, `${broker}: ${w.verdict}`), ' — ', w.reason || ''));
      } catch (e) { whyOut.replaceChildren(h('div', { class: 'verdict' }, String(e.message))); }
    };
    const ask = h('input', { placeholder: 'any broker id' });
    return h('div', { class: 'decision' },
      h('p', {}, h('strong', {}, `Decision ${i + 1}: ${d.brokerId}`), h('span', { class: 'muted' }, ` · ${d.strategy} · score ${num(d.score, 4)} · propensity ${num(d.propensity, 3)} · ${d.eligible} eligible, ${d.scored} scored · ${new Date(d.decidedAt).toLocaleString()}`)),
      h('table', {}, h('tr', {}, h('th', {}, 'why this broker'), h('th', { class: 'n' }, 'value'), h('th', { class: 'n' }, 'weight'), h('th', { class: 'n' }, 'contribution')), breakdownRows(d.breakdown)),
      d.alternatives.length ? h('table', {}, h('tr', {}, h('th', {}, 'runner-up'), h('th', { class: 'n' }, 'score'), h('th', {})),
        d.alternatives.map((a) => h('tr', {}, h('td', {}, a.brokerId), h('td', { class: 'n' }, num(a.score, 4)), h('td', {}, h('button', { type: 'button', on: { click: () => whyNot(a.brokerId) } }, 'why not?'))))) : null,
      i === lead.decisions.length - 1 ? h('form', { class: 'controls', on: { submit: (e) => { e.preventDefault(); if (ask.value.trim()) whyNot(ask.value.trim()); } } }, 'Why not', ask, h('button', {}, 'ask')) : null,
      whyOut);
  });
  out.replaceChildren(h('p', {}, h('strong', {}, id), h('span', { class: 'muted' }, ` · ${lead.state}${lead.brokerId ? ' with ' + lead.brokerId : ''} · ${lead.events.length} events`)), ...decisions);
}

$('#leadform').addEventListener('submit', (e) => { e.preventDefault(); const id = $('#leadid').value.trim(); if (id) showLead(id).catch(showError); });
$('#groupby').addEventListener('change', renderHeatmap);

// ---- schedule ----

async function every(ms, f, wait) {
  if (wait) await new Promise((r) => setTimeout(r, ms));
  for (;;) {
    try { await f(); showError(null); } catch (e) { showError(e); }
    await new Promise((r) => setTimeout(r, ms));
  }
}

if (key()) $('#forget').hidden = false;
(async () => {
  try { await loadBrokers(); } catch (e) { showError(e); }
  connect();
  every(2000, refreshOps);
  every(15000, refreshStrategies);
  every(15000, refreshModel);
  every(10000, refreshExperiments);
  every(60000, loadBrokers, true);
})();
