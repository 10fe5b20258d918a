// Building DOM nodes safely: every string becomes a text node or an attribute value, never
// HTML. Text that came from wa-hub (webhook bodies, instance ids) therefore cannot inject markup.

/**
 * Creates an element. `props`: `class`, `text` (textContent), `dataset` (object), `on<event>`
 * (listener), `hidden` and other attributes (set with setAttribute; `true` = present,
 * `null`/`false` = absent). Children: nodes or strings (inserted as text).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Appends nodes or strings (as text) to `el`, skipping null/false. */
export function append(el, children) {
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Removes every child of `el`. */
export function clear(el) {
  el.replaceChildren();
  return el;
}

/** "3 s ago", "4 min ago", "2 h ago", "5 d ago" for a time in ms since the epoch. */
export function ago(ms, now = Date.now()) {
  if (!Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A local time of day for an ISO timestamp. */
export function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso ?? '') : d.toLocaleTimeString();
}

/** JSON, pretty-printed, for `<pre>` (as text). */
export function pretty(v) {
  try { return JSON.stringify(v, null, 2); } catch { return String(v); }
}

/** `text` cut to `n` characters with an ellipsis. */
export function cut(text, n) {
  const s = String(text ?? '');
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}
