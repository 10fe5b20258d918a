//! The SSE hub and the stdout sink through the real binary, with a real SSE client over HTTP
//! (SSE issue).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

fn dead_upstream() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn sidecar(sse_yaml: &str) -> Sidecar {
    Sidecar::start(
        &dead_upstream(),
        &format!("{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 0\nsinks:\n  - type: sse\n{sse_yaml}"),
    )
}

fn replay_all(sc: &Sidecar, range: std::ops::Range<usize>) {
    for w in &webhook_fixtures()[range] {
        assert_eq!(post_signed(sc, &w.body).status().as_u16(), 200);
    }
}

#[test]
fn connected_then_initial_then_live_events_in_dashboard_envelope() {
    let sc = sidecar("");
    replay_all(&sc, 0..1); // a qr before connecting: in `initial`
                           // `initial` covers what the SSE hub has; the sink hands it events a moment after the
                           // webhook is answered (under load, after this client connected: it then gets them live).
    eventually(T, || {
        let text = client().get(sc.url("/metrics")).send().ok()?.text().ok()?;
        text.lines()
            .any(|l| {
                l.starts_with("wa_hub_sidecar_sink_deliveries_total{")
                    && l.contains("sink=\"sse\"")
                    && l.contains("outcome=\"delivered\"")
                    && !l.ends_with(" 0")
            })
            .then_some(())
    })
    .expect("the SSE sink delivered the webhook");
    let c = SseClient::connect(&sc.url("/api/stream?scope=global"), &[]);
    assert_eq!(c.status, 200);
    assert!(c.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let cache = c.headers["cache-control"].to_str().unwrap();
    assert!(
        cache.contains("no-cache") && cache.contains("no-transform"),
        "{cache}"
    );
    assert_eq!(c.headers["x-accel-buffering"], "no");
    assert!(c.headers.get("content-length").is_none());

    assert_eq!(c.next_item(T), Some(SseItem::Retry(3000)));
    let connected = c.next_event(T);
    assert_eq!(
        connected.json(),
        json!({"type": "connected", "data": {"instanceId": null, "scope": "global"}})
    );
    let initial = c.next_event(T);
    let v = initial.json();
    assert_eq!(v["type"], "initial");
    let events = v["data"]["webhookEvents"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "qr");
    assert!(v["data"]["apiLogs"].is_array());
    assert_eq!(
        v["data"]["instanceMeta"]["WASP-acme-store_myshopify_com"]["waStatus"],
        "qr"
    );
    let snapshot = initial.id().expect("initial carries the snapshot id");

    replay_all(&sc, 2..3); // authenticated: a webhook and a status change
    let live = c.next_event(T);
    assert_eq!(live.kind(), "webhook");
    assert!(live.id().unwrap() > snapshot);
    assert_eq!(live.json()["data"]["event"], "authenticated");
    assert_eq!(
        live.json()["data"]["summary"],
        "authenticated @ WASP-acme-store_myshopify_com"
    );
    let status = c.next_event(T);
    assert_eq!(status.kind(), "status");
    assert_eq!(status.json()["data"]["rank"], 2);
    assert_eq!(status.id(), Some(live.id().unwrap() + 1));

    // A qr webhook carrying a QR also emits a `qr` event.
    replay_all(&sc, 1..2);
    let kinds: Vec<String> = (0..3).map(|_| c.next_event(T).kind()).collect();
    assert_eq!(kinds, vec!["webhook", "qr", "status"]);
}

#[test]
fn instance_scope_filters_out_other_instances() {
    let sc = sidecar("");
    let beta = SseClient::connect(&sc.url("/api/stream?instanceId=WASP-beta_shop"), &[]);
    let global = SseClient::connect(&sc.url("/api/stream?scope=global"), &[]);
    assert_eq!(
        beta.next_event(T).json()["data"],
        json!({"instanceId": "WASP-beta_shop", "scope": "instance"})
    );
    beta.next_event(T); // initial
    global.next_event(T);
    global.next_event(T);
    replay_all(&sc, 0..13);
    let mut beta_ids = Vec::new();
    loop {
        let e = beta.next_event(T);
        assert_eq!(e.json()["data"]["instanceId"], "WASP-beta_shop", "{e:?}");
        beta_ids.push(e.id().unwrap());
        if e.kind() == "status" && e.json()["data"]["displayStatus"] == "restricted" {
            break;
        }
    }
    // Global sees acme's and beta's: 13 webhooks plus qr and status events.
    let all = global.events_until("status", T);
    assert!(all
        .iter()
        .any(|e| e.json()["data"]["instanceId"] == "WASP-acme-store_myshopify_com"));
    let ids: Vec<u64> = all.iter().map(|e| e.id().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
}

#[test]
fn resume_after_last_event_id_gets_exactly_the_missed_events() {
    let sc = sidecar("");
    let c = SseClient::connect(&sc.url("/api/stream"), &[]);
    c.next_event(T);
    c.next_event(T);
    replay_all(&sc, 0..3);
    let seen = c.events_until("status", T); // first qr: webhook, qr, status
    let last = seen.last().unwrap().id().unwrap();
    drop(c);

    replay_all(&sc, 3..6); // change_state, ready, message: missed while away
    let r = SseClient::connect(
        &sc.url("/api/stream"),
        &[("last-event-id", &last.to_string())],
    );
    assert_eq!(r.next_event(T).kind(), "connected");
    // Every event after `last`, in order, with no `initial`: the second qr (webhook, qr,
    // status), authenticated, change_state and ready (webhook, status each), then message.
    let mut resumed = Vec::new();
    loop {
        let e = r.next_event(T);
        let done = e.json()["data"]["event"] == "message";
        resumed.push(e);
        if done {
            break;
        }
    }
    let ids: Vec<u64> = resumed.iter().map(|e| e.id().unwrap()).collect();
    assert_eq!(ids, ((last + 1)..=(last + 10)).collect::<Vec<_>>());
    let kinds: Vec<String> = resumed.iter().map(SseItem::kind).collect();
    assert_eq!(
        kinds,
        [
            "webhook", "qr", "status", "webhook", "status", "webhook", "status", "webhook",
            "status", "webhook"
        ]
    );

    // Then live ones.
    replay_all(&sc, 6..7);
    let live = r.next_event(T);
    assert_eq!(live.id(), Some(last + 11));
    assert_eq!(live.json()["data"]["event"], "vote_update");

    // The same through the query parameter, for a first connection.
    let q = SseClient::connect(
        &sc.url(&format!("/api/stream?lastEventId={}", last + 9)),
        &[],
    );
    assert_eq!(q.next_event(T).kind(), "connected");
    assert_eq!(q.next_event(T).id(), Some(last + 10));
    assert_eq!(q.next_event(T).id(), Some(last + 11));
}

#[test]
fn too_old_or_unknown_last_event_id_gets_reset_then_initial() {
    let sc = sidecar("    history: 3\n");
    replay_all(&sc, 0..6);
    for stale in ["1", "999999"] {
        let c = SseClient::connect(&sc.url("/api/stream"), &[("last-event-id", stale)]);
        assert_eq!(c.next_event(T).kind(), "connected");
        let reset = c.next_event(T);
        assert_eq!(reset.kind(), "reset", "Last-Event-ID {stale}");
        assert_eq!(
            reset.json()["data"]["lastEventId"],
            stale.parse::<u64>().unwrap()
        );
        let initial = c.next_event(T);
        assert_eq!(initial.kind(), "initial");
        // The initial state covers what the SSE hub had when the client connected; anything
        // still on its way follows live. Together: all six webhooks, once each.
        let mut seen = initial.json()["data"]["webhookEvents"]
            .as_array()
            .unwrap()
            .len();
        while seen < 6 {
            if c.next_event(T).kind() == "webhook" {
                seen += 1;
            }
        }
        assert_eq!(seen, 6);
    }
}

#[test]
fn heartbeat_comment_arrives_within_the_interval() {
    let sc = sidecar("    heartbeat_ms: 200\n");
    let c = SseClient::connect(&sc.url("/api/stream"), &[]);
    let start = Instant::now();
    loop {
        match c.next_item(Duration::from_secs(2)) {
            Some(SseItem::Comment(_)) => break,
            Some(SseItem::End) | None => panic!("no heartbeat"),
            Some(_) => {}
        }
    }
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn a_client_that_never_reads_is_dropped_without_delaying_others() {
    let sc = sidecar("    client_backlog: 16\n    write_timeout_ms: 500\n");
    let mut stuck = TcpStream::connect(sc.addr).unwrap();
    stuck
        .write_all(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reader = SseClient::connect(&sc.url("/api/stream"), &[]);
    reader.next_event(T);
    reader.next_event(T);

    // 40 messages of ~600 KiB: far more than socket buffers hold.
    let text = "x".repeat(600 * 1024);
    let started = Instant::now();
    for i in 0..40 {
        let body =
            json!({"event": "message", "instanceId": "WASP-big", "data": {"i": i, "t": text}})
                .to_string();
        assert_eq!(post_signed(&sc, &body).status().as_u16(), 200);
        let e = reader.next_event(T);
        assert_eq!(
            e.json()["data"]["payload"]["data"]["i"],
            i,
            "reader kept up"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));

    // The stuck client was dropped: after its buffered bytes, the server closed it.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let closed = loop {
        match stuck.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    assert!(closed, "stuck client still open");
    assert!(sc.log().contains("dropped"), "drop is logged: {}", sc.log());
}

#[test]
fn client_limit_answers_503() {
    let sc = sidecar("    max_clients: 2\n");
    let a = SseClient::connect(&sc.url("/api/stream"), &[]);
    let _b = SseClient::connect(&sc.url("/api/stream"), &[]);
    a.next_event(T);
    let r = client().get(sc.url("/api/stream")).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"], "Too many clients");
    drop(a);
    let ok = eventually(T, || {
        let c = SseClient::connect(&sc.url("/api/stream"), &[]);
        (c.status == 200).then_some(c)
    });
    assert!(ok.is_some(), "slot released after a client left");
}

#[test]
fn streams_close_cleanly_on_shutdown() {
    let mut sc = sidecar("");
    let c = SseClient::connect(&sc.url("/api/stream"), &[]);
    c.next_event(T);
    c.next_event(T);
    let t = Instant::now();
    sc.terminate();
    loop {
        match c.next_item(Duration::from_secs(5)) {
            Some(SseItem::End) => break,
            Some(_) => continue,
            None => panic!("stream not closed on shutdown"),
        }
    }
    let status = sc.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success());
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[test]
fn stream_needs_client_token_when_configured() {
    let sc = Sidecar::start(&dead_upstream(), "auth:\n  client_tokens: [browser]\n");
    assert_eq!(
        client()
            .get(sc.url("/api/stream"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let c = SseClient::connect(&sc.url("/api/stream?access_token=browser"), &[]);
    assert_eq!(c.status, 200);
    assert_eq!(c.next_event(T).kind(), "connected");
}

#[test]
fn stdout_sink_writes_one_parsable_line_per_event_with_filters() {
    let sc = Sidecar::start(
        &dead_upstream(),
        &format!(
            "{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 0\nsinks:\n  - type: stdout\n    kinds: [webhook]\n    events: [\"message\", \"change_*\"]\n"
        ),
    );
    let fixtures = webhook_fixtures();
    for w in &fixtures {
        assert_eq!(post_signed(&sc, &w.body).status().as_u16(), 200);
    }
    // The fixture message again, with non-ASCII text and line breaks in it.
    let mut msg: Value = serde_json::from_str(&fixtures[5].body).unwrap();
    msg["data"]["message"]["body"] = json!("هل تم شحن طلبي؟ 📦\nline two\r\n\u{2028}end");
    let msg_body = msg.to_string();
    assert_eq!(post_signed(&sc, &msg_body).status().as_u16(), 200);

    let lines = eventually(T, || {
        let out = sc.stdout();
        let lines: Vec<String> = out.lines().map(str::to_owned).collect();
        (lines.len() >= 4).then_some(lines)
    })
    .unwrap_or_else(|| panic!("stdout: {}", sc.stdout()));
    assert_eq!(
        lines.len(),
        4,
        "change_state, message, change_state, message: {lines:?}"
    );
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = parsed
        .iter()
        .map(|v| v["data"]["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["change_state", "message", "change_state", "message"]
    );
    for (v, fixture_body) in parsed.iter().zip([
        &fixtures[3].body,
        &fixtures[5].body,
        &fixtures[7].body,
        &msg_body,
    ]) {
        assert_eq!(v["type"], "webhook");
        assert!(v["id"].as_u64().is_some());
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        let original: Value = serde_json::from_str(fixture_body).unwrap();
        assert_eq!(v["data"]["payload"], original);
    }
}
