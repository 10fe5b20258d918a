// Talking to the sidecar's public routes: the client token (kept in sessionStorage), JSON
// requests, and the event stream with reconnect and resume.

const TOKEN_KEY = 'wa-hub-console-token';
let token = sessionStorage.getItem(TOKEN_KEY) || '';

/** The client token in use ('' when none). */
export function getToken() { return token; }

/** Stores (or with '' forgets) the client token for this browser tab. */
export function setToken(t) {
  token = t || '';
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** `url` with `access_token=<token>` added when a token is set (for EventSource and <img>). */
export function withToken(url) {
  if (!token) return url;
  return `${url}${url.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(token)}`;
}

/**
 * One HTTP request. Resolves (never rejects) to `{ok, status, statusText, body, text}`:
 * `body` is the parsed JSON or null; `status` 0 when the sidecar could not be reached.
 */
export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    return { ok: false, status: 0, statusText: 'network error', body: null, text: String(e?.message || e) };
  }
  const text = await res.text().catch(() => '');
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { ok: res.ok, status: res.status, statusText: res.statusText, body: json, text };
}

/** Words for an answer: "200 OK", then wa-hub's message or error when it gave one. */
export function describe(r) {
  if (r.status === 0) return `The sidecar could not be reached (${r.text}).`;
  const head = `${r.status}${r.statusText ? ` ${r.statusText}` : ''}`;
  const b = r.body;
  const words = b && typeof b === 'object'
    ? [b.error, b.message, b.detail, b.status].filter((x) => typeof x === 'string' && x).join(': ')
    : '';
  if (words) return `${head}: ${words}`;
  if (!r.ok && r.text) return `${head}: ${r.text.slice(0, 300)}`;
  return head;
}

/**
 * The SSE stream (`/api/stream?<params>`). Calls `onMessage({type, data}, id)` for each event
 * and `onState('live' | 'reconnecting' | 'closed')` ('closed': the sidecar refused or dropped
 * the stream and the browser gave up; it is reopened here). The browser reconnects by itself and resumes with
 * `Last-Event-ID`; when it gives up (e.g. the sidecar answered an error), the stream is
 * reopened after `retryMs` with `?lastEventId=` of the last event seen.
 */
export class Stream {
  constructor(params, onMessage, onState, retryMs = 3000) {
    Object.assign(this, { params, onMessage, onState, retryMs, lastId: '', es: null, timer: 0 });
  }

  open() {
    this.close();
    let url = `/api/stream?${this.params}`;
    if (this.lastId) url += `&lastEventId=${encodeURIComponent(this.lastId)}`;
    const es = new EventSource(withToken(url));
    this.es = es;
    es.onopen = () => this.onState('live');
    es.onmessage = (e) => {
      if (e.lastEventId) this.lastId = e.lastEventId;
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (msg && typeof msg.type === 'string') this.onMessage(msg, e.lastEventId);
    };
    es.onerror = () => {
      this.onState('reconnecting');
      if (es.readyState === EventSource.CLOSED && this.es === es) {
        es.close();
        this.onState('closed');
        this.timer = setTimeout(() => this.open(), this.retryMs);
      }
    };
  }

  close() {
    clearTimeout(this.timer);
    if (this.es) { this.es.onerror = null; this.es.close(); this.es = null; }
  }
}
