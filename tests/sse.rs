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
    dead_upstream_url()
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
    wait_sink_delivered(&sc, "sse", 3); // its webhook, qr and status events reached the hub
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

/// Reads `connected`, `reset` and `initial` from a client that sent an unusable id, and
/// returns the `reset` data.
fn expect_reset(c: &SseClient, what: &str) -> Value {
    assert_eq!(c.next_event(T).kind(), "connected", "{what}");
    let reset = c.next_event(T);
    assert_eq!(reset.kind(), "reset", "{what}");
    assert_eq!(c.next_event(T).kind(), "initial", "{what}");
    reset.json()["data"].clone()
}

#[test]
fn unusable_last_event_ids_get_reset_then_initial() {
    let sc = sidecar("    history: 3\n");
    let c = SseClient::connect(&sc.url("/api/stream"), &[]);
    let snapshot = {
        c.next_event(T);
        c.next_event(T).id().unwrap()
    };
    replay_all(&sc, 0..6);
    let last = c.events_until("webhook", T).last().unwrap().id().unwrap();
    assert!(last > snapshot);
    for garbage in ["abc", "-1", "18446744073709551616", "1.5"] {
        let h = SseClient::connect(&sc.url("/api/stream"), &[("last-event-id", garbage)]);
        let data = expect_reset(&h, garbage);
        assert_eq!(
            data,
            json!({"reason": "lastEventIdInvalid", "lastEventId": null})
        );
        let q = SseClient::connect(&sc.url(&format!("/api/stream?lastEventId={garbage}")), &[]);
        expect_reset(&q, garbage);
    }
    // From the future, older than kept, from before this process.
    for id in [last + 1000, snapshot + 1, snapshot - 1, 1] {
        let h = SseClient::connect(
            &sc.url("/api/stream"),
            &[("last-event-id", &id.to_string())],
        );
        let data = expect_reset(&h, &id.to_string());
        assert_eq!(
            data,
            json!({"reason": "lastEventIdNotKept", "lastEventId": id})
        );
    }
}

#[test]
fn an_id_from_the_previous_process_gets_reset_after_a_restart() {
    let mut old = sidecar("");
    let c = SseClient::connect(&old.url("/api/stream?scope=global"), &[]);
    c.next_event(T);
    c.next_event(T);
    replay_all(&old, 0..3);
    let held = c.events_until("status", T).last().unwrap().id().unwrap();
    drop(c);
    old.terminate();
    assert!(old.wait_exit(Duration::from_secs(10)).is_some());

    // The new process publishes more events than the old one did: with ids counted from 1,
    // `held` would name one of them and the client would silently skip events.
    let new = sidecar("");
    replay_all(&new, 0..12);
    let fresh = SseClient::connect(&new.url("/api/stream?scope=global"), &[]);
    fresh.next_event(T);
    let first_new = fresh.next_event(T).id().unwrap();
    assert!(
        first_new > held,
        "new ids ({first_new}) exceed old ones ({held})"
    );

    let c = SseClient::connect(
        &new.url("/api/stream?scope=global"),
        &[("last-event-id", &held.to_string())],
    );
    let data = expect_reset(&c, "id of the previous process");
    assert_eq!(data["lastEventId"], held);
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

    // The stuck client was dropped: the server reset its connection (what was queued for it
    // is discarded), or closed it after the bytes already in flight.
    stuck
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let closed = loop {
        match stuck.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) => break e.kind() == std::io::ErrorKind::ConnectionReset,
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

/// The TCP state (`/proc/net/tcp`, e.g. `01` established) of the loopback connection whose
/// local port is `port`; `None` once the kernel no longer lists it.
fn tcp_state(local_port: u16, remote_port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (Linux)");
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (port(f[1]) == Some(local_port) && port(f[2]) == Some(remote_port)).then(|| f[3].to_owned())
    })
}

fn sse_clients(sc: &Sidecar) -> Option<u64> {
    metric_value(sc, "wa_hub_sidecar_sse_clients").map(|v| v as u64)
}

/// A global SSE client with a 4 KB receive buffer that sends its request and never reads.
fn non_reading_client(sc: &Sidecar) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&sc.addr.into()).unwrap();
    let mut slow: TcpStream = socket.into();
    slow.write_all(b"GET /api/stream?scope=global HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    slow
}

