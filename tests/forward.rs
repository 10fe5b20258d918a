//! The forward sink through the real binary, against a real HTTP receiver on a loopback port
//! that records every request and answers as told (forward-sink issue).

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::*;
use serde_json::{json, Value};
use wa_hub_sidecar::signature::{self, SignatureCheck};

const T: Duration = Duration::from_secs(20);
const FWD_SECRET: &str = "forward-secret";
const FWD_TOKEN: &str = "forward-token";

/// What the receiver answers.
#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    /// Status with a `Retry-After` header value.
    RetryAfter(u16, String),
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    }
    fn key(&self) -> String {
        self.header("idempotency-key")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("forwarded body is JSON")
    }
}

#[derive(Default)]
struct Script {
    hits: Mutex<Vec<Hit>>,
    /// Answers used first, one per request; then `default`.
    queue: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
}

/// A webhook receiver on a loopback port; stops listening when dropped.
struct Receiver {
    addr: SocketAddr,
    script: Arc<Script>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    /// Starts on a free port.
    fn start(default: Reply) -> Self {
        Self::start_on(0, default)
    }

    /// Starts on `port` (0: any free one).
    fn start_on(port: u16, default: Reply) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let script = Arc::new(Script::default());
        *script.default.lock().unwrap() = Some(default);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(script.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            script,
            _runtime: runtime,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/wa?src=sidecar", self.addr)
    }

    fn then(&self, reply: Reply) {
        self.script.queue.lock().unwrap().push_back(reply);
    }

    fn answer(&self, reply: Reply) {
        *self.script.default.lock().unwrap() = Some(reply);
    }

    fn hits(&self) -> Vec<Hit> {
        self.script.hits.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; panics after [`T`].
    fn wait_hits(&self, n: usize) -> Vec<Hit> {
        eventually(T, || {
            let h = self.hits();
            (h.len() >= n).then_some(h)
        })
        .unwrap_or_else(|| panic!("receiver got {} of {n} requests", self.hits().len()))
    }
}

async fn receive(State(s): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    s.hits.lock().unwrap().push(Hit {
        at: Instant::now(),
        headers,
        body,
    });
    let reply = s
        .queue
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| s.default.lock().unwrap().clone())
        .unwrap_or(Reply::Status(200));
    match reply {
        Reply::Status(code) => (StatusCode::from_u16(code).unwrap(), "answer").into_response(),
        Reply::RetryAfter(code, after) => (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", after)],
            "later",
        )
            .into_response(),
    }
}

fn dead_url() -> String {
    format!("http://127.0.0.1:{}/", free_port())
}

/// YAML of one forward sink named `fwd`, signing and authenticating, outbox in `dir`.
fn forward_yaml(url: &str, dir: &Path, extra: &str) -> String {
    format!(
        "{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 0\nsinks:\n  - type: forward\n    name: fwd\n    url: {url}\n    secret: {FWD_SECRET}\n    auth_token: {FWD_TOKEN}\n    timeout_ms: 2000\n    backoff_initial_ms: 50\n    backoff_max_ms: 400\n    outbox_path: {}\n{extra}",
        outbox(dir).display()
    )
}

fn outbox(dir: &Path) -> PathBuf {
    dir.join("outbox/fwd.redb")
}

fn sidecar(url: &str, dir: &Path, extra: &str) -> Sidecar {
    Sidecar::start(&dead_url(), &forward_yaml(url, dir, extra))
}

/// A signed webhook body for `instance` carrying sequence number `n`.
fn numbered(instance: &str, n: usize) -> String {
    // Odd spacing and key order on purpose: the receiver must get these exact bytes.
    format!(
        r#"{{ "event":"message", "instanceId":"{instance}",  "data":{{"n":{n},"text":"héllo\u00e9"}} }}"#
    )
}

fn post_ok(sc: &Sidecar, body: &str) {
    let r = post_signed(sc, body);
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
}

fn dead_letters(sc: &Sidecar) -> Value {
    let (status, v) = get_json(sc, "/api/sinks/fwd/dead-letters");
    assert_eq!(status, 200, "{v}");
    v
}

/// Waits until the dead-letter route reports `pending` and `total`.
fn wait_outbox(sc: &Sidecar, pending: u64, total: u64) -> Value {
    eventually(T, || {
        let v = dead_letters(sc);
        (v["pending"] == pending && v["total"] == total).then_some(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "outbox never reached pending={pending} total={total}: {}\n{}",
            dead_letters(sc),
            sc.log()
        )
    })
}

