//! The webhook receiver (`POST /api/wahub/webhook`): checks wa-hub's bearer token and HMAC
//! signature on the raw bytes, stores the delivery as a dashboard event record, feeds the status
//! engine and publishes `webhook`, `qr` and `status` events on the bus.
//!
//! Order of checks: bearer token (401) → declared size (413) → body read with the limit (413) →
//! signature per `webhook.signature` (401) → JSON (400 `{"error":"Invalid JSON"}`) → re-send
//! ([`crate::dedup`]: 200 `{"ok":true,"duplicate":true}`, nothing stored or routed). Each
//! refusal is a [`Rejection`]; the proxy logs and counts it (as `webhooks_rejected_total`).
//!
//! The route `POST /api/wahub/webhook`, the header `x-wa-hub-signature` and the answers are
//! public interface: they change only with a note in the README.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::header;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use wa_hub_sinks::envelope::iso_timestamp;
use wa_hub_sinks::{Payload, WebhookRecord};

use crate::app::App;
use crate::auth::bearer_token;
use crate::config::SignaturePolicy;
use crate::exchange::read_limited;
use crate::rejection::Rejection;
use crate::response::LocalResponse;
use crate::signature::{SignatureCheck, SIGNATURE_HEADER};
use crate::status::StatusEngine;

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

impl WebhookHeaders {
    /// The headers of a request, every value of the repeatable ones.
    pub fn from_request(req: &RequestHeader) -> Self {
        let all = |name: &str| -> Vec<Vec<u8>> {
            req.headers
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes().to_vec())
                .collect()
        };
        let text = |name| req.headers.get(name).and_then(|v| v.to_str().ok());
        Self {
            authorization: all("authorization"),
            signatures: all(SIGNATURE_HEADER),
            content_type: text(header::CONTENT_TYPE).map(str::to_owned),
            content_length: text(header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok()),
        }
    }
}

/// `POST /api/wahub/webhook` on a Pingora session: [`precheck`], the body read up to
/// `webhook.max_body_bytes`, then [`ingest`]. 200 `{"ok":true}`; in fleet mode once the
/// delivery is stored in the fleet's stream ([`App::settled`]).
///
/// # Errors
/// The [`Rejection`] of the first check that fails, in the order of the module docs;
/// [`Rejection::NotStored`] (503) in fleet mode when the stream did not confirm in time, so
/// the sender retries (the retry is stored once) instead of counting on a buffer that a
/// killed node would lose.
pub async fn receive(app: &App, session: &mut Session) -> Result<LocalResponse, Rejection> {
    let headers = WebhookHeaders::from_request(session.req_header());
    precheck(app, &headers)?;
    let body = read_limited(session, body_limit(app)).await?;
    let answer = ingest(app, &headers, body)?;
    // Fleet mode: answer once the delivery is in the fleet's stream.
    if !app.settled().await {
        return Err(Rejection::NotStored);
    }
    Ok(answer)
}

/// Checks that need no body: the bearer token and a declared size.
///
/// # Errors
/// [`Rejection::WebhookUnauthorized`] or [`Rejection::TooLarge`].
pub fn precheck(app: &App, headers: &WebhookHeaders) -> Result<(), Rejection> {
    let cfg = &app.config.raw.webhook;
    if let Some(token) = &cfg.auth_token {
        let ok = match headers.authorization.as_slice() {
            [one] => {
                bearer_token(one).is_some_and(|t| bool::from(t.ct_eq(token.expose().as_bytes())))
            }
            _ => false,
        };
        if !ok {
            return Err(Rejection::WebhookUnauthorized);
        }
    }
    let limit = body_limit(app);
    if headers.content_length.is_some_and(|n| n > limit as u64) {
        return Err(Rejection::TooLarge { limit });
    }
    Ok(())
}

/// The largest webhook body taken, bytes: `webhook.max_body_bytes`, and in fleet mode at most
/// what one fleet message carries ([`crate::fleet::Fleet::max_body_bytes`]), so a delivery
/// the stream could never store gets 413 instead of holding up the events behind it.
fn body_limit(app: &App) -> usize {
    let limit = app.config.raw.webhook.max_body_bytes.get();
    match &app.fleet {
        Some(fleet) => limit.min(fleet.max_body_bytes()),
        None => limit,
    }
}

