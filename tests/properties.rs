//! Property tests (issue 14, item 17) with `proptest`: the webhook receiver, the SSE encoder,
//! the MQTT topic-level mapping and the config loader, each over generated input.
//!
//! `cargo test --test properties` runs proptest's default number of cases (256 per property);
//! `PROPTEST_CASES=100000 cargo test --release --test properties` runs 100 000 each (proptest
//! reads the variable itself). Failures are shrunk and printed as the smallest input found.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::Value;
use wa_hub_sidecar::app::App;
use wa_hub_sidecar::config::RawConfig;
use wa_hub_sidecar::status::ApiStatus;
use wa_hub_sidecar::webhook::{ingest, parse_json, WebhookHeaders};
use wa_hub_sinks::mqtt::{decode_level, encode_level};
use wa_hub_sinks::sse::encode_frame;
use wa_hub_sinks::Payload;

// ---------------------------------------------------------------------------------------
// Generators

/// Any JSON value, up to 4 levels deep, with strings over all of Unicode.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// JSON text as a Node sender may write it: compact or pretty, sometimes with surrounding
/// whitespace, sometimes with a lone UTF-16 surrogate escape (a string cut inside an emoji).
fn json_text() -> impl Strategy<Value = Vec<u8>> {
    (
        json_value(),
        any::<bool>(),
        "[ \t\r\n]{0,3}",
        prop::option::of(0xD800u32..0xE000),
    )
        .prop_map(|(v, pretty, ws, surrogate)| {
            let mut v = serde_json::json!({"event": "message", "instanceId": "WASP-p", "data": v});
            if surrogate.is_some() {
                v["data2"] = Value::String("SURROGATE".into());
            }
            let mut text = if pretty {
                serde_json::to_string_pretty(&v).unwrap()
            } else {
                serde_json::to_string(&v).unwrap()
            };
            if let Some(unit) = surrogate {
                text = text.replace("SURROGATE", &format!("cut \\u{unit:04x} here"));
            }
            format!("{ws}{text}{ws}").into_bytes()
        })
}

// ---------------------------------------------------------------------------------------
// Webhook receiver

/// A sidecar's shared state without listeners or sinks, and no signature checking: one per
/// test thread, reused across cases (its histories are bounded).
fn app() -> Arc<App> {
    thread_local! {
        static APP: Arc<App> = {
            let mut raw = RawConfig::default();
            raw.sinks.clear();
            raw.metrics_listen = None;
            // Cases may repeat a body: every one must be stored, not taken as a re-send.
            raw.webhook.dedup_window_secs = 0;
            App::new(raw.validate().expect("config")).expect("app").0
        };
    }
    APP.with(Arc::clone)
}

fn headers() -> WebhookHeaders {
    WebhookHeaders {
        authorization: Vec::new(),
        signatures: Vec::new(),
        content_type: Some("application/json".into()),
        content_length: None,
    }
}

/// The raw bytes of the newest stored webhook record.
fn newest_raw(app: &App) -> Option<Bytes> {
    let newest = app.webhooks.newest(1, |_| true);
    match &newest.first()?.payload {
        Payload::Webhook(w) => Some(w.raw.clone()),
        _ => None,
    }
}

proptest! {
    #[test]
    fn any_body_bytes_get_200_or_400_and_never_a_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let app = app();
        let r = ingest(&app, &headers(), Bytes::from(body.clone()));
        let status = r.map(|resp| resp.status).unwrap_or_else(|rejection| rejection.status());
        let parsed = parse_json(&body);
        prop_assert_eq!(status, if parsed.is_ok() { 200 } else { 400 });
    }

    #[test]
    fn valid_json_is_accepted_and_kept_byte_for_byte(body in json_text()) {
        let app = app();
        prop_assert!(parse_json(&body).is_ok());
        let r = ingest(&app, &headers(), Bytes::from(body.clone()));
        prop_assert_eq!(r.map(|resp| resp.status).ok(), Some(200));
        let raw = newest_raw(&app).expect("a stored record");
        prop_assert_eq!(&raw[..], &body[..]);
    }
}

