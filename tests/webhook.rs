//! The webhook receiver and the status engine, through the real binary, replaying wa-hub's own
//! signed deliveries (webhook issue).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn dead_upstream() -> String {
    dead_upstream_url()
}

fn fixture_sidecar() -> Sidecar {
    Sidecar::start(&dead_upstream(), FIXTURE_WEBHOOK_YAML)
}

fn replay(sc: &Sidecar, w: &WebhookFixture) -> reqwest::blocking::Response {
    let headers: Vec<(&str, &[u8])> = w
        .headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "content-length" | "content-type"))
        .map(|(k, v)| (k.as_str(), v.as_bytes()))
        .collect();
    post_webhook(sc, &w.body, &headers)
}

fn events(sc: &Sidecar, query: &str) -> Vec<Value> {
    let (status, v) = get_json(sc, &format!("/api/events{query}"));
    assert_eq!(status, 200);
    v["events"].as_array().unwrap().clone()
}

#[test]
fn every_fixture_delivery_is_accepted_stored_and_decides_final_status() {
    let sc = fixture_sidecar();
    let fixtures = webhook_fixtures();
    assert_eq!(fixtures.len(), 13);
    for (i, w) in fixtures.iter().enumerate() {
        let r = replay(&sc, w);
        assert_eq!(r.status().as_u16(), 200, "delivery {i}: {}", sc.log());
        assert_eq!(r.json::<Value>().unwrap(), json!({"ok": true}));
    }

    let stored = events(&sc, "");
    assert_eq!(stored.len(), 13);
    // Newest first: stored[12 - i] is fixture i.
    for (i, w) in fixtures.iter().enumerate() {
        let body: Value = serde_json::from_str(&w.body).unwrap();
        let rec = &stored[12 - i];
        let event = body["event"].as_str().unwrap();
        let id = body["instanceId"].as_str().unwrap();
        assert_eq!(rec["event"], event);
        assert_eq!(rec["instanceId"], id);
        assert_eq!(rec["payload"], body, "payload kept as parsed JSON");
        assert_eq!(rec["signatureValid"], true);
        let summary = if event == "change_state" {
            format!(
                "change_state:{} @ {id}",
                body["data"]["status"].as_str().unwrap()
            )
        } else {
            format!("{event} @ {id}")
        };
        assert_eq!(rec["summary"], summary);
        assert!(rec["id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(rec["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    let message = stored
        .iter()
        .find(|r| r["event"] == "message")
        .expect("message stored");
    assert_eq!(
        message["payload"]["data"]["message"]["body"],
        "Is my order #1042 shipped?"
    );

    let beta = events(&sc, "?instanceId=WASP-beta_shop");
    assert_eq!(beta.len(), 3);
    assert_eq!(events(&sc, "?limit=2").len(), 2);

    let (status, acme) = get_json(&sc, "/api/instances/WASP-acme-store_myshopify_com/status");
    assert_eq!(status, 200);
    assert_eq!(acme["rank"], 0);
    assert_eq!(acme["label"], "disconnected");
    assert_eq!(acme["displayStatus"], "disconnected");
    assert_eq!(acme["timedOut"], true, "ready_timeout marks the status");
    assert_eq!(acme["source"], "webhook");
    assert_eq!(acme["showQr"], false);

    let (_, beta) = get_json(&sc, "/api/instances/WASP-beta_shop/status");
    assert_eq!(beta["rank"], 0);
    assert_eq!(beta["displayStatus"], "restricted");
    assert_eq!(beta["qrError"], "Failed to generate QR: timeout");

    let (_, all) = get_json(&sc, "/api/instances");
    let ids: Vec<&str> = all["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["WASP-acme-store_myshopify_com", "WASP-beta_shop"]);

    let (status, v) = get_json(&sc, "/api/instances/nope/status");
    assert_eq!(status, 404);
    assert_eq!(v["error"], "Unknown instance");
}

#[test]
fn status_follows_the_lifecycle_and_ignores_chat_messages() {
    let sc = fixture_sidecar();
    let fixtures = webhook_fixtures();
    let acme = "/api/instances/WASP-acme-store_myshopify_com/status";
    // qr → qr → authenticated → change_state OPENING → ready → message → vote_update
    let expect = [
        (1, "qr", true),
        (1, "qr", true),
        (2, "authenticated", false),
        (2, "OPENING", false),
        (3, "ready", false),
        (3, "ready", false),
        (3, "ready", false),
        (3, "CONNECTED", false),
    ];
    for (i, (rank, word, show_qr)) in expect.iter().enumerate() {
        assert_eq!(replay(&sc, &fixtures[i]).status().as_u16(), 200);
        let (_, s) = get_json(&sc, acme);
        assert_eq!(s["rank"], *rank, "after delivery {i}");
        assert_eq!(s["displayStatus"], *word, "after delivery {i}");
        assert_eq!(s["showQr"], *show_qr, "after delivery {i}");
    }
}

fn bad_signature_matrix() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let body = &webhook_fixtures()[4].body;
    let good = wa_hub_sidecar::signature::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    let mut ff = good.clone().into_bytes();
    ff[5] = 0xFF;
    vec![
        ("missing", vec![]),
        ("empty", vec![b"".to_vec()]),
        ("10 hex characters", vec![b"0123456789".to_vec()]),
        ("65 characters", vec![format!("{good}a").into_bytes()]),
        (
            "non-hex characters",
            vec![format!("{}zz", &good[..62]).into_bytes()],
        ),
        ("a 0xFF byte", vec![ff]),
        (
            "the header twice",
            vec![good.clone().into_bytes(), good.into_bytes()],
        ),
    ]
}

fn post_with_signatures(sc: &Sidecar, body: &str, sigs: &[Vec<u8>]) -> reqwest::blocking::Response {
    let bearer = format!("Bearer {WEBHOOK_TOKEN}");
    let mut headers: Vec<(&str, &[u8])> = vec![("authorization", bearer.as_bytes())];
    for s in sigs {
        headers.push(("x-wa-hub-signature", s));
    }
    post_webhook(sc, body, &headers)
}

#[test]
fn bad_signatures_are_401_and_nothing_is_stored_when_required() {
    let sc = fixture_sidecar();
    let body = webhook_fixtures()[4].body.clone();
    for (name, sigs) in bad_signature_matrix() {
        let r = post_with_signatures(&sc, &body, &sigs);
        assert_eq!(r.status().as_u16(), 401, "{name}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["error"], "Invalid signature", "{name}");
    }
    assert!(events(&sc, "").is_empty());
    assert_eq!(get_json(&sc, "/api/instances").1["instances"], json!([]));

    let upper =
        wa_hub_sidecar::signature::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes()).to_uppercase();
    let r = post_with_signatures(&sc, &body, &[upper.into_bytes()]);
    assert_eq!(r.status().as_u16(), 200, "upper-case digest is accepted");
    assert_eq!(events(&sc, "").len(), 1);
}

#[test]
fn optional_policy_keeps_bad_signatures_marked_invalid() {
    let sc = Sidecar::start(
        &dead_upstream(),
        // The same body each time: re-send detection off, this test is about the marking.
        "webhook:\n  secret: wa-hub-fixture-secret\n  signature: optional\n  dedup_window_secs: 0\n",
    );
    let body = webhook_fixtures()[4].body.clone();
    let matrix = bad_signature_matrix();
    for (name, sigs) in &matrix {
        let r = post_with_signatures(&sc, &body, sigs);
        assert_eq!(r.status().as_u16(), 200, "{name}");
    }
    let stored = events(&sc, "");
    assert_eq!(stored.len(), matrix.len());
    assert!(stored.iter().all(|r| r["signatureValid"] == false));
}

#[test]
fn off_policy_without_secret_stores_signature_valid_null() {
    let sc = Sidecar::start(&dead_upstream(), "");
    let r = post_webhook(&sc, r#"{"event":"ready","instanceId":"a","data":{}}"#, &[]);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(events(&sc, "")[0]["signatureValid"], Value::Null);
}

#[test]
fn wrong_bearer_oversize_and_broken_json_are_rejected_clearly() {
    let sc = Sidecar::start(
        &dead_upstream(),
        "webhook:\n  secret: wa-hub-fixture-secret\n  auth_token: fixture-bearer-token\n  max_body_bytes: 2048\n",
    );
    let body = webhook_fixtures()[4].body.clone();
    let sig = wa_hub_sidecar::signature::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    for auth in [
        &b"Bearer wrong"[..],
        b"",
        b"fixture-bearer-token",
        b"Basic xyz",
    ] {
        let r = post_webhook(
            &sc,
            &body,
            &[
                ("authorization", auth),
                ("x-wa-hub-signature", sig.as_bytes()),
            ],
        );
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
    }
    let r = post_webhook(&sc, &body, &[("x-wa-hub-signature", sig.as_bytes())]);
    assert_eq!(r.status().as_u16(), 401, "missing bearer");

    let big = format!(
        r#"{{"event":"message","instanceId":"a","data":{{"t":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let r = post_signed(&sc, &big);
    assert_eq!(r.status().as_u16(), 413);
    let _: Value = r.json().unwrap();

    let r = post_signed(&sc, "{\"event\":\"ready\",");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().unwrap(), json!({"error": "Invalid JSON"}));
    assert!(events(&sc, "").is_empty());

    let r = client().get(sc.url("/api/wahub/webhook")).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[test]
fn any_json_node_can_send_is_kept_including_unknown_events() {
    let sc = fixture_sidecar();
    let bodies = [
        r#"{"instanceId":"WASP-x","data":{"a":1}}"#,
        r#"{"event":"brand_new","instanceId":"WASP-x","data":null}"#,
        r#"[1,2,3]"#,
        r#""just a string""#,
        r#"{"event":"message","instanceId":"WASP-x","data":{"body":"cut emoji \ud83d","ok":"\u00e9\ud83d\ude00"}}"#,
        r#"{"event":"message","instanceId":"WASP-x","data":{"n":1e308,"big":123456789012345678901234567890}}"#,
    ];
    for b in bodies {
        let r = post_signed(&sc, b);
        assert_eq!(r.status().as_u16(), 200, "{b}: {}", sc.log());
    }
    let stored = events(&sc, "");
    assert_eq!(stored.len(), bodies.len());
    let by_body = |i: usize| &stored[bodies.len() - 1 - i];
    assert_eq!(by_body(0)["event"], "unknown");
    assert_eq!(by_body(0)["summary"], "unknown @ WASP-x");
    assert_eq!(by_body(1)["event"], "brand_new");
    assert_eq!(by_body(2)["payload"], json!([1, 2, 3]));
    assert_eq!(by_body(2)["instanceId"], Value::Null);
    assert_eq!(by_body(4)["payload"]["data"]["body"], "cut emoji \u{FFFD}");
    assert_eq!(by_body(4)["payload"]["data"]["ok"], "é😀");
    // None of these is a lifecycle event: no status for WASP-x.
    assert_eq!(get_json(&sc, "/api/instances/WASP-x/status").0, 404);
}

#[test]
fn status_learning_works_when_no_sink_takes_api_logs() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(
        &up.base_url(),
        "status:\n  qr_poll_interval_ms: 0\nsinks:\n  - type: sse\n    kinds: [webhook, status]\n",
    );
    let r = client()
        .get(sc.url("/api/wahub/instances/WASP-test_shop/client/status"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, s) = get_json(&sc, "/api/instances/WASP-test_shop/status");
    assert_eq!(status, 200);
    assert_eq!(s["source"], "api");
    assert_eq!(s["displayStatus"], "disconnected");
}

#[test]
fn a_status_answer_longer_than_the_api_log_keeps_is_still_learned() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(
        &up.base_url(),
        "status:\n  qr_poll_interval_ms: 0\napi_log:\n  max_body_bytes: 100\n",
    );
    let sse = SseClient::connect(&sc.url("/api/stream"), &[]);
    assert_eq!(sse.next_event(Duration::from_secs(10)).kind(), "connected");
    assert_eq!(sse.next_event(Duration::from_secs(10)).kind(), "initial");
    let r = client()
        .get(sc.url("/api/wahub/instances/WASP-test_shop/client/status"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer_len = r.bytes().unwrap().len();
    assert!(answer_len > 100, "the fixture answer is {answer_len} bytes");
    let (_, s) = get_json(&sc, "/api/instances/WASP-test_shop/status");
    assert_eq!(
        (s["source"].clone(), s["displayStatus"].clone()),
        (json!("api"), json!("disconnected"))
    );
    // The API log still shows only `api_log.max_body_bytes` of it.
    let log = loop {
        let e = sse.next_event(Duration::from_secs(10)).json();
        if e["type"] == "apiLog" {
            break e["data"].clone();
        }
    };
    assert_eq!(log["responseBody"]["truncated"], true);
    assert_eq!(log["responseBody"]["bytes"], answer_len);
}

#[test]
fn proxied_client_status_and_instance_list_feed_the_engine() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "status:\n  qr_poll_interval_ms: 0\n");
    let r = client()
        .get(sc.url("/api/wahub/instances/WASP-test_shop/client/status"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (status, s) = get_json(&sc, "/api/instances/WASP-test_shop/status");
    assert_eq!(status, 200);
    assert_eq!(s["source"], "api");
    assert_eq!(s["displayStatus"], "disconnected");
    assert_eq!(s["rank"], 0);
    assert_eq!(s["readyWatchdogMs"], 600000);
    assert!(s.get("readySource").is_none(), "null extras are left out");

    client().get(sc.url("/api/wahub/instances")).send().unwrap();
    let (_, s) = get_json(&sc, "/api/instances/WASP-test_shop/status");
    assert_eq!(s["source"], "meta", "instance meta outranks the API");

    // An unknown instance's 404 teaches nothing.
    client()
        .get(sc.url("/api/wahub/instances/nope/client/status"))
        .send()
        .unwrap();
    assert_eq!(get_json(&sc, "/api/instances/nope/status").0, 404);
}

#[test]
fn qr_fallback_fetches_a_qr_while_an_instance_needs_one() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(
        &up.base_url(),
        &format!("{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 100\n"),
    );
    let r = post_signed(
        &sc,
        r#"{"event":"qr","instanceId":"WASP-qr-1","data":{"error":"Failed to generate QR: timeout"}}"#,
    );
    assert_eq!(r.status().as_u16(), 200);
    let s = eventually(Duration::from_secs(10), || {
        let (_, s) = get_json(&sc, "/api/instances/WASP-qr-1/status");
        (s["showQr"] == true).then_some(s)
    })
    .expect("QR fetched by the fallback");
    assert_eq!(s["qr"], fixture_qr());
    let fetched = up
        .received()
        .iter()
        .filter(|r| r.path_and_query == "/instances/WASP-qr-1/client/qr")
        .count();
    assert!(fetched >= 1);
    assert!(up
        .received()
        .iter()
        .all(|r| r.header_values("authorization") == vec![format!("Bearer {API_KEY}")]));
    // Once the QR is there, polling stops.
    std::thread::sleep(Duration::from_millis(400));
    let again = up
        .received()
        .iter()
        .filter(|r| r.path_and_query == "/instances/WASP-qr-1/client/qr")
        .count();
    assert_eq!(again, fetched);
}

#[test]
fn reconcile_poll_learns_instances_without_any_client_call() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(
        &up.base_url(),
        "status:\n  qr_poll_interval_ms: 0\n  reconcile_interval_ms: 100\n",
    );
    let s = eventually(Duration::from_secs(10), || {
        let (code, s) = get_json(&sc, "/api/instances/WASP-test_shop/status");
        (code == 200 && s["readyWatchdogMs"] == 600000).then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "not reconciled: {:?} {}",
            up.received()
                .iter()
                .map(|r| r.path_and_query.clone())
                .collect::<Vec<_>>(),
            sc.log()
        )
    });
    assert_eq!(s["source"], "meta");
    assert_eq!(s["rank"], 0);
}

#[test]
fn read_routes_need_a_client_token_when_configured() {
    let sc = Sidecar::start(&dead_upstream(), "auth:\n  client_tokens: [reader]\n");
    for path in ["/api/instances", "/api/events", "/api/instances/x/status"] {
        assert_eq!(get_json(&sc, path).0, 401, "{path}");
        let r = client()
            .get(sc.url(path))
            .bearer_auth("reader")
            .send()
            .unwrap();
        assert_ne!(r.status().as_u16(), 401, "{path}");
        let (code, _) = get_json(&sc, &format!("{path}?access_token=reader"));
        assert_ne!(code, 401, "{path}");
    }
    // The webhook route is exempt from client tokens.
    let r = post_webhook(&sc, r#"{"event":"ready","instanceId":"a"}"#, &[]);
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn a_missing_signature_is_called_absent_in_the_answer_the_log_and_the_metric() {
    let sc = fixture_sidecar();
    let body = webhook_fixtures()[4].body.clone();
    let r = post_with_signatures(&sc, &body, &[]);
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().unwrap();
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("absent"), "{v}");
    assert!(!message.contains("does not match"), "{v}");
    let r = post_with_signatures(&sc, &body, &[b"00".repeat(32)]);
    assert_eq!(r.status().as_u16(), 401);
    let v: Value = r.json().unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("does not match the body"),
        "{v}"
    );
    let metrics = client()
        .get(sc.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for reason in ["signature_absent", "signature_invalid"] {
        let line = format!("wa_hub_sidecar_webhooks_rejected_total{{reason=\"{reason}\"}} 1");
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let log = sc.log();
    assert!(
        log.contains("signature_absent") && log.contains("signature_invalid"),
        "{log}"
    );
}

fn duplicate_count(sc: &Sidecar) -> u64 {
    metric_value(sc, "wa_hub_sidecar_webhooks_duplicate_total").expect("duplicate counter exported")
        as u64
}

#[test]
fn a_resent_body_within_the_window_is_stored_once_and_counted() {
    let sc = fixture_sidecar();
    let body = r#"{"event":"message","instanceId":"dup","data":{"body":"same bytes"}}"#;
    let first = post_signed(&sc, body);
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.json::<Value>().unwrap(), json!({"ok": true}));
    for _ in 0..2 {
        let again = post_signed(&sc, body);
        assert_eq!(again.status().as_u16(), 200);
        assert_eq!(
            again.json::<Value>().unwrap(),
            json!({"ok": true, "duplicate": true})
        );
    }
    // The same JSON with other bytes is another delivery.
    let other = r#"{"event":"message","instanceId":"dup","data":{"body":"same bytes"} }"#;
    assert_eq!(
        post_signed(&sc, other).json::<Value>().unwrap(),
        json!({"ok": true})
    );
    assert_eq!(events(&sc, "?instanceId=dup").len(), 2);
    assert_eq!(duplicate_count(&sc), 2);
    // A duplicate is checked after the signature: a bad signature is still 401.
    let r = post_webhook(
        &sc,
        body,
        &[
            ("x-wa-hub-signature", &[b'0'; 64][..]),
            (
                "authorization",
                format!("Bearer {WEBHOOK_TOKEN}").as_bytes(),
            ),
        ],
    );
    assert_eq!(r.status().as_u16(), 401);
}

#[test]
fn dedup_window_ends_and_can_be_turned_off() {
    let body = r#"{"event":"message","instanceId":"win","data":{}}"#;
    let sc = Sidecar::start(
        &dead_upstream(),
        &format!("{FIXTURE_WEBHOOK_YAML}  dedup_window_secs: 1\n"),
    );
    assert_eq!(
        post_signed(&sc, body).json::<Value>().unwrap(),
        json!({"ok": true})
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        post_signed(&sc, body).json::<Value>().unwrap(),
        json!({"ok": true})
    );
    assert_eq!(events(&sc, "?instanceId=win").len(), 2);

    let off = Sidecar::start(
        &dead_upstream(),
        &format!("{FIXTURE_WEBHOOK_YAML}  dedup_window_secs: 0\n"),
    );
    for _ in 0..2 {
        assert_eq!(
            post_signed(&off, body).json::<Value>().unwrap(),
            json!({"ok": true})
        );
    }
    assert_eq!(events(&off, "?instanceId=win").len(), 2);
    assert_eq!(duplicate_count(&off), 0);
}
