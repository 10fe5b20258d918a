// The instances view: one card per instance with a status badge, last event and its age, the
// QR code while it should be shown, and actions; counts by status, a filter, and "new instance".

import { h, clear, append, ago, cut } from './dom.js';
import * as api from './api.js';
import * as state from './state.js';
import * as actions from './actions.js';

/** The QR image URL: wa-hub's PNG as a data URL, or the sidecar's SVG for raw QR text. */
export function qrSrc(s) {
  const q = String(s.qr).trim();
  if (/^data:image\//i.test(q)) return q;
  if (state.qrIsImage(q)) return `data:image/png;base64,${q}`;
  const v = encodeURIComponent(s.updatedAt || '');
  return api.withToken(`/api/instances/${encodeURIComponent(s.instanceId)}/qr.svg?v=${v}`);
}

/** A badge: colour by rank, and the words, so it reads without colour. */
export function badge(s) {
  const r = state.RANKS[s.rank] || { key: 'unknown', word: 'unknown' };
  return h('span', { class: `badge rank-${r.key}`, dataset: { rank: s.rank } }, r.word);
}

export function instancesView(main) {
  const cards = new Map();
  const result = h('p', { class: 'result', role: 'status', 'aria-live': 'polite', id: 'result', hidden: true });
  const counts = h('div', { class: 'counts', 'aria-label': 'Instances by status' });
  const filter = h('input', { type: 'search', id: 'filter', placeholder: 'Filter by id', 'aria-label': 'Filter by instance id' });
  const statusSel = h('select', { id: 'status-filter', 'aria-label': 'Filter by status' },
    h('option', { value: '' }, 'All statuses'),
    state.RANKS.map((r) => h('option', { value: String(r.rank) }, r.word)));
  const name = h('input', { id: 'new-name', placeholder: 'new instance name', required: true, 'aria-label': 'New instance name', autocomplete: 'off' });
  const createForm = h('form', { class: 'create', id: 'create-form', onsubmit: async (e) => {
    e.preventDefault();
    const n = name.value.trim();
    if (!n) return;
    const btn = createForm.querySelector('button');
    btn.disabled = true;
    try { actions.show(result, await actions.create(n)); } finally { btn.disabled = false; }
  } }, name, h('button', { type: 'submit', 'aria-label': 'Create instance' }, 'Create'));
  const grid = h('div', { class: 'grid', id: 'instances', 'aria-label': 'Instances' });
  const empty = h('p', { class: 'muted', id: 'empty', hidden: true });

  main.append(
    h('section', { class: 'toolbar', 'aria-label': 'Instances toolbar' }, counts,
      h('div', { class: 'filters' }, filter, statusSel), createForm),
    result, empty, grid);

  const report = (r) => actions.show(result, r);

  function card(s) {
    const id = s.instanceId;
    const c = {
      badge: null,
      status: h('span', { class: 'word' }),
      warn: h('span', { class: 'badge warn', hidden: true }, '⚠ timed out'),
      last: h('span', { class: 'last' }),
      age: h('span', { class: 'age' }),
      preview: h('p', { class: 'preview', hidden: true }),
      qrBox: h('div', { class: 'qr-box', hidden: true }),
      qrKey: null,
    };
    c.head = h('div', { class: 'card-head' },
      h('a', { href: `#/i/${encodeURIComponent(id)}`, class: 'id', title: `Details of ${id}` }, id));
    c.el = h('article', { class: 'card', dataset: { id }, 'aria-label': `Instance ${id}` },
      c.head,
      h('div', { class: 'state' }, c.status, c.warn),
      h('div', { class: 'event' }, c.last, ' · ', c.age),
      c.preview, c.qrBox,
      actions.buttons(h, id, report));
    cards.set(id, c);
    return c;
  }

  function update(c, s) {
    const b = badge(s);
    if (c.badge) c.badge.replaceWith(b); else c.head.append(b);
    c.badge = b;
    c.status.textContent = s.displayStatus ?? '';
    c.warn.hidden = !s.timedOut;
    const showQr = s.showQr && typeof s.qr === 'string' && s.qr.trim() !== '';
    const key = showQr ? `${s.qr.length}:${s.qr.slice(-32)}:${state.qrIsImage(s.qr) ? '' : s.updatedAt}` : null;
    if (key !== c.qrKey) {
      c.qrKey = key;
      clear(c.qrBox);
      if (showQr) {
        c.qrBox.append(h('img', { class: 'qr', src: qrSrc(s), alt: `QR code to link ${s.instanceId}`, width: 264, height: 264 }));
      }
      c.qrBox.hidden = !showQr;
    }
    c.el.dataset.rank = s.rank;
    lastEvent(c, s.instanceId);
  }

  function lastEvent(c, id) {
    const ev = state.lastEvent.get(id);
    const s = state.instances.get(id);
    // Webhooks older than the stream's initial list are not known here: the status's own
    // time stands in for them.
    const since = Date.parse(s?.updatedAt);
    c.last.textContent = ev ? `last event: ${ev.event}` : Number.isFinite(since) ? 'status since' : 'no event yet';
    c.lastAt = ev ? ev.at : since;
    c.age.textContent = ago(c.lastAt);
    const p = ev?.preview ? cut(ev.preview, 140) : '';
    const text = s?.qrError && s.rank === 1 ? `QR error: ${s.qrError}` : p;
    c.preview.textContent = text;
    c.preview.hidden = !text;
  }

  function visible(s) {
    const f = filter.value.trim().toLowerCase();
    if (f && !s.instanceId.toLowerCase().includes(f)) return false;
    if (statusSel.value !== '' && String(s.rank) !== statusSel.value) return false;
    return true;
  }

  function refreshCounts() {
    const n = [0, 0, 0, 0];
    let timedOut = 0;
    for (const s of state.instances.values()) {
      if (n[s.rank] !== undefined) n[s.rank] += 1;
      if (s.timedOut) timedOut += 1;
    }
    append(clear(counts), [
      h('span', { class: 'count total' }, `${state.instances.size} instance${state.instances.size === 1 ? '' : 's'}`),
      state.RANKS.map((r) => h('span', { class: `count badge rank-${r.key}`, dataset: { rank: r.rank } }, `${r.word}: ${n[r.rank]}`)),
      timedOut ? h('span', { class: 'count badge warn' }, `⚠ timed out: ${timedOut}`) : null]);
  }

  function refreshEmpty() {
    let shown = 0;
    for (const c of cards.values()) if (!c.el.hidden) shown += 1;
    if (state.instances.size === 0) {
      empty.textContent = state.readiness.ready === false
        ? `wa-hub is down (${state.readiness.error}), so no instances can be listed.`
        : 'No instances yet. Create one above; its QR code will appear here.';
    } else {
      empty.textContent = shown ? '' : 'No instance matches the filter.';
    }
    empty.hidden = !empty.textContent;
  }

  function renderAll() {
    clear(grid);
    cards.clear();
    const ids = [...state.instances.keys()].sort();
    const frag = document.createDocumentFragment();
    for (const id of ids) {
      const s = state.instances.get(id);
      const c = card(s);
      update(c, s);
      c.el.hidden = !visible(s);
      frag.append(c.el);
    }
    grid.append(frag);
    refreshCounts();
    refreshEmpty();
  }

  function upsert(id) {
    const s = state.instances.get(id);
    if (!s) return;
    let c = cards.get(id);
    if (!c) {
      c = card(s);
      const after = [...cards.keys()].filter((k) => k > id).sort()[0];
      const next = after && cards.get(after)?.el;
      if (next && next.parentNode === grid) grid.insertBefore(c.el, next); else grid.append(c.el);
    }
    update(c, s);
    c.el.hidden = !visible(s);
    refreshCounts();
    refreshEmpty();
  }

  const applyFilter = () => {
    for (const [id, c] of cards) c.el.hidden = !visible(state.instances.get(id));
    refreshEmpty();
  };
  filter.addEventListener('input', applyFilter);
  statusSel.addEventListener('change', applyFilter);

  const unsubscribe = state.subscribe((ch) => {
    if (ch.kind === 'reload') renderAll();
    else if (ch.kind === 'status') upsert(ch.id);
    else if (ch.kind === 'event') { const c = cards.get(ch.id); if (c) lastEvent(c, ch.id); }
    else if (ch.kind === 'ready') refreshEmpty();
  });
  const tick = setInterval(() => {
    const now = Date.now();
    for (const c of cards.values()) if (!c.el.hidden) c.age.textContent = ago(c.lastAt, now);
  }, 1000);

  renderAll();
  performance.mark('instances-rendered');
  requestAnimationFrame(() => setTimeout(() => performance.mark('instances-painted'), 0));
  return { unmount() { unsubscribe(); clearInterval(tick); } };
}
