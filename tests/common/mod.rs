//! Shared test harness: the wa-hub fixtures, a real HTTP upstream that answers from them and
//! records what it received, and the real `wa-hub-sidecar` binary started on a free port.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The API key the fixtures were recorded with (fixtures README).
pub const API_KEY: &str = "testkey";
/// Webhook signing secret of the fixtures (fixtures README).
pub const WEBHOOK_SECRET: &str = "wa-hub-fixture-secret";
/// Webhook bearer token of the fixtures (fixtures README).
pub const WEBHOOK_TOKEN: &str = "fixture-bearer-token";

/// `../shared/fixtures/wa-hub`, or `$WA_HUB_FIXTURES`.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("WA_HUB_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/wa-hub")
        })
}

/// One recorded wa-hub REST exchange.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiFixture {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: String,
}

/// Every line of `api-responses.jsonl`.
pub fn api_fixtures() -> Vec<ApiFixture> {
    read_jsonl("api-responses.jsonl")
}

/// One recorded webhook delivery.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookFixture {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// Every line of `webhooks.jsonl`.
pub fn webhook_fixtures() -> Vec<WebhookFixture> {
    read_jsonl("webhooks.jsonl")
}

fn read_jsonl<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect()
}

/// The base64 PNG of the first `qr` webhook fixture.
pub fn fixture_qr() -> String {
    let first = webhook_fixtures()
        .into_iter()
        .find(|w| w.body.contains("\"qr\":\"iVBOR"))
        .expect("a qr fixture");
    let body: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    body["data"]["qr"].as_str().unwrap().to_owned()
}

/// The fake wa-hub's view-session screenshot: the first `qr` fixture's PNG, decoded (a real
/// image, so a browser can draw it).
pub fn fixture_png() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(fixture_qr())
        .expect("fixture QR is base64")
}

/// The view-session token the fake wa-hub treats as expired (404).
pub const EXPIRED_VIEW_TOKEN: &str = "expired-token";