#[test]
fn forwarded_webhooks_are_byte_identical_signed_keyed_and_authenticated() {
    let rx = Receiver::start(Reply::Status(200));
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecar(&rx.url(), dir.path(), "");
    let fixtures = webhook_fixtures();
    for w in &fixtures {
        post_ok(&sc, &w.body);
    }
    let hits = rx.wait_hits(fixtures.len());
    // Only webhooks are forwarded: the status and qr events they cause are not.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.hits().len(), fixtures.len());

    let (_, events) = get_json(&sc, "/api/events");
    let mut record_ids: Vec<String> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    record_ids.reverse(); // newest first → oldest first
    for ((hit, w), id) in hits.iter().zip(&fixtures).zip(&record_ids) {
        assert_eq!(&hit.body[..], w.body.as_bytes(), "body changed in transit");
        let sig = hit.header("x-wa-hub-signature");
        assert_eq!(
            signature::verify(FWD_SECRET.as_bytes(), [sig.as_bytes()], &hit.body),
            SignatureCheck::Valid
        );
        assert_eq!(sig, sig.to_lowercase());
        assert_eq!(hit.header("content-type"), "application/json");
        assert_eq!(hit.header("authorization"), format!("Bearer {FWD_TOKEN}"));
        assert_eq!(&hit.key(), id, "Idempotency-Key is the webhook record id");
    }
    let keys: HashSet<_> = hits.iter().map(Hit::key).collect();
    assert_eq!(keys.len(), fixtures.len());
    let v = dead_letters(&sc);
    assert_eq!(
        (v["pending"].as_u64(), v["total"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn service_unavailable_is_retried_with_growing_backoff_then_dead_lettered() {
    let rx = Receiver::start(Reply::Status(503));
    let dir = tempfile::tempdir().unwrap();
    // Backoff bases 100, 200, 400, 400 ms; each delay is jittered within [base/2, base].
    let yaml = forward_yaml(&rx.url(), dir.path(), "    max_attempts: 5\n")
        .replace("backoff_initial_ms: 50", "backoff_initial_ms: 100");
    let sc = Sidecar::start(&dead_url(), &yaml);
    let body = numbered("WASP-a", 1);
    post_ok(&sc, &body);
    let v = wait_outbox(&sc, 0, 1);
    let hits = rx.hits();
    assert_eq!(hits.len(), 5, "max_attempts bounds the attempts");
    let gaps: Vec<u128> = hits
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_millis())
        .collect();
    let bases = [100u128, 200, 400, 400];
    for (gap, base) in gaps.iter().zip(bases) {
        assert!(
            *gap + 5 >= base / 2 && *gap <= base + 400,
            "gap {gap} ms outside [{}, {}] (gaps {gaps:?})",
            base / 2,
            base
        );
    }
    assert!(gaps[1] + 5 >= gaps[0] && gaps[2] + 5 >= gaps[1], "{gaps:?}");
    assert!(hits
        .iter()
        .all(|h| h.key() == hits[0].key() && h.body == body.as_bytes()));
    let d = &v["deadLetters"][0];
    assert_eq!(d["attempts"], 5);
    assert_eq!(d["lastError"], "HTTP 503: answer");
    assert_eq!(d["eventId"], hits[0].key());
}

#[test]
fn retry_after_in_seconds_or_as_a_date_is_honoured() {
    let rx = Receiver::start(Reply::Status(200));
    rx.then(Reply::RetryAfter(429, "1".into()));
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecar(&rx.url(), dir.path(), "");
    post_ok(&sc, &numbered("WASP-a", 1));
    let hits = rx.wait_hits(2);
    let gap = hits[1].at - hits[0].at;
    assert!(gap >= Duration::from_millis(990), "waited only {gap:?}");
    assert!(gap < Duration::from_millis(1900), "waited {gap:?}");
    assert_eq!(hits[0].key(), hits[1].key());

    // An HTTP-date two seconds ahead: at least one full second away whatever the sub-second.
    let at = std::time::SystemTime::now() + Duration::from_secs(2);
    rx.then(Reply::RetryAfter(503, httpdate::fmt_http_date(at)));
    post_ok(&sc, &numbered("WASP-a", 2));
    let hits = rx.wait_hits(4);
    let gap = hits[3].at - hits[2].at;
    assert!(gap >= Duration::from_millis(990), "waited only {gap:?}");
    assert!(gap < Duration::from_millis(3500), "waited {gap:?}");
    wait_outbox(&sc, 0, 0);
}

#[test]
fn bad_request_is_not_retried_and_goes_to_dead_letters_at_once() {
    let rx = Receiver::start(Reply::Status(400));
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecar(&rx.url(), dir.path(), "");
    let body = numbered("WASP-x", 7);
    post_ok(&sc, &body);
    let v = wait_outbox(&sc, 0, 1);
    std::thread::sleep(Duration::from_millis(800)); // several backoff periods
    let hits = rx.hits();
    assert_eq!(hits.len(), 1, "a 400 is never retried");
    let d = &v["deadLetters"][0];
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["lastError"], "HTTP 400: answer");
    assert_eq!(d["eventId"], hits[0].key());
    assert_eq!(d["instanceId"], "WASP-x");
    assert_eq!(d["event"], "message");
    assert_eq!(d["body"], body);
    assert_eq!(d["contentType"], "application/json");
    assert_eq!(d["firstAttemptAt"], d["lastAttemptAt"]);
    for k in ["receivedAt", "deadAt", "firstAttemptAt"] {
        assert!(d[k].as_str().is_some_and(|t| t.ends_with('Z')), "{k}: {d}");
    }
    assert!(d["id"].as_u64().is_some());
    assert!(sc.log().contains("moved to dead letters"), "{}", sc.log());
}

/// Posts `per_instance` numbered webhooks for each of `instances`, interleaved; returns the
/// bodies in posting order.
fn post_interleaved(sc: &Sidecar, instances: &[&str], per_instance: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for n in 0..per_instance {
        for i in instances {
            let b = numbered(i, n);
            post_ok(sc, &b);
            bodies.push(b);
        }
    }
    bodies
}

/// Checks every body arrived once and, per instance, in posting order.
fn assert_once_each_in_instance_order(hits: &[Hit], bodies: &[String]) {
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for h in hits {
        *by_key.entry(h.key()).or_default() += 1;
    }
    assert!(by_key.values().all(|n| *n == 1), "duplicates: {by_key:?}");
    assert_eq!(by_key.len(), bodies.len());
    let got: Vec<&[u8]> = hits.iter().map(|h| &h.body[..]).collect();
    for b in bodies {
        assert!(got.contains(&b.as_bytes()), "missing {b}");
    }
    let mut seen: HashMap<String, Vec<u64>> = HashMap::new();
    for h in hits {
        let v = h.json();
        seen.entry(v["instanceId"].as_str().unwrap().to_owned())
            .or_default()
            .push(v["data"]["n"].as_u64().unwrap());
    }
    for (instance, ns) in seen {
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        assert_eq!(ns, sorted, "order of {instance}");
    }
}

#[test]
fn receiver_down_then_up_gets_every_event_once_in_per_instance_order() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/wa");
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecar(&url, dir.path(), "");
    let bodies = post_interleaved(&sc, &["WASP-a", "WASP-b", "WASP-c"], 10);
    wait_outbox(&sc, 30, 0);
    std::thread::sleep(Duration::from_millis(1200)); // a few failed attempts
    assert!(sc.log().contains("will retry"), "{}", sc.log());
    assert_eq!(dead_letters(&sc)["pending"], 30);

    let rx = Receiver::start_on(port, Reply::Status(200));
    let hits = rx.wait_hits(30);
    wait_outbox(&sc, 0, 0);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(rx.hits().len(), 30);
    assert_once_each_in_instance_order(&hits, &bodies);
}

#[test]
fn sigkill_during_an_outage_loses_nothing_after_restart() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/wa");
    let dir = tempfile::tempdir().unwrap();
    let mut sc = sidecar(&url, dir.path(), "");
    let mut bodies = post_interleaved(&sc, &["WASP-a", "WASP-b"], 10);
    for w in webhook_fixtures() {
        post_ok(&sc, &w.body);
        bodies.push(w.body);
    }
    let n = bodies.len() as u64;
    wait_outbox(&sc, n, 0);
    sc.child.kill().expect("SIGKILL"); // std's kill() is SIGKILL on Unix
    sc.child.wait().unwrap();
    drop(sc);
    assert!(outbox(dir.path()).exists());

    let rx = Receiver::start_on(port, Reply::Status(200));
    let sc = sidecar(&url, dir.path(), "");
    let hits = rx.wait_hits(bodies.len());
    wait_outbox(&sc, 0, 0);
    std::thread::sleep(Duration::from_millis(200));
    let hits_now = rx.hits();
    assert_eq!(hits_now.len(), hits.len());
    // Fixture bodies repeat nothing, numbered ones carry their instance's order.
    let numbered_hits: Vec<Hit> = hits
        .iter()
        .filter(|h| h.json()["data"]["n"].is_u64())
        .cloned()
        .collect();
    assert_eq!(numbered_hits.len(), 20);
    assert_once_each_in_instance_order(&numbered_hits, &bodies[..20]);
    let all: HashSet<_> = hits.iter().map(Hit::key).collect();
    assert_eq!(all.len(), bodies.len());
    for b in &bodies {
        assert!(hits.iter().any(|h| h.body == b.as_bytes()), "lost {b}");
    }
}

