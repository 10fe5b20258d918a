// The operator console's entry point: asks for a token when the sidecar needs one, loads the
// instances, follows the global event stream, watches wa-hub's readiness and switches views
// on the URL's hash (#/, #/i/<id>, #/sinks).

import { h, clear } from './dom.js';
import * as api from './api.js';
import * as state from './state.js';
import { instancesView } from './instances.js';
import { detailView } from './detail.js';
import { sinksView } from './sinks.js';

const main = document.getElementById('main');
const conn = document.getElementById('conn');
const banner = document.getElementById('banner');
let view = null;
let stream = null;

function setConn(s) {
  if (s === 'closed') {
    // The sidecar refused the stream: a token that stopped working is asked for again.
    recheckToken();
    s = 'reconnecting';
  }
  conn.textContent = s === 'live' ? 'live' : s === 'reconnecting' ? 'reconnecting…' : s;
  conn.dataset.state = s;
}

let asking = false;
async function recheckToken() {
  if (asking) return;
  const r = await api.request('GET', '/api/instances');
  if (r.status !== 401) return;
  asking = true;
  try {
    const ok = await askToken(false);
    state.setInstances(ok.body?.instances || []);
    stream?.open();
  } finally {
    asking = false;
  }
}

/** Shows the token dialog until the sidecar accepts a token; resolves with the instance list. */
function askToken(first) {
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  const error = document.getElementById('token-error');
  error.textContent = first ? '' : 'The stored token was refused. Enter another one.';
  return new Promise((resolve) => {
    form.onsubmit = async (e) => {
      e.preventDefault();
      api.setToken(input.value.trim());
      error.textContent = 'Checking…';
      const r = await api.request('GET', '/api/instances');
      if (r.status === 401) {
        api.setToken('');
        error.textContent = 'This token was refused (401 Unauthorized). Check auth.client_tokens and try again.';
        input.select();
        return;
      }
      error.textContent = '';
      dialog.close();
      resolve(r);
    };
    dialog.addEventListener('cancel', (e) => e.preventDefault());
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

/** Loads GET /api/instances (asking for a token on 401); retries on other failures. */
async function loadInstances() {
  let r = await api.request('GET', '/api/instances');
  if (r.status === 401) r = await askToken(!api.getToken());
  if (!r.ok || !Array.isArray(r.body?.instances)) {
    showBanner(`Could not load the instances: ${api.describe(r)}. Retrying…`);
    await new Promise((res) => setTimeout(res, 3000));
    return loadInstances();
  }
  state.setInstances(r.body.instances);
  checkReady();
  return r;
}

function showBanner(text) {
  banner.textContent = text;
  banner.hidden = !text;
}

/** GET /readyz: says so when wa-hub is down, instead of showing empty lists. */
async function checkReady() {
  const r = await api.request('GET', '/readyz');
  const ready = r.ok && r.body?.ready === true;
  state.readiness.ready = ready;
  state.readiness.error = ready ? '' : (r.body?.error || api.describe(r));
  showBanner(ready ? '' : `wa-hub is down — /readyz says: ${state.readiness.error}. What is shown may be out of date.`);
  state.notify({ kind: 'ready' });
}

function onMessage(msg) {
  const d = msg.data;
  switch (msg.type) {
    case 'connected':
      setConn('live');
      break;
    case 'initial':
      for (const rec of [...(d?.webhookEvents || [])].reverse()) state.recordWebhook(rec, true);
      state.notify({ kind: 'reload' });
      break;
    case 'status':
      if (d && typeof d.instanceId === 'string') {
        state.instances.set(d.instanceId, d);
        state.notify({ kind: 'status', id: d.instanceId });
      }
      break;
    case 'webhook':
      state.recordWebhook(d);
      break;
    case 'reset':
      // The stream could not resume: reload everything.
      loadInstances();
      break;
    default:
      break;
  }
  state.notify({ kind: 'stream', msg });
}

function route() {
  const hash = location.hash || '#/';
  if (view) view.unmount();
  clear(main);
  for (const a of document.querySelectorAll('nav a')) a.removeAttribute('aria-current');
  if (hash.startsWith('#/i/')) {
    let id;
    try { id = decodeURIComponent(hash.slice(4)); } catch { id = hash.slice(4); }
    view = detailView(main, id);
  } else if (hash === '#/sinks') {
    document.getElementById('nav-sinks').setAttribute('aria-current', 'page');
    view = sinksView(main);
  } else {
    document.getElementById('nav-instances').setAttribute('aria-current', 'page');
    view = instancesView(main);
  }
}

async function boot() {
  setConn('connecting…');
  await loadInstances();
  stream = new api.Stream('scope=global', onMessage, setConn);
  stream.open();
  window.addEventListener('hashchange', route);
  route();
  setInterval(checkReady, 10000);
}

boot().catch((e) => {
  console.error(e);
  clear(main).append(h('p', { class: 'error', text: `The console failed to start: ${e?.message || e}` }));
});