/// Posts `body` to the sidecar's webhook route with the given extra headers.
pub fn post_webhook(
    sc: &Sidecar,
    body: &str,
    headers: &[(&str, &[u8])],
) -> reqwest::blocking::Response {
    let mut req = client()
        .post(sc.url("/api/wahub/webhook"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(
            *k,
            reqwest::header::HeaderValue::from_bytes(v).expect("header value"),
        );
    }
    req.send().unwrap_or_else(|e| {
        panic!(
            "post webhook: {e}\nsidecar process state: {}\nsidecar log:\n{}",
            sc.process_state(),
            sc.log()
        )
    })
}

/// A webhook body signed with the fixture secret, as wa-hub's sender would post it.
pub fn post_signed(sc: &Sidecar, body: &str) -> reqwest::blocking::Response {
    let sig = wa_hub_sidecar::signature::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    post_webhook(
        sc,
        body,
        &[
            ("x-wa-hub-signature", sig.as_bytes()),
            (
                "authorization",
                format!("Bearer {WEBHOOK_TOKEN}").as_bytes(),
            ),
        ],
    )
}

/// The YAML for a webhook receiver with the fixture secret and token.
pub const FIXTURE_WEBHOOK_YAML: &str =
    "webhook:\n  secret: wa-hub-fixture-secret\n  auth_token: fixture-bearer-token\n";

/// GET a sidecar path and parse the JSON answer.
pub fn get_json(sc: &Sidecar, path: &str) -> (u16, serde_json::Value) {
    let r = client().get(sc.url(path)).send().expect("get");
    let status = r.status().as_u16();
    (status, r.json().expect("json body"))
}

/// The value of `series` (a metric name with its labels exactly as exported, e.g.
/// `wa_hub_sidecar_sse_clients` or `name{label="v"}`) in `/metrics`, with the client token
/// `token` when given; `None` when the series is absent or `/metrics` cannot be read.
pub fn metric_value_as(sc: &Sidecar, series: &str, token: Option<&str>) -> Option<f64> {
    let mut req = client().get(sc.url("/metrics"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let text = req.send().ok()?.text().ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// [`metric_value_as`] without a token.
pub fn metric_value(sc: &Sidecar, series: &str) -> Option<f64> {
    metric_value_as(sc, series, None)
}

/// Waits (up to 10 s) until sink `sink` has taken at least `n` events from its queue, as
/// `/metrics` reports (`sink_deliveries_total{outcome="delivered"}`): the sinks are fed
/// asynchronously, so an SSE client that must find earlier events in its `initial` snapshot
/// connects only after the hub has them.
pub fn wait_sink_delivered(sc: &Sidecar, sink: &str, n: u64) {
    wait_sink_delivered_as(sc, sink, n, None)
}

/// [`wait_sink_delivered`] with a client token for `/metrics`.
pub fn wait_sink_delivered_as(sc: &Sidecar, sink: &str, n: u64, token: Option<&str>) {
    let series =
        format!("wa_hub_sidecar_sink_deliveries_total{{outcome=\"delivered\",sink=\"{sink}\"}}");
    let done = eventually(Duration::from_secs(10), || {
        let v = metric_value_as(sc, &series, token)?;
        (v >= n as f64).then_some(())
    });
    assert!(done.is_some(), "sink {sink} never delivered {n} events");
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A request as the fake upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Raw path and query, percent-encoding as received.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    /// Every value of header `name`.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

#[derive(Clone)]
struct UpstreamState {
    fixtures: Arc<Vec<ApiFixture>>,
    received: Arc<Mutex<Vec<Received>>>,
}

/// A wa-hub-shaped HTTP upstream on a loopback port.
///
/// - Requires `Authorization: Bearer testkey` like wa-hub (401 with wa-hub's body otherwise).
/// - Answers `(method, path)` pairs recorded in the fixtures with the recorded status and body.
/// - `/hang` never answers; `/slow?ms=N` answers after N ms.
/// - The dashboard routes of issue 13: `POST /system/force-normal` (`{"ok":true,"mode":"normal"}`),
///   `POST /instances/<id>/view-session` (a token and URL built from `dashboardBaseUrl`; 404
///   for `nope`), `POST /view-session/revoke|click|scroll` (`{"success":true}`),
///   `GET /view-session/screenshot?token=` ([`fixture_png`] as `image/png`; 404 JSON for
///   [`EXPIRED_VIEW_TOKEN`]). `GET /system/status` comes from the fixtures.
/// - Anything else: 200 echoing `{method, path, headers, body}` as JSON.
/// - Records every request for assertions ([`FakeUpstream::received`]).
pub struct FakeUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeUpstream {
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let state = UpstreamState {
            fixtures: Arc::new(api_fixtures()),
            received: Arc::default(),
        };
        let received = state.received.clone();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new().fallback(answer).with_state(state);
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            received,
            _runtime: runtime,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The last request received.
    pub fn last(&self) -> Received {
        self.received().pop().expect("upstream received a request")
    }
}

async fn answer(State(state): State<UpstreamState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        path_and_query: path_and_query.clone(),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    state.received.lock().unwrap().push(received);

    let path = parts.uri.path();
    // Not recorded in the fixtures (the recorded instance never produced a QR): a QR answer for
    // instances named `WASP-qr-*`, in the `{"qr": <base64 PNG>}` shape of wa-hub's webhooks.
    if path.starts_with("/instances/WASP-qr-") && path.ends_with("/client/qr") {
        return json_response(200, serde_json::json!({ "qr": fixture_qr() }).to_string());
    }
    if path == "/hang" {
        std::future::pending::<()>().await;
    }
    if path == "/slow" {
        let ms: u64 = parts
            .uri
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(100);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let authorized = parts
        .headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Bearer {API_KEY}").as_bytes());
    let method = parts.method.as_str();
    let find = |want_401: bool| {
        state
            .fixtures
            .iter()
            .find(|f| f.method == method && f.path == path && (f.status == 401) == want_401)
    };
    if !authorized {
        let body = state
            .fixtures
            .iter()
            .find(|f| f.status == 401)
            .map(|f| f.body.clone())
            .unwrap_or_default();
        return json_response(401, body);
    }
    if let Some(f) = find(false) {
        return json_response(f.status, f.body.clone());
    }
    if let Some(resp) = dashboard_answer(method, path, parts.uri.query(), &body) {
        return resp;
    }
    let echo = serde_json::json!({
        "method": method,
        "path": path_and_query,
        "headers": parts.headers.iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect::<Vec<_>>(),
        "body": String::from_utf8_lossy(&body),
    });
    json_response(200, echo.to_string())
}

/// wa-hub's view-session and system routes (issue 13), in the shapes its dashboard reads.
fn dashboard_answer(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Option<Response> {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match (method, path) {
        ("POST", "/system/force-normal") => Some(json_response(
            200,
            serde_json::json!({"ok": true, "mode": "normal"}).to_string(),
        )),
        ("POST", "/view-session/revoke" | "/view-session/click" | "/view-session/scroll") => {
            Some(json_response(200, r#"{"success":true}"#.into()))
        }
        ("GET", "/view-session/screenshot") => {
            let token = query.and_then(|q| q.strip_prefix("token=")).unwrap_or("");
            if token.is_empty() || token == EXPIRED_VIEW_TOKEN {
                return Some(json_response(
                    404,
                    r#"{"error":"View session not found or expired"}"#.into(),
                ));
            }
            Some(
                (
                    StatusCode::OK,
                    [("content-type", "image/png")],
                    Body::from(fixture_png()),
                )
                    .into_response(),
            )
        }
        ("POST", _) if path.starts_with("/instances/") && path.ends_with("/view-session") => {
            let id = &path["/instances/".len()..path.len() - "/view-session".len()];
            if id == "nope" {
                return Some(json_response(
                    404,
                    r#"{"error":"Instance nope not found","status":404}"#.into(),
                ));
            }
            let base = json["dashboardBaseUrl"].as_str().unwrap_or("");
            let token = format!("view-{id}");
            Some(json_response(
                200,
                serde_json::json!({
                    "token": token,
                    "viewUrl": format!("{base}/view/{token}"),
                    "expiresAt": "2026-11-30T20:00:00.000Z",
                })
                .to_string(),
            ))
        }
        _ => None,
    }
}

fn json_response(status: u16, body: String) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json; charset=utf-8")],
        Body::from(body),
    )
        .into_response()
}

/// A free loopback port (bound then released).
/// A wa-hub URL nothing listens on: connections are refused (port 1 is privileged and unused
/// here). Unlike a free port picked at random, no concurrently started test can take it.
pub fn dead_upstream_url() -> String {
    "http://127.0.0.1:1".to_owned()
}

/// Whether something listens on `addr`. A connect to a loopback port nothing listens on can
/// still succeed when the kernel picks that very port as the source port (the socket connects
/// to itself); that cannot happen for a port from [`free_port`] (outside the range source
/// ports come from), but can for others, so such a connection is not counted.
pub fn listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect(addr)
        .is_ok_and(|s| s.local_addr().is_ok_and(|local| local != addr))
}

/// Whether the server on `addr` answers `GET /healthz` with the sidecar's 200
/// `{"status":"ok"}` within 2 s.
fn answers_healthz(addr: SocketAddr) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: harness\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer.starts_with("HTTP/1.1 200") && answer.contains(r#"{"status":"ok"}"#)
}

/// A loopback port nothing listens on now, never the same twice in this test process: tests
/// run in parallel, and a port one test was given and has not bound yet would otherwise be
/// free for the next test to be given too.
///
/// The port lies outside the kernel's ephemeral range (`ip_local_port_range`): a port from that
/// range, free when handed out, could become the local port of any outgoing connection (a
/// sidecar's to its upstream, a test client's) before the test binds it, and the bind then
/// fails with "Address already in use" (seen in `counters_match_fixture_traffic`).
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<std::collections::BTreeSet<u16>> =
        Mutex::new(std::collections::BTreeSet::new());
    let range = non_ephemeral_ports();
    let span = u32::from(range.end.saturating_sub(range.start));
    if span == 0 {
        // The ephemeral range covers every port: take one from the kernel, as a last resort.
        return loop {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port");
            if HANDED_OUT.lock().unwrap().insert(port) {
                break port;
            }
        };
    }
    // Test binaries of one run start at different places, so they rarely probe the same ports.
    let start = std::process::id().wrapping_mul(7919) % span;
    for i in 0..span {
        let port = range.start + ((start + i) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && HANDED_OUT.lock().unwrap().insert(port)
        {
            return port;
        }
    }
    panic!("no free loopback port in {range:?}");
}

/// Ports the kernel never gives an outgoing connection: below `ip_local_port_range` when that
/// leaves room (from 10000, clear of the well-known ports), else above it.
fn non_ephemeral_ports() -> std::ops::Range<u16> {
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if low >= 12_000 {
        10_000..low
    } else {
        high.saturating_add(1)..u16::MAX
    }
}

/// Path of the `wa-hub-sidecar` binary: `$WA_HUB_SIDECAR_BIN` when set (benchmarks point it
/// at the release build), else the one cargo built for the tests.
pub fn sidecar_bin() -> String {
    std::env::var("WA_HUB_SIDECAR_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_wa-hub-sidecar").to_owned())
}

/// Environment variables that would override the test config; cleared for every child.
pub const OVERRIDE_VARS: &[&str] = &[
    "WA_HUB_BASE_URL",
    "WA_HUB_TOKEN",
    "WA_HUB_WEBHOOK_SIGNATURE_SECRET",
    "WEBHOOK_AUTH_TOKEN",
    "DASHBOARD_WEBHOOK_INTERNAL_URL",
    "DASHBOARD_WEBHOOK_PUBLIC_URL",
    "ADMIN_DEBUG_SECRET",
    "DASHBOARD_PASSWORD",
    "DASHBOARD_SESSION_SECRET",
    "DASHBOARD_SECURE_COOKIES",
    "RUST_LOG",
    "WA_HUB_SIDECAR_CONFIG",
];

/// A running sidecar process; killed on drop.
pub struct Sidecar {
    pub addr: SocketAddr,
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Sidecar {
    /// Starts the binary with `listen` on a free port, `upstream.base_url` pointing at
    /// `upstream` and the API key of the fixtures, plus `extra_yaml` (top-level keys other than
    /// `listen` and `upstream`, which may be given through `upstream_yaml`).
    pub fn start(upstream: &str, extra_yaml: &str) -> Self {
        Self::start_with(upstream, "", extra_yaml, &[])
    }

    /// Like [`Sidecar::start`], with extra `upstream:` keys and environment variables.
    pub fn start_with(
        upstream: &str,
        upstream_yaml: &str,
        extra_yaml: &str,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_on(free_port(), upstream, upstream_yaml, extra_yaml, env)
    }

    /// Like [`Sidecar::start_with`], listening on `port` (a config that names its own URL).
    pub fn start_on(
        port: u16,
        upstream: &str,
        upstream_yaml: &str,
        extra_yaml: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // The default metrics port is fixed; tests run in parallel, so only a test that asks
        // for a metrics listener gets one.
        let metrics = if extra_yaml.contains("metrics_listen:") {
            ""
        } else {
            "metrics_listen: null\n"
        };
        // The background health probe would add `/health` calls to what the fake upstream
        // records; only tests about it turn it on.
        let health = if upstream_yaml.contains("health_interval_ms:") {
            ""
        } else {
            "  health_interval_ms: 0\n"
        };
        let yaml = format!(
            "listen: 127.0.0.1:{port}\n{metrics}threads: 2\nupstream:\n  base_url: {upstream}\n  token: {API_KEY}\n{health}{upstream_yaml}{extra_yaml}\nshutdown:\n  grace_period_ms: 2000\n"
        );
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let log = std::fs::File::create(dir.path().join("sidecar.log")).expect("log file");
        let stdout = std::fs::File::create(dir.path().join("stdout.ndjson")).expect("stdout file");
        let mut cmd = Command::new(sidecar_bin());
        cmd.arg("--config").arg(&config);
        for v in OVERRIDE_VARS {
            cmd.env_remove(v);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn sidecar");
        let mut s = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            dir,
        };
        s.wait_ready(extra_yaml.lines().any(|l| l.starts_with("tls:")));
        s
    }

    /// Waits until the sidecar answers `GET /healthz` with its own 200 (over plain HTTP), or
    /// until its port accepts connections (`tls`: a TLS listener). The sidecar's own answer
    /// cannot be mistaken for another socket on its port (which [`free_port`]'s old range made
    /// possible: a sidecar still starting up, its log empty, was once taken for ready).
    fn wait_ready(&mut self, tls: bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sidecar exited early ({status}):\n{}", self.log());
            }
            let ready = if tls {
                listening(self.addr)
            } else {
                answers_healthz(self.addr)
            };
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("sidecar did not listen within 20 s:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The process's state from `/proc` (`R`, `S`, `Z` for exited and not yet reaped, ...),
    /// for failure messages.
    pub fn process_state(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|stat| {
                stat.rsplit(") ")
                    .next()
                    .and_then(|rest| rest.split(' ').next())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "gone".to_owned())
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sidecar.log")).unwrap_or_default()
    }

    /// What the process wrote to standard output (the stdout sink's NDJSON).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.ndjson")).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: a plain signal to our own child process.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTP client for tests (no proxies, no redirects).
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// One item of an SSE stream as a client parses it.
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    /// An event: its `id:` (if any) and `data:` (lines joined by `\n`).
    Event { id: Option<String>, data: String },
    /// A comment line (heartbeat).
    Comment(String),
    /// A `retry:` hint.
    Retry(u64),
    /// The server ended the stream.
    End,
}

impl SseItem {
    /// The event's data parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        match self {
            SseItem::Event { data, .. } => serde_json::from_str(data).expect("event data is JSON"),
            other => panic!("not an event: {other:?}"),
        }
    }

    /// The event's raw data text.
    pub fn data_text(&self) -> String {
        match self {
            SseItem::Event { data, .. } => data.clone(),
            other => panic!("not an event: {other:?}"),
        }
    }

    /// The event's `type`.
    pub fn kind(&self) -> String {
        self.json()["type"].as_str().unwrap_or_default().to_owned()
    }

    /// The event's `id:` as a number.
    pub fn id(&self) -> Option<u64> {
        match self {
            SseItem::Event { id, .. } => id.as_ref().and_then(|i| i.parse().ok()),
            _ => None,
        }
    }
}

/// A reading SSE client over a plain HTTP/1.1 connection: a thread decodes the chunked body,
/// parses it by the SSE spec's line rules and hands items over a channel. Dropping the client
/// closes the connection.
pub struct SseClient {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    rx: std::sync::mpsc::Receiver<SseItem>,
    socket: std::net::TcpStream,
}

impl Drop for SseClient {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads a chunked (or, without `Transfer-Encoding`, a plain) body into `tx` as raw bytes.
fn pump_body(
    mut reader: std::io::BufReader<std::net::TcpStream>,
    chunked: bool,
    tx: std::sync::mpsc::Sender<Vec<u8>>,
) {
    use std::io::{BufRead, Read};
    loop {
        let data = if chunked {
            let mut size_line = String::new();
            if reader.read_line(&mut size_line).unwrap_or(0) == 0 {
                return;
            }
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                .unwrap_or(0);
            if size == 0 {
                return;
            }
            let mut data = vec![0u8; size + 2];
            if reader.read_exact(&mut data).is_err() {
                return;
            }
            data.truncate(size);
            data
        } else {
            let mut data = vec![0u8; 8192];
            match reader.read(&mut data) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    data.truncate(n);
                    data
                }
            }
        };
        if tx.send(data).is_err() {
            return;
        }
    }
}

impl SseClient {
    /// Connects to `url` (an `http://127.0.0.1:port/path` URL) with extra request headers.
    pub fn connect(url: &str, headers: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, Write};
        let rest = url.strip_prefix("http://").expect("http URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let socket = std::net::TcpStream::connect(authority).expect("connect SSE");
        let mut request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: text/event-stream\r\n");
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        (&socket)
            .write_all(request.as_bytes())
            .expect("send request");
        let mut reader = std::io::BufReader::new(socket.try_clone().unwrap());
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut map = reqwest::header::HeaderMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                map.append(
                    reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                    reqwest::header::HeaderValue::from_str(v.trim()).unwrap(),
                );
            }
        }
        let chunked = map
            .get("transfer-encoding")
            .is_some_and(|v| v.to_str().unwrap_or("").contains("chunked"));
        let (bytes_tx, bytes_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || pump_body(reader, chunked, bytes_tx));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut pending: Vec<u8> = Vec::new();
            let (mut id, mut data): (Option<String>, Option<String>) = (None, None);
            loop {
                let Ok(bytes) = bytes_rx.recv() else {
                    let _ = tx.send(SseItem::End);
                    return;
                };
                pending.extend_from_slice(&bytes);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let raw: Vec<u8> = pending.drain(..=pos).collect();
                    let line = String::from_utf8_lossy(&raw);
                    let l = line.trim_end_matches(['\n', '\r']);
                    let item = if l.is_empty() {
                        data.take().map(|d| SseItem::Event {
                            id: id.take(),
                            data: d,
                        })
                    } else if let Some(c) = l.strip_prefix(':') {
                        Some(SseItem::Comment(c.trim().to_owned()))
                    } else if let Some(v) = l.strip_prefix("retry:") {
                        v.trim().parse().ok().map(SseItem::Retry)
                    } else if let Some(v) = l.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                        None
                    } else if let Some(v) = l.strip_prefix("data:") {
                        let v = v.strip_prefix(' ').unwrap_or(v);
                        data = Some(match data.take() {
                            Some(d) => format!("{d}\n{v}"),
                            None => v.to_owned(),
                        });
                        None
                    } else {
                        None
                    };
                    if let Some(item) = item {
                        if tx.send(item).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Self {
            status,
            headers: map,
            rx,
            socket,
        }
    }

    /// The next item of any kind.
    pub fn next_item(&self, timeout: Duration) -> Option<SseItem> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Whether the server ends the stream within `timeout` (items before the end are
    /// skipped).
    pub fn ends_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(SseItem::End) => return true,
                Ok(_) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return true,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return false,
            }
        }
    }

    /// The next event (comments and retry hints skipped); panics after `timeout`.
    pub fn next_event(&self, timeout: Duration) -> SseItem {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e @ SseItem::Event { .. }) => return e,
                Ok(SseItem::End) => panic!("stream ended while waiting for an event"),
                Ok(_) => continue,
                Err(_) => panic!("no event within {timeout:?}"),
            }
        }
    }

    /// Events until one of type `kind` arrives (inclusive).
    pub fn events_until(&self, kind: &str, timeout: Duration) -> Vec<SseItem> {
        let mut out = Vec::new();
        loop {
            let e = self.next_event(timeout);
            let done = e.kind() == kind;
            out.push(e);
            if done {
                return out;
            }
        }
    }
}