// ---------------------------------------------------------------------------------------
// SSE encoder

/// Events read back from an SSE byte stream the way a browser's `EventSource` does (HTML
/// "event stream interpretation"): `(data, last event id)` per dispatched event.
fn browser_parse(stream: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8(stream.to_vec()).expect("SSE streams are UTF-8");
    let mut events = Vec::new();
    let mut data = String::new();
    let mut last_id = String::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let line = &rest[..end];
        rest = &rest[end..];
        rest = rest
            .strip_prefix("\r\n")
            .or_else(|| rest.strip_prefix('\r'))
            .or_else(|| rest.strip_prefix('\n'))
            .unwrap_or(rest);
        if line.is_empty() {
            if !data.is_empty() {
                data.pop(); // the last line feed
                events.push((std::mem::take(&mut data), last_id.clone()));
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                data.push_str(value);
                data.push('\n');
            }
            "id" if !value.contains('\0') => last_id = value.to_owned(),
            _ => {}
        }
    }
    events
}

proptest! {
    #[test]
    fn a_browser_reads_back_every_frame_with_its_data_and_id(
        frames in prop::collection::vec((json_value(), prop::option::of(any::<u64>())), 1..6)
    ) {
        let mut stream = Vec::new();
        let mut want = Vec::new();
        let mut last_id = String::new();
        for (v, id) in &frames {
            let json = serde_json::to_vec(&serde_json::json!({"type": "webhook", "data": v})).unwrap();
            stream.extend_from_slice(&encode_frame(*id, &json));
            if let Some(id) = id {
                last_id = id.to_string();
            }
            want.push((String::from_utf8(json).unwrap(), last_id.clone()));
        }
        // Byte for byte the JSON that was encoded, and the id in force at each event.
        prop_assert_eq!(browser_parse(&stream), want);
    }
}

// ---------------------------------------------------------------------------------------
// Status learning from a proxied answer's text

/// The rule `ApiStatus::from_json` must keep, written over a parsed `Value` (dashboard
/// reference §5: the API status fields; the real and the documented envelope).
fn status_by_value(body: &Value) -> Option<ApiStatus> {
    let cs = body
        .get("clientStatus")
        .or_else(|| body.get("data").and_then(|d| d.get("clientStatus")))?
        .as_object()?;
    let text = |k: &str| cs.get(k).and_then(Value::as_str).map(str::to_owned);
    let present = |k: &str| cs.get(k).filter(|v| !v.is_null()).cloned();
    Some(ApiStatus {
        instance_status: text("instanceStatus"),
        state: text("state"),
        ready_source: present("readySource"),
        authenticated_to_ready_ms: present("authenticatedToReadyMs"),
        ready_watchdog_start_at: present("readyWatchdogStartAt"),
        ready_watchdog_ms: present("readyWatchdogMs"),
    })
}

/// Bodies shaped like status answers: the fields the engine reads, with any values, among
/// other keys, in either envelope, or something else entirely.
fn status_body() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("instanceStatus".to_owned()),
        Just("state".to_owned()),
        Just("readySource".to_owned()),
        Just("authenticatedToReadyMs".to_owned()),
        Just("readyWatchdogStartAt".to_owned()),
        Just("readyWatchdogMs".to_owned()),
        any::<String>(),
    ];
    let fields = prop::collection::vec((key, json_value()), 0..10)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()));
    let cs = prop_oneof![4 => fields, 1 => json_value()];
    (cs, 0..4u8, json_value()).prop_map(|(cs, shape, other)| match shape {
        0 => serde_json::json!({"clientStatus": cs, "status": "success"}),
        1 => serde_json::json!({"success": true, "data": {"clientStatus": cs}}),
        2 => serde_json::json!({"data": other, "clientStatus": cs}),
        _ => other,
    })
}

