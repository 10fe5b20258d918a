//! A real browser against the real binary (SSE issue): headless Chromium opens a small page that
//! uses `EventSource` on `/api/stream` exactly as the dashboard's `useSSE` hook does
//! (`new EventSource(url)`, `onmessage`, `JSON.parse(e.data)` into `{type, data}`). The page
//! reports what it receives to the test's page server. Between the browser and the sidecar
//! sits a TCP relay the test can cut, so the browser reconnects on its own and resumes with
//! `Last-Event-ID`.
//!
//! A second test (issue 13) serves a page from an origin that passes `/api/*` to the sidecar,
//! as the dashboard is deployed, and calls the dashboard's routes with
//! `fetch(url, {credentials: 'include'})` and no headers: login, the cookie on every call,
//! the screenshot as an image, logout.
//!
//! Chromium comes from Debian's packages (`scripts/setup.sh` installs it). Set `CHROMIUM` to
//! use another binary.

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use common::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

/// The page: the dashboard's `useSSE` pattern, reporting each parsed message back.
fn page(stream_url: &str) -> String {
    format!(
        r#"<!doctype html><html><body><script>
let seq = 0;
const report = (r) => {{ r.seq = seq++; fetch('/report', {{method: 'POST', body: JSON.stringify(r)}}); }};
const es = new EventSource('{stream_url}');
es.onmessage = (e) => {{
  const msg = JSON.parse(e.data);
  report({{id: e.lastEventId, type: msg.type, data: msg.data}});
}};
es.onerror = () => report({{type: 'error', readyState: es.readyState}});
</script></body></html>"#
    )
}

#[derive(Clone)]
struct PageState {
    html: Arc<Mutex<String>>,
    reports: Arc<Mutex<Vec<Value>>>,
}

/// The test's page server: serves `html` at `/` and collects `POST /report` bodies.
struct PageServer {
    addr: SocketAddr,
    html: Arc<Mutex<String>>,
    reports: Arc<Mutex<Vec<Value>>>,
    _rt: tokio::runtime::Runtime,
}

fn page_server() -> PageServer {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let reports: Arc<Mutex<Vec<Value>>> = Arc::default();
    let html: Arc<Mutex<String>> = Arc::default();
    let state = PageState {
        html: html.clone(),
        reports: reports.clone(),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|State(s): State<PageState>| async move {
                Html(s.html.lock().unwrap().clone())
            }),
        )
        .route(
            "/report",
            axum::routing::post(|State(s): State<PageState>, body: String| async move {
                if let Ok(v) = serde_json::from_str(&body) {
                    s.reports.lock().unwrap().push(v);
                }
                "ok"
            }),
        )
        .with_state(state);
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    PageServer {
        addr,
        html,
        reports,
        _rt: rt,
    }
}

