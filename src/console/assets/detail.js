// One instance in detail: its status object, its recent webhooks (GET /api/events?instanceId=)
// and its API calls, both followed live from /api/stream?instanceId=. Each entry expands to its
// full JSON; "Pause" holds new entries (counted) until "Resume".

import { h, clear, clock, pretty, cut } from './dom.js';
import * as api from './api.js';
import * as state from './state.js';
import * as actions from './actions.js';
import { badge, qrSrc } from './instances.js';

const MAX_ENTRIES = 500;

/** A list of expandable entries with a pause button. */
function feed(title, id, describe) {
  let paused = false;
  const held = [];
  const seen = new Set();
  const list = h('ol', { class: 'feed', id: `${id}-list`, 'aria-label': title });
  const empty = h('p', { class: 'muted' }, 'Nothing yet.');
  const pause = h('button', { type: 'button', class: 'pause', id: `${id}-pause`, 'aria-pressed': 'false', 'aria-label': `Pause ${title}` }, 'Pause');
  const entry = (rec) => h('li', null,
    h('details', null,
      h('summary', null, describe(rec)),
      h('pre', { class: 'json' }, pretty(rec))));
  const put = (rec) => {
    empty.hidden = true;
    list.prepend(entry(rec));
    while (list.children.length > MAX_ENTRIES) list.lastChild.remove();
  };
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) { for (const r of held.splice(0)) put(r); }
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-label', `${paused ? 'Resume' : 'Pause'} ${title}`);
  });
  const el = h('section', { class: 'panel', 'aria-label': title },
    h('div', { class: 'panel-head' }, h('h2', null, title), pause), empty, list);
  return {
    el,
    /** Adds records (newest last); duplicates (same id) are ignored. */
    add(rec, live) {
      const key = rec?.id;
      if (key != null) { if (seen.has(key)) return; seen.add(key); }
      if (live && paused) {
        held.push(rec);
        pause.textContent = `Resume (${held.length} new)`;
        return;
      }
      put(rec);
    },
  };
}

export function detailView(main, id) {
  const result = h('p', { class: 'result', role: 'status', 'aria-live': 'polite', id: 'result', hidden: true });
  const statusPre = h('pre', { class: 'json', id: 'status-json' });
  const head = h('div', { class: 'detail-head' });
  const qrBox = h('div', { class: 'qr-box', hidden: true });
  const webhooks = feed('Webhooks', 'webhooks', (r) => {
    const text = state.webhookText(r);
    return `${clock(r.timestamp)} ${r.event ?? ''}${text ? ` — ${cut(text, 100)}` : ''}${r.signatureValid === false ? ' (signature invalid)' : ''}`;
  });
  const calls = feed('API calls', 'calls', (r) => `${clock(r.timestamp)} ${r.method ?? ''} ${cut(r.path ?? '', 80)} → ${r.statusCode ?? r.error ?? '…'}${r.latencyMs != null ? ` (${r.latencyMs} ms)` : ''}`);

  main.append(
    h('p', null, h('a', { href: '#/' }, '← All instances')),
    h('section', { class: 'panel', 'aria-label': `Instance ${id}` }, head,
      h('div', { class: 'detail-body' },
        h('div', { class: 'detail-side' }, qrBox,
          actions.buttons(h, id, (r) => actions.show(result, r)), result),
        h('details', { open: true, class: 'status-object' }, h('summary', null, 'Status object'), statusPre))),
    h('div', { class: 'columns' }, webhooks.el, calls.el));

  let qrKey = null;
  function showStatus() {
    const s = state.instances.get(id);
    clear(head).append(h('h2', { class: 'id' }, id), s ? badge(s) : h('span', { class: 'badge' }, 'unknown'));
    if (s?.timedOut) head.append(h('span', { class: 'badge warn' }, '⚠ timed out'));
    // The QR (kilobytes of base64) is shown as the image above, not as text.
    const shown = s && typeof s.qr === 'string' && s.qr.length > 120
      ? { ...s, qr: `${s.qr.slice(0, 40)}… (${s.qr.length} characters, shown as the image while showQr)` }
      : s;
    statusPre.textContent = s ? pretty(shown) : 'No status known for this instance.';
    const show = !!(s?.showQr && typeof s.qr === 'string' && s.qr.trim());
    const key = show ? `${s.qr.length}:${s.qr.slice(-32)}:${s.updatedAt}` : null;
    if (key !== qrKey) {
      qrKey = key;
      clear(qrBox);
      if (show) qrBox.append(h('img', { class: 'qr', src: qrSrc(s), alt: `QR code to link ${id}`, width: 264, height: 264 }));
      qrBox.hidden = !show;
    }
  }
  showStatus();

  (async () => {
    const r = await api.request('GET', `/api/events?instanceId=${encodeURIComponent(id)}&limit=200`);
    if (r.ok && Array.isArray(r.body?.events)) for (const e of [...r.body.events].reverse()) webhooks.add(e, false);
  })();

  const conn = document.getElementById('conn');
  const stream = new api.Stream(`instanceId=${encodeURIComponent(id)}`, (msg) => {
    const d = msg.data;
    if (msg.type === 'initial') {
      for (const e of [...(d?.webhookEvents || [])].reverse()) webhooks.add(e, false);
      for (const c of [...(d?.apiLogs || [])].reverse()) calls.add(c, false);
    } else if (msg.type === 'webhook') webhooks.add(d, true);
    else if (msg.type === 'apiLog') calls.add(d, true);
  }, (s) => { if (s !== 'live') conn.textContent = 'reconnecting…'; });
  stream.open();

  const unsubscribe = state.subscribe((ch) => {
    if ((ch.kind === 'status' && ch.id === id) || ch.kind === 'reload') showStatus();
  });
  return { unmount() { stream.close(); unsubscribe(); } };
}
