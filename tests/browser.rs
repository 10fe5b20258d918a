//! A real browser against the real binary (SSE issue): headless Chromium opens a small page that
//! uses `EventSource` on `/api/stream` exactly as the dashboard's `useSSE` hook does
//! (`new EventSource(url)`, `onmessage`, `JSON.parse(e.data)` into `{type, data}`). The page
//! reports what it receives to the test's page server. Between the browser and the sidecar
//! sits a TCP relay the test can cut, so the browser reconnects on its own and resumes with
//! `Last-Event-ID`.
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
        &format!("http://127.0.0.1:{}", free_port()),
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