/// Whether the signature lets the delivery in: `Some(valid)` when checked, `None` when
/// signatures are off.
fn check_signature(
    app: &App,
    headers: &WebhookHeaders,
    body: &[u8],
) -> Result<Option<bool>, Rejection> {
    let (policy, verifier) = match (app.config.signature, &app.verifier) {
        (SignaturePolicy::Off, _) | (_, None) => return Ok(None),
        (policy, Some(verifier)) => (policy, verifier),
    };
    let check = verifier.verify(headers.signatures.iter().map(Vec::as_slice), body);
    match check {
        SignatureCheck::Valid => Ok(Some(true)),
        _ if policy == SignaturePolicy::Optional => Ok(Some(false)),
        SignatureCheck::Absent => Err(Rejection::SignatureAbsent),
        SignatureCheck::Invalid => Err(Rejection::InvalidSignature),
    }
}

/// Verifies, stores and routes one delivery whose body was read in full: the signature per
/// `webhook.signature`, the JSON, a re-send within `webhook.dedup_window_secs` (answered
/// `{"ok":true,"duplicate":true}` and left there), then the record, the status engine and the bus (webhook, then
/// `qr` and `status` events it caused, in that order). Free of Pingora.
///
/// # Errors
/// [`Rejection::SignatureAbsent`], [`Rejection::InvalidSignature`] or
/// [`Rejection::InvalidJson`].
pub fn ingest(
    app: &App,
    headers: &WebhookHeaders,
    body: Bytes,
) -> Result<LocalResponse, Rejection> {
    app.metrics.webhook_body_bytes.observe(body.len() as f64);
    let signature_valid = check_signature(app, headers, &body)?;
    let payload = parse_json(&body).map_err(|e| {
        tracing::debug!(error = %e, "webhook body is not JSON");
        Rejection::InvalidJson
    })?;
    if app
        .webhook_dedup
        .is_duplicate(&body, std::time::Instant::now())
    {
        app.metrics.webhooks_duplicate.inc();
        tracing::debug!("webhook body seen within the dedup window; not stored again");
        return Ok(LocalResponse::json(
            200,
            &json!({ "ok": true, "duplicate": true }),
        ));
    }
    let record = record(payload, signature_valid, body, headers);
    tracing::debug!(summary = %record.summary, "webhook accepted");
    let signature_label = match record.signature_valid {
        None => "unchecked",
        Some(true) => "valid",
        Some(false) if headers.signatures.is_empty() => "absent",
        Some(false) => "invalid",
    };
    app.metrics.webhook_received(&record.event, signature_label);
    app.decide_from(Payload::Webhook(record), |engine, now, fact| match fact {
        Payload::Webhook(record) => decide(engine, record, now),
        _ => Vec::new(),
    });
    Ok(LocalResponse::json(200, &json!({ "ok": true })))
}

/// What the delivery `record` received at `at` decides: applies it to the status engine and
/// returns the `qr` event and the new status it yields (each when there is one; nothing for a
/// delivery without an instance id). Single node: at acceptance; fleet mode: when the
/// consumer reads the delivery back from the stream.
pub fn decide(
    engine: &mut StatusEngine,
    record: &WebhookRecord,
    at: DateTime<Utc>,
) -> Vec<Payload> {
    let Some(id) = &record.instance_id else {
        return Vec::new();
    };
    let data = record.payload.get("data").unwrap_or(&Value::Null);
    let outcome = engine.apply_webhook(id, &record.event, data, at);
    let mut out = Vec::new();
    out.extend(outcome.qr.map(Payload::Qr));
    out.extend(outcome.status.map(Payload::Status));
    out
}

/// The dashboard's event record of a delivery: `event` (`unknown` when missing), `instanceId`
/// (a string or a number), a summary, a fresh id and the time of receipt.
fn record(
    payload: Value,
    signature_valid: Option<bool>,
    raw: Bytes,
    headers: &WebhookHeaders,
) -> WebhookRecord {
    record_with(
        payload,
        signature_valid,
        raw,
        headers
            .content_type
            .clone()
            .unwrap_or_else(|| "application/json".to_owned()),
        uuid::Uuid::new_v4().to_string(),
        iso_timestamp(Utc::now()),
    )
}

/// The event record of a delivery with a given record `id` and receipt `timestamp` (ISO
/// 8601): what [`ingest`] stores, and what fleet mode rebuilds from the raw body another node
/// published.
pub fn record_with(
    payload: Value,
    signature_valid: Option<bool>,
    raw: Bytes,
    content_type: String,
    id: String,
    timestamp: String,
) -> WebhookRecord {
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
    let data = payload.get("data").unwrap_or(&Value::Null);
    WebhookRecord {
        id,
        timestamp,
        summary: summary(&event, instance_id.as_deref(), data),
        instance_id,
        event,
        payload,
        signature_valid,
        raw,
        content_type,
    }
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