#[test]
fn a_dropped_slow_client_is_disconnected_and_does_not_hold_up_shutdown() {
    let mut sc = sidecar("    write_timeout_ms: 2000\n");
    let slow = non_reading_client(&sc);
    let local = slow.local_addr().unwrap().port();
    let server = sc.addr.port();
    assert!(eventually(T, || (sse_clients(&sc) == Some(1)).then_some(())).is_some());

    let pad = "x".repeat(2000);
    let c = client();
    for i in 0..3000 {
        let body = format!(
            r#"{{"event":"message","instanceId":"slow","data":{{"n":{i},"pad":"{pad}"}}}}"#
        );
        let sig = wa_hub_sidecar::signature::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
        let r = c
            .post(sc.url("/api/wahub/webhook"))
            .header("content-type", "application/json")
            .header("x-wa-hub-signature", sig)
            .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    assert!(
        eventually(Duration::from_secs(20), || (sse_clients(&sc) == Some(0))
            .then_some(()))
        .is_some(),
        "the slow client was never dropped"
    );
    let dropped = Instant::now();
    // Its connection is gone too, on both ends, without the client reading or closing.
    let closed = eventually(Duration::from_secs(5), || {
        let client_side = tcp_state(local, server);
        let server_side = tcp_state(server, local);
        (client_side.as_deref() != Some("01") && server_side.is_none()).then_some(())
    });
    assert!(
        closed.is_some(),
        "connection still held: client {:?}, server {:?}",
        tcp_state(local, server),
        tcp_state(server, local)
    );
    eprintln!(
        "slow client's connection closed {:?} after the drop",
        dropped.elapsed()
    );

    sc.terminate();
    assert!(sc.wait_exit(Duration::from_secs(10)).is_some());
    let log = sc.log();
    assert!(log.contains("requests drained"), "{log}");
    assert!(!log.contains("grace period over"), "{log}");
    drop(slow);
}

#[test]
fn a_client_more_than_client_backlog_behind_is_dropped_before_its_write_times_out() {
    // The write timeout is far away: only the backlog rule can drop the client in time.
    let sc = sidecar("    write_timeout_ms: 120000\n    client_backlog: 16\n");
    let slow = non_reading_client(&sc);
    assert!(eventually(T, || (sse_clients(&sc) == Some(1)).then_some(())).is_some());
    // Enough 20 KB events to fill the socket buffers on both ends and then the backlog.
    let mut i = 0;
    let dropped = eventually(Duration::from_secs(30), || {
        for _ in 0..50 {
            assert_eq!(
                post_signed(&sc, &padded_message(i, 20_000))
                    .status()
                    .as_u16(),
                200
            );
            i += 1;
        }
        (sse_clients(&sc) == Some(0)).then_some(())
    });
    assert!(dropped.is_some(), "still held after {i} events");
    assert_eq!(
        metric_value(&sc, "wa_hub_sidecar_sse_clients_dropped_slow_total"),
        Some(1.0)
    );
    assert!(sc.log().contains("fell behind"), "{}", sc.log());
    drop(slow);
}

fn padded_message(i: usize, pad: usize) -> String {
    json!({"event": "message", "instanceId": "WASP-cap", "data": {"i": i, "t": "y".repeat(pad)}})
        .to_string()
}

/// Posts ten 20 KB messages and waits until the SSE hub has the last one (its sink runs
/// behind ingest), so a client connecting next gets all ten in its `initial` if they fit. The
/// watcher follows the instance, so the global client does not share its (empty) snapshot.
fn post_ten_padded(sc: &Sidecar) {
    let watcher = SseClient::connect(&sc.url("/api/stream?instanceId=WASP-cap"), &[]);
    watcher.next_event(T);
    watcher.next_event(T);
    for i in 0..10 {
        let r = post_signed(sc, &padded_message(i, 20_000));
        assert_eq!(r.status().as_u16(), 200);
    }
    while watcher.next_event(T).json()["data"]["payload"]["data"]["i"] != 9 {}
}

#[test]
fn initial_is_capped_in_bytes_newest_first_and_says_so() {
    let sc = sidecar("    initial_max_bytes: 50000\n");
    post_ten_padded(&sc);
    let c = SseClient::connect(&sc.url("/api/stream?scope=global"), &[]);
    c.next_event(T);
    let initial = c.next_event(T);
    assert!(
        initial.data_text().len() <= 50_000,
        "{} bytes",
        initial.data_text().len()
    );
    let v = initial.json();
    assert_eq!(v["type"], "initial");
    assert_eq!(v["data"]["truncated"], true);
    let kept: Vec<i64> = v["data"]["webhookEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["data"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, vec![9, 8], "the newest that fit, newest first");

    // Without the cap in the way, nothing is left out.
    let all = sidecar("");
    post_ten_padded(&all);
    let c = SseClient::connect(&all.url("/api/stream?scope=global"), &[]);
    c.next_event(T);
    let v = c.next_event(T).json();
    assert_eq!(v["data"]["truncated"], false);
    assert_eq!(v["data"]["webhookEvents"].as_array().unwrap().len(), 10);
}

/// The webhook numbers a client holds: from its `initial`, then live until `until` arrives.
fn numbers_seen(c: &SseClient, until: i64) -> (u64, Vec<i64>) {
    c.next_event(T);
    let initial = c.next_event(T);
    let mut seen: Vec<i64> = initial.json()["data"]["webhookEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["data"]["i"].as_i64().unwrap())
        .collect();
    while !seen.contains(&until) {
        let e = c.next_event(T);
        if e.kind() == "webhook" {
            seen.push(e.json()["data"]["payload"]["data"]["i"].as_i64().unwrap());
        }
    }
    seen.sort();
    (initial.id().unwrap(), seen)
}

#[test]
fn clients_sharing_a_snapshot_get_every_event_once() {
    let sc = sidecar("");
    post_signed(&sc, &padded_message(0, 10));
    let started = Instant::now();
    let a = SseClient::connect(&sc.url("/api/stream?scope=global"), &[]);
    for i in 1..=5 {
        post_signed(&sc, &padded_message(i, 10));
    }
    // B connects after events A's snapshot does not cover: it shares A's `initial` (within
    // the sharing time) and gets the events since from the hub, or builds its own.
    let b = SseClient::connect(&sc.url("/api/stream?scope=global"), &[]);
    let shared_in_time = started.elapsed() < Duration::from_millis(800);
    for i in 6..=8 {
        post_signed(&sc, &padded_message(i, 10));
    }
    let (a_id, a_seen) = numbers_seen(&a, 8);
    let (b_id, b_seen) = numbers_seen(&b, 8);
    assert_eq!(a_seen, (0..=8).collect::<Vec<_>>());
    assert_eq!(b_seen, (0..=8).collect::<Vec<_>>(), "each event once");
    if shared_in_time {
        assert_eq!(a_id, b_id, "B got A's snapshot");
    }
}