#[test]
fn learning_from_the_text_equals_the_value_rules_on_every_fixture_answer() {
    let mut seen = 0;
    for f in common::api_fixtures() {
        let by_text = ApiStatus::from_json(&f.body);
        match serde_json::from_str::<Value>(&f.body) {
            Ok(v) => {
                let by_value = status_by_value(&v);
                seen += usize::from(by_value.is_some());
                assert_eq!(by_text, by_value, "{} {}", f.path, f.body);
            }
            Err(_) => assert_eq!(by_text, None, "{} {}", f.path, f.body),
        }
    }
    assert!(seen > 0, "the fixtures hold client-status answers");
}

proptest! {
    #[test]
    fn learning_from_the_text_equals_the_value_rules(body in status_body()) {
        // Pretty-printed too: whitespace anywhere must not change what is read. The rule is
        // applied to the text parsed back (as the proxy did before), so numbers are read by the
        // same parser on both sides.
        for text in [body.to_string(), serde_json::to_string_pretty(&body).unwrap()] {
            let parsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(ApiStatus::from_json(&text), status_by_value(&parsed));
        }
    }
}

// ---------------------------------------------------------------------------------------
// MQTT topic levels

proptest! {
    #[test]
    fn any_id_becomes_one_legal_level_that_decodes_back(id in any::<String>()) {
        let level = encode_level(&id);
        prop_assert!(!level.is_empty());
        prop_assert!(!level.contains(['/', '+', '#', '\0']), "{:?}", level);
        prop_assert!(!level.starts_with('$'));
        prop_assert!(!level.chars().any(char::is_control));
        prop_assert_eq!(decode_level(&level).unwrap(), id);
    }

    #[test]
    fn decoding_any_level_never_panics(level in any::<String>()) {
        if let Ok(id) = decode_level(&level) {
            // Whatever decodes maps back to a level that decodes to the same id.
            prop_assert_eq!(decode_level(&encode_level(&id)).unwrap(), id);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Config loader

/// YAML-ish text built from the config's own vocabulary, so that generated documents reach
/// past the syntax check into keys, sink entries, merges and wrong types.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "listen",
        "metrics_listen",
        "threads",
        "upstream",
        "base_url",
        "token",
        "webhook",
        "secret",
        "signature",
        "sinks",
        "type",
        "sse",
        "mqtt",
        "forward",
        "stdout",
        "url",
        "keep_alive_secs",
        "max_inflight",
        "kinds",
        "events",
        "auth",
        "client_tokens",
        "password",
        "<<",
        "log",
        "level",
        "outbox_path",
        "queue_capacity",
        "name",
    ]);
    let scalar = prop::sample::select(vec![
        "0",
        "1",
        "-1",
        "0.5",
        "1e400",
        "\"\"",
        "~",
        "null",
        "true",
        "[]",
        "{}",
        "*a",
        "&a x",
        "http://127.0.0.1:3000",
        "mqtt://127.0.0.1:1",
        "webhook",
        "[webhook, nope]",
        "!!binary aGk=",
        "18446744073709551616",
        "'quoted'",
        "|\n  block",
        ">-",
        "? x",
        "- y",
    ]);
    let line = (0usize..4, prop::bool::ANY, key, prop::option::of(scalar)).prop_map(
        |(indent, dash, k, v)| {
            format!(
                "{}{}{}:{}",
                "  ".repeat(indent),
                if dash { "- " } else { "" },
                k,
                v.map(|v| format!(" {v}")).unwrap_or_default()
            )
        },
    );
    prop::collection::vec(line, 0..16).prop_map(|l| l.join("\n"))
}

/// Runs the loader; when it gives a config whose upstream is an IP literal (no DNS lookup),
/// validation too. Neither may panic.
fn load(text: &str) {
    if let Ok(raw) = RawConfig::from_yaml(text) {
        if matches!(
            raw.upstream.base_url.host(),
            Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))
        ) {
            let _ = raw.validate();
        }
    }
}

proptest! {
    #[test]
    fn any_text_gives_a_config_or_an_error_never_a_panic(text in any::<String>()) {
        load(&text);
    }

    #[test]
    fn config_shaped_yaml_gives_a_config_or_an_error_never_a_panic(text in config_text()) {
        load(&text);
    }
}