/// A TCP relay to `target` that records every request head it forwards and can drop all
/// connections (`cut`) or refuse new ones (`set_down`).
pub struct Relay {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (d, o, h) = (down.clone(), open.clone(), heads.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                o.lock().unwrap().push(client.try_clone().unwrap());
                o.lock().unwrap().push(server.try_clone().unwrap());
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let heads = h.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    let mut first = true;
                    while let Ok(n) = c2.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if first {
                            heads
                                .lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                            first = false;
                        }
                        if s2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s2.shutdown(std::net::Shutdown::Both);
                });
                let (mut c3, mut s3) = (client, server);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s3, &mut c3);
                    let _ = c3.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Self {
            addr,
            down,
            open,
            heads,
        }
    }

    /// Refuses (`true`) or accepts (`false`) new connections.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Drops every open connection.
    pub fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Sends `request` on a new connection to `addr`; with `half_close`, shuts the write side
/// (FIN) right after it, as `socat` or `printf | nc` do. Returns every byte received until the
/// server closes or 10 s pass.
pub fn raw_request(addr: SocketAddr, request: &[u8], half_close: bool) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("write request");
    if half_close {
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A raw response split into its status, lower-cased head and body.
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    /// Parses `raw` (panics when it holds no complete head).
    pub fn parse(raw: &str) -> Self {
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head in {raw:?}"));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {raw:?}"));
        Self {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.trim() == name)
                .map(|(_, v)| v.trim().to_owned())
        })
    }
}

