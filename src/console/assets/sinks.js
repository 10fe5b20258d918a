// The sinks view: each sink's type, connection, queue and counters (GET /api/sinks), refreshed
// every 2 s; a forward sink's dead letters with replay buttons for one and for all.

import { h, clear, append, clock, pretty, cut } from './dom.js';
import * as api from './api.js';

const cell = (label, v) => h('td', { 'data-label': label }, v == null ? '—' : String(v));

function connWord(c) {
  if (c === null || c === undefined) return h('span', { class: 'muted' }, 'n/a');
  return h('span', { class: `badge ${c ? 'rank-active' : 'rank-disconnected'}` }, c ? 'connected' : 'disconnected');
}

export function sinksView(main) {
  const result = h('p', { class: 'result', role: 'status', 'aria-live': 'polite', id: 'result', hidden: true });
  const body = h('tbody');
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const dead = h('div', { id: 'dead-letters' });
  main.append(
    h('section', { class: 'panel' },
      h('div', { class: 'panel-head' }, h('h2', null, 'Sinks'),
        h('button', { type: 'button', 'aria-label': 'Refresh sinks', onclick: () => load() }, 'Refresh')),
      error,
      h('div', { class: 'table-wrap' },
        h('table', { id: 'sinks', class: 'sinks' },
          h('thead', null, h('tr', null, ['Name', 'Type', 'Connection', 'Queue', 'Delivered', 'Failed', 'Dropped', 'Retries', 'Pending', 'Dead letters', 'Restarts']
            .map((t) => h('th', { scope: 'col' }, t)))),
          body))),
    result, dead);

  const report = (text, ok) => { result.textContent = text; result.className = `result ${ok ? 'ok' : 'fail'}`; result.hidden = false; };

  async function replay(name, dlId) {
    const q = dlId == null ? '' : `?id=${encodeURIComponent(dlId)}`;
    const r = await api.request('POST', `/api/sinks/${encodeURIComponent(name)}/dead-letters/replay${q}`);
    const what = dlId == null ? 'all dead letters' : `dead letter ${dlId}`;
    report(r.ok ? `Replayed ${what} of ${name}: ${r.body?.replayed ?? 0} re-queued, ${r.body?.pending ?? '?'} pending.`
      : `Replay of ${what} of ${name} failed — ${api.describe(r)}`, r.ok);
    load();
  }

  async function deadLetters(name) {
    const r = await api.request('GET', `/api/sinks/${encodeURIComponent(name)}/dead-letters?limit=100`);
    const list = r.body?.deadLetters;
    const sec = h('section', { class: 'panel', 'aria-label': `Dead letters of ${name}` },
      h('div', { class: 'panel-head' },
        h('h2', null, `Dead letters of ${name}`, r.ok ? ` (${r.body.total})` : ''),
        h('button', { type: 'button', 'aria-label': `Replay all dead letters of ${name}`, disabled: !(list && list.length), onclick: () => replay(name) }, 'Replay all')));
    if (!r.ok || !Array.isArray(list)) sec.append(h('p', { class: 'error' }, api.describe(r)));
    else if (!list.length) sec.append(h('p', { class: 'muted' }, 'No dead letters.'));
    else {
      sec.append(h('ol', { class: 'feed' }, list.map((d) => h('li', null,
        h('div', { class: 'dl' },
          h('details', null,
            h('summary', null, `#${d.id} ${clock(d.deadAt)} ${d.event ?? ''} @ ${d.instanceId ?? '?'} — ${cut(d.lastError, 100)}`),
            h('pre', { class: 'json' }, pretty(d))),
          h('button', { type: 'button', 'aria-label': `Replay dead letter ${d.id} of ${name}`, onclick: () => replay(name, d.id) }, 'Replay'))))));
    }
    return sec;
  }

  let busy = false;
  let deadKey = null;
  async function load(force = true) {
    if (busy) return;
    busy = true;
    try {
      const r = await api.request('GET', '/api/sinks');
      if (!r.ok || !Array.isArray(r.body?.sinks)) {
        error.textContent = `Could not load the sinks: ${api.describe(r)}`;
        error.hidden = false;
        return;
      }
      error.hidden = true;
      append(clear(body), r.body.sinks.map((s) => h('tr', { dataset: { sink: s.name } },
        h('th', { scope: 'row', 'data-label': 'Name' }, s.name), cell('Type', s.type),
        h('td', { 'data-label': 'Connection' }, connWord(s.connected)),
        cell('Queue', `${s.queueDepth} / ${s.queueCapacity}`), cell('Delivered', s.delivered),
        cell('Failed', s.failed), cell('Dropped', s.dropped), cell('Retries', s.retries),
        cell('Pending', s.pending), cell('Dead letters', s.deadLetters), cell('Restarts', s.restarts))));
      const forward = r.body.sinks.filter((s) => s.type === 'forward');
      // Dead letters are rebuilt only when they changed, so an expanded entry stays open.
      const key = forward.map((s) => `${s.name}:${s.deadLetters}:${s.pending}`).join(',');
      if (!force && key === deadKey) return;
      deadKey = key;
      const sections = await Promise.all(forward.map((s) => deadLetters(s.name)));
      append(clear(dead), sections);
    } finally {
      busy = false;
    }
  }
  load();
  const timer = setInterval(() => load(false), 2000);
  return { unmount() { clearInterval(timer); } };
}
