//! The forward sink against a real local HTTP receiver (axum on a loopback port).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::*;
use crate::config::{build, SinkConfig, SinkKind, SinksConfigError};
use crate::router::SinkStats;
use crate::signature::{sign, SIGNATURE_HEADER};
use crate::sink::Sink;
use crate::test_support::{api_log, webhook};

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    status: Arc<AtomicU16>,
}

async fn record(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.got.lock().unwrap().push((headers, body));
    StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap()
}

/// A receiver answering `status`, and its URL.
async fn receiver(status: u16) -> (Receiver, String) {
    let r = Receiver::default();
    r.status.store(status, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?k=v", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(record).with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (r, url)
}

fn config(url: &str, dir: &std::path::Path) -> ForwardConfig {
    let mut c = ForwardConfig::new(url.parse().unwrap());
    c.outbox_path = Some(dir.join("outbox.redb"));
    c.backoff_initial_ms = 20.try_into().unwrap();
    c.backoff_max_ms = 40.try_into().unwrap();
    c.timeout_ms = 2000.try_into().unwrap();
    c
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_arrive_byte_identical_signed_with_idempotency_key_and_bearer() {
    let (rx, url) = receiver(200).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&url, dir.path());
    cfg.secret = Some("fwd-secret".into());
    cfg.auth_token = Some("fwd-token".into());
    let stats = Arc::new(SinkStats::default());
    let mut sink = ForwardSink::new("f", cfg, stats.clone()).unwrap();
    sink.start().await.unwrap();
    let events = [webhook(1, "message", Some("A")), webhook(2, "ready", None)];
    for e in &events {
        sink.deliver(e).await.unwrap();
    }
    wait_until("two requests", || rx.got.lock().unwrap().len() == 2).await;
    wait_until("empty outbox", || stats.pending.load(Ordering::SeqCst) == 0).await;
    let got = rx.got.lock().unwrap().clone();
    for ((headers, body), e) in got.iter().zip(&events) {
        let crate::Payload::Webhook(w) = &e.payload else {
            unreachable!()
        };
        assert_eq!(body, &w.raw);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers[IDEMPOTENCY_KEY_HEADER], w.id.as_str());
        assert_eq!(headers["authorization"], "Bearer fwd-token");
        assert_eq!(
            headers[SIGNATURE_HEADER].to_str().unwrap(),
            sign(b"fwd-secret", &w.raw)
        );
    }
    assert_eq!(stats.connected(), Some(true));
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stored_while_the_receiver_is_down_are_sent_by_the_next_sink_on_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", l.local_addr().unwrap())
    };
    let stats = Arc::new(SinkStats::default());
    let mut sink = ForwardSink::new("f", config(&dead, dir.path()), stats.clone()).unwrap();
    sink.start().await.unwrap();
    for id in 1..=3 {
        sink.deliver(&webhook(id, "message", Some("A")))
            .await
            .unwrap();
    }
    assert_eq!(stats.pending.load(Ordering::SeqCst), 3);
    wait_until("a retry", || stats.retries.load(Ordering::SeqCst) >= 2).await;
    assert_eq!(stats.connected(), Some(false));
    sink.stop().await;
    drop(sink); // releases the outbox file lock

    let (rx, url) = receiver(200).await;
    let stats = Arc::new(SinkStats::default());
    let mut sink = ForwardSink::new("f", config(&url, dir.path()), stats.clone()).unwrap();
    assert_eq!(stats.pending.load(Ordering::SeqCst), 3);
    sink.start().await.unwrap();
    wait_until("three requests", || rx.got.lock().unwrap().len() == 3).await;
    let keys: Vec<_> = rx
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(h, _)| h[IDEMPOTENCY_KEY_HEADER].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["w1", "w2", "w3"]);
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_webhook_is_dead_lettered_at_once_and_replay_delivers_it() {
    let (rx, url) = receiver(400).await;
    let dir = tempfile::tempdir().unwrap();
    let stats = Arc::new(SinkStats::default());
    let mut sink = ForwardSink::new("f", config(&url, dir.path()), stats.clone()).unwrap();
    let handle = sink.handle();
    sink.start().await.unwrap();
    sink.deliver(&webhook(1, "message", Some("A")))
        .await
        .unwrap();
    wait_until("a dead letter", || {
        stats.dead_letters.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 1, "a 400 is not retried");
    assert_eq!(stats.retries.load(Ordering::SeqCst), 0);
    let list = handle.dead_letters(10).await.unwrap();
    assert_eq!((list.total, list.pending), (1, 0));
    let d = &list.dead_letters[0];
    assert_eq!((d.event_id.as_str(), d.attempts), ("w1", 1));
    assert_eq!(d.last_error.as_deref(), Some("HTTP 400"));
    assert!(d.dead_at.is_some() && d.first_attempt_at == d.last_attempt_at);

    rx.status.store(200, Ordering::SeqCst);
    assert!(matches!(
        handle.replay(Some(d.id + 100)).await,
        Err(OutboxError::UnknownDeadLetter(_))
    ));
    assert_eq!(handle.replay(None).await.unwrap(), 1);
    wait_until("the replayed delivery", || {
        rx.got.lock().unwrap().len() == 2
    })
    .await;
    wait_until("empty outbox", || handle.pending() == 0).await;
    assert_eq!(handle.dead_letters(10).await.unwrap().total, 0);
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_after_max_attempts() {
    let (rx, url) = receiver(503).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&url, dir.path());
    cfg.max_attempts = 3.try_into().unwrap();
    let stats = Arc::new(SinkStats::default());
    let mut sink = ForwardSink::new("f", cfg, stats.clone()).unwrap();
    sink.start().await.unwrap();
    sink.deliver(&webhook(1, "message", Some("A")))
        .await
        .unwrap();
    wait_until("a dead letter", || {
        stats.dead_letters.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(rx.got.lock().unwrap().len(), 3);
    assert_eq!(stats.retries.load(Ordering::SeqCst), 2);
    let d = &sink.handle().dead_letters(1).await.unwrap().dead_letters[0];
    assert_eq!(d.attempts, 3);
    assert_eq!(d.last_error.as_deref(), Some("HTTP 503"));
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_older_than_max_age_are_dead_lettered_instead_of_retried() {
    let (rx, url) = receiver(503).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&url, dir.path());
    cfg.max_age_secs = 1;
    cfg.max_attempts = 1000.try_into().unwrap();
    let stats = Arc::new(SinkStats::default());
    let mut sink = ForwardSink::new("f", cfg, stats.clone()).unwrap();
    sink.start().await.unwrap();
    sink.deliver(&webhook(1, "message", Some("A")))
        .await
        .unwrap();
    wait_until("a dead letter", || {
        stats.dead_letters.load(Ordering::SeqCst) == 1
    })
    .await;
    let tries = rx.got.lock().unwrap().len();
    assert!(tries >= 10, "retried for about a second: {tries}");
    let d = &sink.handle().dead_letters(1).await.unwrap().dead_letters[0];
    let error = d.last_error.as_deref().unwrap();
    assert!(
        error.starts_with("expired: ") && error.ends_with("HTTP 503"),
        "{error}"
    );
    sink.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_kinds_are_skipped_and_a_full_outbox_drops_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("http://127.0.0.1:9/", dir.path());
    cfg.max_pending = 2.try_into().unwrap();
    let stats = Arc::new(SinkStats::default());
    // Not started: nothing is sent, the outbox only fills.
    let mut sink = ForwardSink::new("f", cfg, stats.clone()).unwrap();
    sink.deliver(&api_log(1, Some("A"))).await.unwrap();
    assert_eq!(sink.handle().pending(), 0);
    let batch = [
        api_log(2, None),
        webhook(3, "message", None),
        webhook(4, "message", None),
        webhook(5, "message", None),
    ];
    sink.deliver_batch(&batch).await.unwrap();
    assert_eq!(sink.handle().pending(), 2);
    assert_eq!(stats.dropped.load(Ordering::SeqCst), 1);
    sink.deliver(&webhook(6, "message", None)).await.unwrap();
    assert_eq!(sink.handle().pending(), 2);
    assert_eq!(stats.dropped.load(Ordering::SeqCst), 2);
}

fn sink_config(v: serde_json::Value) -> SinkConfig {
    serde_json::from_value(v).unwrap()
}

#[test]
fn forward_config_parses_with_defaults_and_refuses_unknown_keys() {
    let c = sink_config(json!({"type": "forward", "url": "https://h.example/x"}));
    let SinkKind::Forward(f) = &c.kind else {
        panic!("not forward")
    };
    assert_eq!(c.name(), "forward");
    assert_eq!(
        (
            f.timeout_ms.get(),
            f.backoff_initial_ms.get(),
            f.backoff_max_ms.get()
        ),
        (10_000, 500, 60_000)
    );
    assert_eq!((f.max_attempts.get(), f.max_age_secs), (20, 86_400));
    let bad = serde_json::from_value::<SinkConfig>(
        json!({"type": "forward", "url": "http://x/", "retries": 3}),
    );
    assert!(bad.unwrap_err().to_string().contains("retries"));
    assert!(serde_json::from_value::<SinkConfig>(json!({"type": "forward"})).is_err());
}

#[test]
fn forward_sinks_refuse_other_kinds_and_shared_outboxes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.redb");
    let status = sink_config(json!({"type": "forward", "url": "http://x/", "kinds": ["status"]}));
    let err = crate::config::validate(&[status]).unwrap_err();
    assert!(
        matches!(
            err,
            SinksConfigError::Sink {
                source: crate::config::BuildError::Forward(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("kinds"), "{err}");
    let a = sink_config(
        json!({"type": "forward", "name": "a", "url": "http://x/", "outbox_path": path}),
    );
    let b = sink_config(
        json!({"type": "forward", "name": "b", "url": "http://y/", "outbox_path": path}),
    );
    let err = crate::config::validate(&[a, b]).unwrap_err().to_string();
    assert!(
        err.contains("outbox_path") && err.contains("sinks[1] (b)"),
        "{err}"
    );
}

#[tokio::test]
async fn built_forward_sink_receives_only_webhooks_and_is_exposed_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let c = sink_config(json!({
        "type": "forward", "name": "crm", "url": "http://127.0.0.1:9/",
        "outbox_path": dir.path().join("crm.redb"),
    }));
    let built = build(&[c]).unwrap();
    assert_eq!(built.dead_letters.keys().collect::<Vec<_>>(), ["crm"]);
    built.router.dispatch(&api_log(1, None));
    built.router.dispatch(&webhook(2, "ready", None));
    assert_eq!(built.router.snapshot()[0].queue_depth, 1);
}

#[test]
fn unwritable_outbox_stops_the_build_with_the_sink_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let c = sink_config(json!({
        "type": "forward", "name": "crm", "url": "http://127.0.0.1:9/",
        "outbox_path": file.join("o.redb"),
    }));
    let err = build(&[c]).err().expect("build fails").to_string();
    assert!(
        err.contains("sinks[0] (crm)") && err.contains("cannot create directory"),
        "{err}"
    );
}