/// A `nats-server -js` of its own on a free loopback port with a temporary store (fleet tests).
/// Can be stopped and started again on the same port and store; killed on drop.
pub struct NatsServer {
    pub port: u16,
    pub store: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// `nats-server` from `$NATS_SERVER_BIN`, else the PATH, else Debian's `/usr/sbin`.
    pub fn bin() -> String {
        if let Ok(b) = std::env::var("NATS_SERVER_BIN") {
            return b;
        }
        let on_path = Command::new("nats-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if on_path {
            "nats-server".into()
        } else {
            "/usr/sbin/nats-server".into()
        }
    }

    /// Starts a server; panics when it does not listen within 10 s.
    pub fn start() -> Self {
        let mut s = Self {
            port: free_port(),
            store: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        s.resume();
        s
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process again (same port, same store).
    pub fn resume(&mut self) {
        let log = std::fs::File::create(self.store.path().join("nats.log")).expect("log");
        let child = Command::new(Self::bin())
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn nats-server (install it: scripts/setup.sh)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(SocketAddr::from(([127, 0, 0, 1], self.port))) {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the running server.
    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("nats-server running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: a plain signal to our own child process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    /// Stalls the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a stalled server run again (SIGCONT).
    pub fn unpause(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Stops the server, deletes its JetStream store (every stream and bucket) and starts it
    /// again on the same port: NATS lost its store.
    pub fn restart_empty(&mut self) {
        self.stop();
        let js = self.store.path().join("jetstream");
        if js.exists() {
            std::fs::remove_dir_all(&js).expect("remove the JetStream store");
        }
        self.resume();
    }

    /// Kills the process (SIGKILL: an outage, not a shutdown).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
