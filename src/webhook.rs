//! The webhook receiver (`POST /api/wahub/webhook`): checks wa-hub's bearer token and HMAC
//! signature on the raw bytes, stores the delivery as a dashboard event record, feeds the status
//! engine and publishes `webhook`, `qr` and `status` events on the bus.
//!
//! Order of checks: bearer token (401) → declared size (413) → body read with the limit (413) →
//! signature per `webhook.signature` (401) → JSON (400 `{"error":"Invalid JSON"}`).

use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use wa_hub_sinks::envelope::iso_timestamp;
use wa_hub_sinks::{Payload, WebhookRecord};

use crate::app::App;
use crate::auth::bearer_token;
use crate::config::SignaturePolicy;
use crate::local::LocalResponse;
use crate::signature::SignatureCheck;

/// The request headers the receiver looks at.
#[derive(Debug, Default, Clone)]
pub struct WebhookHeaders {
    /// Raw `Authorization` value(s).
    pub authorization: Vec<Vec<u8>>,
    /// Raw `x-wa-hub-signature` value(s).
    pub signatures: Vec<Vec<u8>>,
    /// `Content-Type`, when readable.
    pub content_type: Option<String>,
    /// `Content-Length`, when present and numeric.
    pub content_length: Option<u64>,
}

/// Checks that need no body: the bearer token and a declared size. `None` lets the request
/// through to [`ingest`].
pub fn precheck(app: &App, headers: &WebhookHeaders) -> Option<LocalResponse> {
    let cfg = &app.config.raw.webhook;
    if let Some(token) = &cfg.auth_token {
        let ok = match headers.authorization.as_slice() {
            [one] => {
                bearer_token(one).is_some_and(|t| bool::from(t.ct_eq(token.expose().as_bytes())))
            }
            _ => false,
        };
        if !ok {
            tracing::warn!(reason = "auth_token", "webhook rejected");
            app.metrics.webhook_rejected("auth_token");
            return Some(
                LocalResponse::error(
                    401,
                    "Unauthorized",
                    "a valid webhook bearer token is required",
                )
                .with_header("www-authenticate", "Bearer"),
            );
        }
    }
    if headers
        .content_length
        .is_some_and(|n| n > cfg.max_body_bytes.get() as u64)
    {
        return Some(too_large(app));
    }
    None
}

/// The 413 answer for a body over `webhook.max_body_bytes`.
pub fn too_large(app: &App) -> LocalResponse {
    let limit = app.config.raw.webhook.max_body_bytes.get();
    tracing::warn!(reason = "too_large", limit, "webhook rejected");
    app.metrics.webhook_rejected("too_large");
    LocalResponse::error(
        413,
        "Payload too large",
        format!("the limit is {limit} bytes"),
    )
}

/// Verifies, stores and routes one delivery whose body was read in full.
pub fn ingest(app: &App, headers: &WebhookHeaders, body: Bytes) -> LocalResponse {
    let cfg = &app.config;
    app.metrics.webhook_body_bytes.observe(body.len() as f64);
    let signature_valid = match (cfg.signature, &app.verifier) {
        (SignaturePolicy::Off, _) | (_, None) => None,
        (policy, Some(verifier)) => {
            let check = verifier.verify(headers.signatures.iter().map(Vec::as_slice), &body);
            if check != SignatureCheck::Valid && policy == SignaturePolicy::Required {
                let (reason, message) = match check {
                    SignatureCheck::Absent => (
                        "signature_absent",
                        "x-wa-hub-signature header is absent (signature_absent)",
                    ),
                    _ => (
                        "signature_invalid",
                        "x-wa-hub-signature does not match the body",
                    ),
                };
                tracing::warn!(reason, "webhook rejected");
                app.metrics.webhook_rejected(reason);
                return LocalResponse::error(401, "Invalid signature", message);
            }
            Some(check == SignatureCheck::Valid)
        }
    };
    let payload = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(reason = "invalid_json", error = %e, "webhook rejected");
            app.metrics.webhook_rejected("invalid_json");
            return LocalResponse::json(400, &json!({ "error": "Invalid JSON" }));
        }
    };

    let event = payload
        .get("event")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .unwrap_or("unknown")
        .to_owned();
    let instance_id = match payload.get("instanceId") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let data = payload.get("data").cloned().unwrap_or(Value::Null);
    let now = Utc::now();
    let record = WebhookRecord {
        id: uuid::Uuid::new_v4().to_string(),
        timestamp: iso_timestamp(now),
        summary: summary(&event, instance_id.as_deref(), &data),
        instance_id,
        event,
        payload,
        signature_valid,
        raw: body,
        content_type: headers
            .content_type
            .clone()
            .unwrap_or_else(|| "application/json".to_owned()),
    };
    tracing::debug!(summary = %record.summary, "webhook accepted");
    let signature_label = match record.signature_valid {
        None => "unchecked",
        Some(true) => "valid",
        Some(false) if headers.signatures.is_empty() => "absent",
        Some(false) => "invalid",
    };
    app.metrics.webhook_received(&record.event, signature_label);

    // Engine, history and bus move together so event ids follow the order of decisions.
    let mut engine = app.engine();
    let outcome = match &record.instance_id {
        Some(id) => engine.apply_webhook(id, &record.event, &data, now),
        None => Default::default(),
    };
    let event = app.bus.publish(Payload::Webhook(record));
    app.webhooks.push(event);
    if let Some(qr) = outcome.qr {
        app.bus.publish(Payload::Qr(qr));
    }
    if let Some(status) = outcome.status {
        app.bus.publish(Payload::Status(status));
    }
    drop(engine);
    LocalResponse::json(200, &json!({ "ok": true }))
}

