// Acting on instances through the proxy (/api/wahub/..., where the sidecar injects wa-hub's
// key): create, logout, restart, delete. Each shows wa-hub's answer in words.

import * as api from './api.js';

/** Events the webhook of a new instance subscribes to (the dashboard's lifecycle + messages). */
export const WEBHOOK_EVENTS = [
  'qr', 'authenticated', 'auth_failure', 'ready', 'ready_timeout', 'disconnected',
  'change_state', 'restricted', 'message', 'vote_update',
];

const path = (id) => `/api/wahub/instances/${encodeURIComponent(id)}`;

/** POST /instances {name, webhook: {url, events}}, the URL from /api/config. */
export async function create(name) {
  const cfg = await api.request('GET', '/api/config');
  if (!cfg.ok || typeof cfg.body?.webhookUrl !== 'string') {
    return { ok: false, text: `Could not read the webhook URL from /api/config: ${api.describe(cfg)}` };
  }
  const r = await api.request('POST', '/api/wahub/instances', {
    name,
    webhook: { url: cfg.body.webhookUrl, events: WEBHOOK_EVENTS },
  });
  return { ok: r.ok, text: `Create ${name}: ${r.ok ? 'done' : 'failed'} — ${api.describe(r)}`, r };
}

/** POST /instances/<id>/client/action/logout. */
export async function logout(id) {
  const r = await api.request('POST', `${path(id)}/client/action/logout`);
  return { ok: r.ok, text: `Logout ${id}: ${r.ok ? 'done' : 'failed'} — ${api.describe(r)}`, r };
}

/** POST /instances/<id>/restart. */
export async function restart(id) {
  const r = await api.request('POST', `${path(id)}/restart`);
  return { ok: r.ok, text: `Restart ${id}: ${r.ok ? 'done' : 'failed'} — ${api.describe(r)}`, r };
}

/** DELETE /instances/<id>, after the confirmation dialog. */
export async function remove(id) {
  if (!(await confirmDialog(`Delete instance ${id}? wa-hub logs it out and removes its session.`))) {
    return { ok: false, text: `Delete ${id}: cancelled` };
  }
  const r = await api.request('DELETE', path(id));
  return { ok: r.ok, text: `Delete ${id}: ${r.ok ? 'done' : 'failed'} — ${api.describe(r)}`, r };
}

/** Asks with the modal dialog; resolves true when confirmed. */
export function confirmDialog(text) {
  const dialog = document.getElementById('confirm-dialog');
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    dialog.onclose = () => resolve(dialog.returnValue === 'ok');
    dialog.returnValue = '';
    dialog.showModal();
    document.getElementById('confirm-cancel').focus();
  });
}

/** Buttons for one instance; `report(result)` shows the outcome. */
export function buttons(h, id, report) {
  const act = (label, fn, cls) => h('button', {
    type: 'button',
    class: cls,
    'aria-label': `${label} ${id}`,
    dataset: { action: label.toLowerCase() },
    onclick: async (e) => {
      const b = e.currentTarget;
      b.disabled = true;
      try { report(await fn(id)); } finally { b.disabled = false; }
    },
  }, label);
  return h('div', { class: 'actions' },
    act('Logout', logout), act('Restart', restart), act('Delete', remove, 'danger'));
}

/** Shows an action's outcome in `el` (a live region). */
export function show(el, result) {
  el.textContent = result.text;
  el.className = `result ${result.ok ? 'ok' : 'fail'}`;
  el.hidden = false;
}