#[test]
fn sigterm_with_pending_events_exits_promptly_and_keeps_them() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/wa");
    let dir = tempfile::tempdir().unwrap();
    let mut sc = sidecar(&url, dir.path(), "");
    let bodies = post_interleaved(&sc, &["WASP-a"], 3);
    wait_outbox(&sc, 3, 0);
    let asked = Instant::now();
    sc.terminate();
    let status = sc
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}\n{}", sc.log());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        sc.log().contains("pending events stay in the outbox"),
        "{}",
        sc.log()
    );
    drop(sc);

    let rx = Receiver::start_on(port, Reply::Status(200));
    let sc = sidecar(&url, dir.path(), "");
    let hits = rx.wait_hits(3);
    wait_outbox(&sc, 0, 0);
    assert_once_each_in_instance_order(&hits, &bodies);
}

#[test]
fn dead_letters_are_listed_and_replayed_one_or_all_over_http() {
    let rx = Receiver::start(Reply::Status(422));
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecar(&rx.url(), dir.path(), "");
    let bodies: Vec<String> = (0..3).map(|n| numbered("WASP-r", n)).collect();
    for b in &bodies {
        post_ok(&sc, b);
    }
    let v = wait_outbox(&sc, 0, 3);
    let list = v["deadLetters"].as_array().unwrap();
    assert_eq!(v["sink"], "fwd");
    let ids: Vec<u64> = list.iter().map(|d| d["id"].as_u64().unwrap()).collect();
    let bodies_listed: Vec<&str> = list.iter().map(|d| d["body"].as_str().unwrap()).collect();
    assert_eq!(
        bodies_listed,
        bodies.iter().map(String::as_str).collect::<Vec<_>>()
    );
    let (_, limited) = get_json(&sc, "/api/sinks/fwd/dead-letters?limit=1");
    assert_eq!(limited["deadLetters"].as_array().unwrap().len(), 1);
    assert_eq!(limited["total"], 3);

    rx.answer(Reply::Status(200));
    let c = client();
    let r = c
        .post(sc.url(&format!("/api/sinks/fwd/dead-letters/replay?id={}", ids[1])))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().unwrap()["replayed"], 1);
    let hits = rx.wait_hits(4);
    assert_eq!(hits[3].body, bodies[1].as_bytes());
    assert_eq!(hits[3].key(), list[1]["eventId"].as_str().unwrap());
    wait_outbox(&sc, 0, 2);

    let r = c
        .post(sc.url("/api/sinks/fwd/dead-letters/replay"))
        .header("content-type", "application/json")
        .body(json!({ "id": ids[1] }).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404, "already replayed");
    assert_eq!(r.json::<Value>().unwrap()["error"], "Unknown dead letter");
    let r = c
        .post(sc.url("/api/sinks/fwd/dead-letters/replay?id=x"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    let r = c
        .post(sc.url("/api/sinks/fwd/dead-letters/replay"))
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["replayed"], 2);
    let hits = rx.wait_hits(6);
    let replayed: Vec<&[u8]> = hits[4..].iter().map(|h| &h.body[..]).collect();
    assert_eq!(replayed, [bodies[0].as_bytes(), bodies[2].as_bytes()]);
    wait_outbox(&sc, 0, 0);

    let (status, v) = get_json(&sc, "/api/sinks/nope/dead-letters");
    assert_eq!((status, v["error"].as_str()), (404, Some("Unknown sink")));
    let r = c
        .post(sc.url("/api/sinks/nope/dead-letters/replay"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = c
        .delete(sc.url("/api/sinks/fwd/dead-letters"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = c
        .get(sc.url("/api/sinks/fwd/dead-letters/replay"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[test]
fn dead_letter_routes_require_a_client_token_when_tokens_are_configured() {
    let rx = Receiver::start(Reply::Status(400));
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecar(
        &rx.url(),
        dir.path(),
        "auth:\n  client_tokens: [reader-token]\n",
    );
    post_ok(&sc, &numbered("WASP-t", 1));
    rx.wait_hits(1);
    let c = client();
    let list = sc.url("/api/sinks/fwd/dead-letters");
    let replay = sc.url("/api/sinks/fwd/dead-letters/replay");
    assert_eq!(c.get(&list).send().unwrap().status().as_u16(), 401);
    let wrong = c.get(&list).bearer_auth("nope").send().unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(c.post(&replay).send().unwrap().status().as_u16(), 401);
    let unknown = c
        .get(sc.url("/api/sinks/other/dead-letters"))
        .send()
        .unwrap();
    assert_eq!(
        unknown.status().as_u16(),
        401,
        "no sink names leak without a token"
    );

    let v: Value = eventually(T, || {
        let v: Value = c
            .get(&list)
            .bearer_auth("reader-token")
            .send()
            .unwrap()
            .json()
            .unwrap();
        (v["total"] == 1).then_some(v)
    })
    .expect("a dead letter");
    assert_eq!(v["deadLetters"][0]["attempts"], 1);
    let by_query = c
        .get(format!("{list}?access_token=reader-token"))
        .send()
        .unwrap();
    assert_eq!(by_query.status().as_u16(), 200);

    rx.answer(Reply::Status(200));
    let r = c.post(&replay).bearer_auth("reader-token").send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().unwrap()["replayed"], 1);
    rx.wait_hits(2);
    let r = c
        .post(format!("{replay}?access_token=reader-token"))
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["replayed"], 0);
}

#[test]
fn unwritable_outbox_path_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{}\nmetrics_listen: null\nsinks:\n  - type: forward\n    name: crm\n    url: http://127.0.0.1:9/\n    outbox_path: {}\n",
            free_port(),
            blocker.join("o.redb").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(sidecar_bin())
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sinks[0] (crm)") && err.contains("cannot create directory"),
        "{err}"
    );
}

#[test]
fn forward_sink_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    for (yaml, want) in [
        ("    url: ftp://127.0.0.1/\n", "url"),
        (
            "    url: http://127.0.0.1:9/\n    kinds: [apiLog]\n",
            "kinds",
        ),
        ("    url: http://127.0.0.1:9/\n    retries: 3\n", "retries"),
        (
            "    url: http://127.0.0.1:9/\n    backoff_initial_ms: 5000\n    backoff_max_ms: 10\n",
            "backoff_initial_ms",
        ),
    ] {
        std::fs::write(&path, format!("sinks:\n  - type: forward\n{yaml}")).unwrap();
        let out = std::process::Command::new(sidecar_bin())
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{yaml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{want}: {err}");
    }
    std::fs::write(
        &path,
        "sinks:\n  - type: forward\n    url: https://h.example/x\n    secret: very-secret\n    auth_token: also-secret\n",
    )
    .unwrap();
    let out = std::process::Command::new(sidecar_bin())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("type: forward") && text.contains("********"),
        "{text}"
    );
    assert!(
        !text.contains("very-secret") && !text.contains("also-secret"),
        "{text}"
    );
}

/// Runs the binary on the forward config of `dir` (outbox `outbox(dir)`) until it exits by
/// itself; `as_nobody` runs it as uid/gid 65534 when the tests run as root.
fn run_to_exit(dir: &Path, as_nobody: bool) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let path = dir.join("run.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:{}\nmetrics_listen: null\nupstream:\n  base_url: {}\n  health_interval_ms: 0\n{}",
            free_port(),
            dead_url(),
            forward_yaml(&dead_url(), dir, "")
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(sidecar_bin());
    cmd.arg("--config").arg(&path);
    for v in OVERRIDE_VARS {
        cmd.env_remove(v);
    }
    if as_nobody && unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + T;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the sidecar started on a damaged outbox instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Offsets of the 4 KiB pages of `bytes` that hold stored bodies (runs of `z`).
fn pages_with_bodies(bytes: &[u8]) -> Vec<usize> {
    (0..bytes.len() / 4096)
        .map(|p| p * 4096)
        .filter(|&o| {
            bytes[o..o + 4096]
                .windows(64)
                .any(|w| w.iter().all(|&b| b == b'z'))
        })
        .collect()
}

#[test]
fn a_damaged_outbox_of_any_kind_stops_start_up_with_one_line_naming_the_file() {
    // An outbox with pending events, left by a sidecar stopped during a receiver outage.
    let work = tempfile::tempdir().unwrap();
    let mut sc = sidecar(&dead_url(), work.path(), "");
    for i in 0..40 {
        post_ok(
            &sc,
            &json!({"event": "message", "instanceId": "WASP-a", "data": {"i": i, "text": "z".repeat(3000)}})
                .to_string(),
        );
    }
    wait_outbox(&sc, 40, 0);
    sc.terminate();
    assert!(sc.wait_exit(T).expect("exits").success());
    drop(sc);
    let good = std::fs::read(outbox(work.path())).unwrap();
    let pages = pages_with_bodies(&good);
    assert!(pages.len() >= 10, "{} pages with bodies", pages.len());
    let garbage: Vec<u8> = (0..good.len()).map(|i| (i * 7919 % 251) as u8).collect();

    let file_cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated to 1000 bytes", good[..1000].to_vec()),
        ("truncated to half", good[..good.len() / 2].to_vec()),
        ("zeroed pages", {
            let mut b = good.clone();
            for &o in &pages[pages.len() / 2..] {
                b[o..o + 4096].fill(0);
            }
            b
        }),
        ("garbage", garbage),
        ("another file type", b"{\"not\": \"a database\"}\n".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in file_cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outbox(dir.path()).parent().unwrap()).unwrap();
        std::fs::write(outbox(dir.path()), &bytes).unwrap();
        assert_refused(
            what,
            dir.path(),
            run_to_exit(dir.path(), false),
            "is damaged",
        );
        // The way out the message names: move the file aside, and the sidecar starts.
        let file = outbox(dir.path());
        std::fs::rename(&file, file.with_extension("redb.damaged")).unwrap();
        let sc = sidecar(&dead_url(), dir.path(), "");
        wait_outbox(&sc, 0, 0);
    }

    // A directory where the file should be.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outbox(dir.path())).unwrap();
    assert_refused(
        "a directory",
        dir.path(),
        run_to_exit(dir.path(), false),
        "a directory, not a file",
    );

    // An intact file the process may not read or write (run as an unprivileged user when
    // the tests run as root, who could read it anyway).
    let dir = tempfile::tempdir().unwrap();
    let file = outbox(dir.path());
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, &good).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [dir.path(), file.parent().unwrap()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    assert_refused(
        "unreadable",
        dir.path(),
        run_to_exit(dir.path(), true),
        "ermission denied",
    );
}

/// The process exited by itself, not by a panic (101), with one error line naming the file.
fn assert_refused(what: &str, dir: &Path, out: std::process::Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what}: started\n{err}");
    assert_ne!(out.status.code(), Some(101), "{what}: panicked\n{err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("wa-hub-sidecar:"))
        .collect();
    assert_eq!(lines.len(), 1, "{what}: one error line\n{err}");
    let file = outbox(dir).display().to_string();
    assert!(
        lines[0].contains(&file) && lines[0].contains(want),
        "{what}: {}",
        lines[0]
    );
}

/// `name{labels…}`'s value in the sidecar's `/metrics` text (0 when absent).
fn metric(sc: &Sidecar, series: &str) -> f64 {
    metric_value(sc, series).unwrap_or(0.0)
}

#[test]
fn each_outcome_is_counted_once_under_its_own_name_and_a_redirect_is_not_delivered() {
    let rx = Receiver::start(Reply::Status(301));
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecar(&rx.url(), dir.path(), "");
    post_ok(&sc, &numbered("WASP-r", 1));
    wait_outbox(&sc, 0, 1);
    let delivered = r#"wa_hub_sidecar_sink_deliveries_total{outcome="delivered",sink="fwd"}"#;
    let dead = r#"wa_hub_sidecar_sink_dead_letters_total{sink="fwd"}"#;
    assert_eq!(
        metric(&sc, delivered),
        0.0,
        "a 301 is a dead letter, not a delivery"
    );
    assert_eq!(metric(&sc, dead), 1.0);

    rx.answer(Reply::Status(200));
    post_ok(&sc, &numbered("WASP-r", 2));
    rx.wait_hits(2);
    wait_outbox(&sc, 0, 1);
    let n = eventually(T, || (metric(&sc, delivered) == 1.0).then_some(()));
    assert!(n.is_some(), "the 2xx is counted delivered once");
    assert_eq!(metric(&sc, dead), 1.0);
}