/// `change_state:<status> @ <id>` for `change_state`, else `<event> @ <id>` (dashboard).
pub fn summary(event: &str, instance_id: Option<&str>, data: &Value) -> String {
    let id = instance_id.unwrap_or("unknown");
    if event == "change_state" {
        let status = data
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        format!("change_state:{status} @ {id}")
    } else {
        format!("{event} @ {id}")
    }
}

/// Parses a body as JSON, accepting everything Node's `JSON.stringify` can emit: that includes
/// lone UTF-16 surrogate escapes (`"\ud83d"`, from a string cut inside an emoji), which
/// serde_json refuses; they are read as U+FFFD. The raw bytes stay untouched for signatures and
/// forwarding.
///
/// # Errors
/// The parser's error for anything that is not JSON (or nests deeper than 128 levels).
pub fn parse_json(body: &[u8]) -> Result<Value, serde_json::Error> {
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) => match replace_lone_surrogates(body) {
            Some(fixed) => serde_json::from_slice(&fixed),
            None => Err(e),
        },
    }
}

/// A copy of `body` with every `\uD800`–`\uDFFF` escape that is not part of a valid pair
/// replaced by `\uFFFD`; `None` when there is none.
fn replace_lone_surrogates(body: &[u8]) -> Option<Vec<u8>> {
    fn hex4(b: &[u8]) -> Option<u16> {
        let s = std::str::from_utf8(b.get(..4)?).ok()?;
        u16::from_str_radix(s, 16).ok()
    }
    let escape_at = |i: usize| -> Option<u16> {
        (body.get(i) == Some(&b'\\') && body.get(i + 1) == Some(&b'u'))
            .then(|| hex4(&body[i + 2..]))
            .flatten()
    };
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    let mut copied = 0;
    while i < body.len() {
        if body[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = escape_at(i) else {
            i += 2; // any other escape, including `\\`
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => match escape_at(i + 6) {
                Some(0xDC00..=0xDFFF) => {
                    i += 12;
                    continue;
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let buf = out.get_or_insert_with(|| Vec::with_capacity(body.len()));
            buf.extend_from_slice(&body[copied..i]);
            buf.extend_from_slice(b"\\uFFFD");
            copied = i + 6;
        }
        i += 6;
    }
    let mut buf = out?;
    buf.extend_from_slice(&body[copied..]);
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_change_state_status() {
        assert_eq!(
            summary("change_state", Some("a"), &json!({"status": "OPENING"})),
            "change_state:OPENING @ a"
        );
        assert_eq!(summary("ready", Some("a"), &json!({})), "ready @ a");
        assert_eq!(summary("unknown", None, &Value::Null), "unknown @ unknown");
    }

    #[test]
    fn lone_surrogates_from_node_are_accepted() {
        let v =
            parse_json(br#"{"t":"cut \ud83d","u":"\udc00x","ok":"\ud83d\ude00","esc":"\\ud800"}"#)
                .unwrap();
        assert_eq!(v["t"], "cut \u{FFFD}");
        assert_eq!(v["u"], "\u{FFFD}x");
        assert_eq!(v["ok"], "😀");
        assert_eq!(v["esc"], "\\ud800");
    }

    #[test]
    fn non_json_is_still_an_error() {
        assert!(parse_json(b"{not json").is_err());
        assert!(parse_json(b"").is_err());
        assert!(parse_json(br#"{"a":"\ud800"#).is_err());
    }
}
