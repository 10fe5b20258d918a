// What the console knows, shared by the views: instance statuses, each instance's last
// webhook, wa-hub's readiness. Views subscribe to changes.

/** Status of each instance by id (the objects of GET /api/instances). */
export const instances = new Map();
/** The last webhook seen per instance id: `{event, at (ms), summary, preview}`. */
export const lastEvent = new Map();
/** wa-hub readiness from /readyz: `{ready: bool|null, error}`. */
export const readiness = { ready: null, error: '' };

const listeners = new Set();

/** Calls `fn(change)` on every change; returns the function that unsubscribes. */
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Tells every subscriber about `change`: `{kind: 'status'|'event'|'reload'|'ready', id?, msg?}`. */
export function notify(change) {
  for (const fn of listeners) {
    try { fn(change); } catch (e) { console.error(e); }
  }
}

/** Rank labels and the word shown on badges (text as well as colour). */
export const RANKS = [
  { rank: 0, key: 'disconnected', word: 'disconnected' },
  { rank: 1, key: 'needs_qr', word: 'needs QR' },
  { rank: 2, key: 'syncing', word: 'syncing' },
  { rank: 3, key: 'active', word: 'active' },
];

/** Replaces all statuses with the list from GET /api/instances. */
export function setInstances(list) {
  instances.clear();
  for (const s of list || []) if (s && typeof s.instanceId === 'string') instances.set(s.instanceId, s);
  notify({ kind: 'reload' });
}

/** Records a webhook record (as in `initial` or a `webhook` event) as its instance's last event. */
export function recordWebhook(rec, quiet) {
  const id = rec?.instanceId;
  if (typeof id !== 'string') return;
  const at = Date.parse(rec.timestamp);
  const prev = lastEvent.get(id);
  if (prev && prev.at > at) return;
  const preview = webhookText(rec);
  lastEvent.set(id, { event: String(rec.event ?? 'unknown'), at, summary: String(rec.summary ?? ''), preview });
  if (!quiet) notify({ kind: 'event', id, msg: rec });
}

/** The human text of a webhook record, if any: a message body, a reason, a status. */
export function webhookText(rec) {
  const data = rec?.payload?.data;
  if (!data || typeof data !== 'object') return '';
  const status = rec.event === 'change_state' ? data.status : undefined;
  return [data.body, data.message?.body, data.text, data.message, data.reason, data.error, status]
    .find((v) => typeof v === 'string' && v) || '';
}

/** Whether a QR string is an image (data URL or bare base64 PNG/JPEG/GIF). */
export function qrIsImage(qr) {
  const q = String(qr).trim();
  return /^data:image\//i.test(q) || /^(iVBORw0KGgo|\/9j\/|R0lGOD)/.test(q);
}