/// A headless Chromium process and its throw-away profile directory (kept until drop).
struct Browser(Child, #[allow(dead_code)] tempfile::TempDir);

impl Browser {
    fn open(url: &str) -> Self {
        let bin = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&bin).exists(),
            "Chromium not found at {bin}: run ./scripts/setup.sh (installs Debian's chromium)"
        );
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        Self(child, profile)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reports in the order the page received them (fetches may land out of order).
fn ordered(reports: &Arc<Mutex<Vec<Value>>>) -> Vec<Value> {
    let mut r = reports.lock().unwrap().clone();
    r.sort_by_key(|v| v["seq"].as_u64());
    r
}

/// `type#id` of each report, for readable failure messages.
fn summary(reports: &[Value]) -> Vec<String> {
    reports
        .iter()
        .map(|r| {
            format!(
                "{}#{}",
                r["type"].as_str().unwrap_or("?"),
                r["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn wait_report(reports: &Arc<Mutex<Vec<Value>>>, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    eventually(T, || ordered(reports).into_iter().find(|r| f(r))).unwrap_or_else(|| {
        panic!(
            "page never reported {what}: {:?}",
            summary(&ordered(reports))
        )
    })
}

#[test]
fn a_real_browser_receives_webhooks_and_resumes_after_a_reconnect() {
    // The page's origin is not the sidecar's: allow it through CORS.
    let pages = page_server();
    let sc = Sidecar::start(
        &dead_upstream_url(),
        &format!(
            "{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 0\ncors:\n  allowed_origins: [\"http://{}\"]\nsinks:\n  - type: sse\n    retry_ms: 300\n",
            pages.addr
        ),
    );
    let relay = Relay::start(sc.addr);
    *pages.html.lock().unwrap() = page(&format!("http://{}/api/stream?scope=global", relay.addr));
    let reports = pages.reports.clone();
    let _browser = Browser::open(&format!("http://{}/", pages.addr));

    wait_report(&reports, "connected", |r| r["type"] == "connected");
    wait_report(&reports, "initial", |r| r["type"] == "initial");

    let fixtures = webhook_fixtures();
    assert_eq!(post_signed(&sc, &fixtures[0].body).status().as_u16(), 200);
    let first = wait_report(&reports, "the qr webhook", |r| {
        r["type"] == "webhook" && r["data"]["event"] == "qr"
    });
    assert_eq!(first["data"]["instanceId"], "WASP-acme-store_myshopify_com");
    let first_id: u64 = first["id"].as_str().unwrap().parse().unwrap();
    // Its status event too: the last id the browser saw before the cut.
    let last_seen = wait_report(&reports, "the status event", |r| r["type"] == "status");
    let last_seen: u64 = last_seen["id"].as_str().unwrap().parse().unwrap();
    assert!(last_seen > first_id);

    // Cut the connection and keep the relay down while events happen.
    relay.set_down(true);
    relay.cut();
    wait_report(&reports, "the connection error", |r| r["type"] == "error");
    for w in &fixtures[2..4] {
        assert_eq!(post_signed(&sc, &w.body).status().as_u16(), 200);
    }
    relay.set_down(false);

    // The browser reconnects by itself with Last-Event-ID and gets exactly what it missed.
    let missed = wait_report(&reports, "the missed change_state", |r| {
        r["type"] == "webhook" && r["data"]["event"] == "change_state"
    });
    let header = format!("last-event-id: {last_seen}");
    assert!(
        relay
            .heads()
            .iter()
            .any(|h| h.to_ascii_lowercase().contains(&header)),
        "browser reconnected with {header}: {:?}",
        relay.heads()
    );
    // Wait for the last missed event (change_state's status), then check the whole sequence.
    wait_report(&reports, "the missed status", |r| {
        r["type"] == "status" && r["data"]["displayStatus"] == "OPENING"
    });
    let got = ordered(&reports);
    let after: Vec<u64> = got
        .iter()
        .filter(|r| r["type"] != "connected")
        .filter_map(|r| r["id"].as_str()?.parse::<u64>().ok())
        .filter(|id| *id > last_seen)
        .collect();
    let missed_id: u64 = missed["id"].as_str().unwrap().parse().unwrap();
    // authenticated (webhook, status), change_state (webhook, status): ids in order, no gap.
    assert_eq!(
        after,
        ((last_seen + 1)..=(last_seen + 4)).collect::<Vec<_>>(),
        "{:?}",
        summary(&got)
    );
    assert_eq!(missed_id, last_seen + 3);
    let initials = got.iter().filter(|r| r["type"] == "initial").count();
    assert_eq!(initials, 1, "a resumed stream sends no second initial");
}

/// The dashboard's own set-up (README "Pointing wa-hub and the dashboard at it"): one origin
/// serves the pages and passes `/api/*` to the sidecar, keeping the browser's `Host` (nginx's
/// `proxy_set_header Host $host`). Serves `html` at `/`, collects `POST /report`.
fn dashboard_origin(sidecar: SocketAddr) -> PageServer {
    #[derive(Clone)]
    struct S {
        page: PageState,
        sidecar: SocketAddr,
        http: reqwest::Client,
    }
    async fn pass(
        State(s): State<S>,
        req: axum::extract::Request,
    ) -> axum::response::Response<axum::body::Body> {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20)
            .await
            .unwrap_or_default();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut out = s
            .http
            .request(parts.method.clone(), format!("http://{}{pq}", s.sidecar));
        for (k, v) in &parts.headers {
            if !matches!(
                k.as_str(),
                "connection" | "content-length" | "transfer-encoding"
            ) {
                out = out.header(k, v);
            }
        }
        let resp = match out.body(body).send().await {
            Ok(r) => r,
            Err(_) => {
                return axum::response::Response::builder()
                    .status(502)
                    .body(axum::body::Body::empty())
                    .unwrap()
            }
        };
        let mut b = axum::response::Response::builder().status(resp.status().as_u16());
        for (k, v) in resp.headers() {
            if !matches!(
                k.as_str(),
                "connection" | "content-length" | "transfer-encoding"
            ) {
                b = b.header(k, v);
            }
        }
        let bytes = resp.bytes().await.unwrap_or_default();
        b.body(axum::body::Body::from(bytes)).unwrap()
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let reports: Arc<Mutex<Vec<Value>>> = Arc::default();
    let html: Arc<Mutex<String>> = Arc::default();
    let state = S {
        page: PageState {
            html: html.clone(),
            reports: reports.clone(),
        },
        sidecar,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|State(s): State<S>| async move {
                Html(s.page.html.lock().unwrap().clone())
            }),
        )
        .route(
            "/report",
            axum::routing::post(|State(s): State<S>, body: String| async move {
                if let Ok(v) = serde_json::from_str(&body) {
                    s.page.reports.lock().unwrap().push(v);
                }
                "ok"
            }),
        )
        .fallback(pass)
        .with_state(state);
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    PageServer {
        addr,
        html,
        reports,
        _rt: rt,
    }
}

/// The dashboard's calls, each `fetch(url, {credentials: 'include', ...})` with no headers,
/// then the screenshot as an `<img>`; one report with every answer.
const DASHBOARD_PAGE: &str = r#"<!doctype html><html><body><script>
const call = async (url, opts) => {
  const res = await fetch(url, Object.assign({credentials: 'include'}, opts || {}));
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch (e) { body = text; }
  return {status: res.status, body};
};
const post = (url, body) => call(url, {method: 'POST', body: JSON.stringify(body || {})});
(async () => {
  const r = {};
  try {
    r.checkBefore = await call('/api/auth/check');
    r.statusBefore = await call('/api/system/status');
    r.wrong = await post('/api/auth/login', {password: 'nope'});
    r.login = await post('/api/auth/login', {password: '__PASSWORD__'});
    r.checkAfter = await call('/api/auth/check');
    r.status = await call('/api/system/status');
    r.forceNormal = await post('/api/system/force-normal');
    r.create = await post('/api/view-session/create', {instanceId: 'WASP-test_shop'});
    const token = r.create.body && r.create.body.data && r.create.body.data.token;
    const shot = await fetch('/api/view-session/screenshot?token=' + encodeURIComponent(token),
                             {credentials: 'include'});
    const bytes = new Uint8Array(await shot.arrayBuffer());
    r.shot = {status: shot.status, type: shot.headers.get('content-type'), len: bytes.length,
              head: Array.from(bytes.slice(0, 8))};
    const img = new Image();
    img.src = '/api/view-session/screenshot?token=' + encodeURIComponent(token);
    await img.decode();
    r.img = {width: img.naturalWidth, height: img.naturalHeight};
    r.click = await post('/api/view-session/click', {token, x: 10, y: '20'});
    r.scroll = await post('/api/view-session/scroll', {token, x: 10, y: 20, deltaY: 120});
    r.revoke = await post('/api/view-session/revoke', {token});
    r.pollStart = await post('/api/instances/WASP-test_shop/poll/start', {type: 'status'});
    r.ping = await call('/api/ping');
    r.instances = await call('/api/instances');
    r.logout = await post('/api/auth/logout');
    r.statusAfterLogout = await call('/api/system/status');
  } catch (e) {
    r.exception = String(e);
  }
  fetch('/report', {method: 'POST', body: JSON.stringify(r)});
})();
</script></body></html>"#;

#[test]
fn a_real_browser_logs_in_and_uses_the_dashboard_routes_with_its_cookie() {
    let up = FakeUpstream::start();
    let password = "browser-password";
    let sc = Sidecar::start_with(
        &up.base_url(),
        "",
        "status:\n  qr_poll_interval_ms: 0\n",
        &[
            ("DASHBOARD_PASSWORD", password),
            ("DASHBOARD_SESSION_SECRET", "browser-test-session-secret"),
            ("DASHBOARD_SECURE_COOKIES", "false"),
        ],
    );
    let pages = dashboard_origin(sc.addr);
    *pages.html.lock().unwrap() = DASHBOARD_PAGE.replace("__PASSWORD__", password);
    let reports = pages.reports.clone();
    let _browser = Browser::open(&format!("http://{}/", pages.addr));
    let r = wait_report(&reports, "the dashboard calls", |_| true);
    assert!(r.get("exception").is_none(), "{r:#}");
    let status = |k: &str| r[k]["status"].as_u64().unwrap_or(0);

    assert_eq!(
        r["checkBefore"]["body"],
        json_value(r#"{"ok":true,"authenticated":false}"#)
    );
    assert_eq!(status("statusBefore"), 401, "{r:#}");
    assert_eq!(status("wrong"), 401);
    assert_eq!(r["wrong"]["body"]["error"], "Invalid password");
    assert_eq!(status("login"), 200, "{r:#}");
    assert_eq!(r["checkAfter"]["body"]["authenticated"], true, "{r:#}");
    assert_eq!(status("status"), 200, "{r:#}");
    assert_eq!(r["status"]["body"]["mode"], "normal");
    assert_eq!(status("forceNormal"), 200, "{r:#}");
    assert_eq!(status("create"), 200, "{r:#}");
    assert_eq!(r["create"]["body"]["data"]["token"], "view-WASP-test_shop");
    assert_eq!(status("shot"), 200, "{r:#}");
    assert_eq!(r["shot"]["type"], "image/png");
    assert_eq!(r["shot"]["len"].as_u64(), Some(fixture_png().len() as u64));
    assert_eq!(
        r["shot"]["head"],
        json_value("[137,80,78,71,13,10,26,10]"),
        "PNG signature"
    );
    assert!(r["img"]["width"].as_u64().unwrap_or(0) > 0, "{r:#}");
    for k in [
        "click",
        "scroll",
        "revoke",
        "pollStart",
        "ping",
        "instances",
        "logout",
    ] {
        assert_eq!(status(k), 200, "{k}: {r:#}");
    }
    assert_eq!(status("statusAfterLogout"), 401, "{r:#}");

    // What wa-hub got: the coerced click, the dashboard's own origin as base URL.
    let got = up.received();
    let click = got
        .iter()
        .find(|q| q.path_and_query == "/view-session/click")
        .expect("click reached wa-hub");
    assert_eq!(
        serde_json::from_slice::<Value>(&click.body).unwrap(),
        json_value(r#"{"token":"view-WASP-test_shop","x":10,"y":20}"#)
    );
    let create = got
        .iter()
        .find(|q| q.path_and_query == "/instances/WASP-test_shop/view-session")
        .expect("create reached wa-hub");
    assert_eq!(
        serde_json::from_slice::<Value>(&create.body).unwrap()["dashboardBaseUrl"],
        format!("http://{}", pages.addr)
    );
    assert!(
        got.iter().all(|q| q
            .header_values("cookie")
            .iter()
            .all(|c| !c.contains("wa_hub_session"))),
        "the session cookie never reaches wa-hub"
    );
}

fn json_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}
