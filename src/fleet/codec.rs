//! How one bus payload travels as one JetStream message, and back.
//!
//! | kind | body | `Nats-Msg-Id` |
//! |---|---|---|
//! | `webhook` | the delivery's raw bytes, unchanged | hex SHA-256 of the body (a re-send is stored once) |
//! | `apiLog` | the ApiLog JSON | the ApiLog `id` |
//! | `qr`, `status` | the event's JSON (`status` with `node`) | decided from a webhook read back from the stream: [`derived_id`]; otherwise a fresh UUID v4 per event |
//!
//! Headers: `Wahub-Node` (origin node id), `Wahub-Kind`, `Wahub-Msg-Id` (the message id); for webhooks also `Wahub-Record-Id`,
//! `Wahub-Received-At` (ISO 8601), `Wahub-Signature-Valid` (`true`/`false`, absent when
//! unchecked) and `Content-Type`. The subject is [`super::subject::subject`].

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use wa_hub_sinks::{ApiLog, InstanceStatus, Kind, Payload, QrEvent, Rank};

use super::subject::subject;

/// The JetStream de-duplication header.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// The message id again, under a name of ours: the server uses `Nats-Msg-Id` for
/// de-duplication and does not hand it to consumers.
pub const EVENT_ID: &str = "Wahub-Msg-Id";
/// Origin node header.
pub const NODE: &str = "Wahub-Node";
/// Kind header (`webhook`, `apiLog`, `qr`, `status`).
pub const KIND: &str = "Wahub-Kind";
/// Webhook record id header.
pub const RECORD_ID: &str = "Wahub-Record-Id";
/// Webhook receipt time header.
pub const RECEIVED_AT: &str = "Wahub-Received-At";
/// Webhook signature outcome header.
pub const SIGNATURE_VALID: &str = "Wahub-Signature-Valid";

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// `wahub.<node>.<instance>.<kind>`.
    pub subject: String,
    /// The `Nats-Msg-Id` (also in `headers`).
    pub msg_id: String,
    /// The payload's kind.
    pub kind: Kind,
    /// The instance the payload is about, if any.
    pub instance: Option<String>,
    /// Headers, `Nats-Msg-Id` included.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// A message read back from the stream.
#[derive(Debug)]
pub struct Incoming {
    /// The node that published it.
    pub node: String,
    /// Its `Nats-Msg-Id`.
    pub msg_id: String,
    /// The payload it carries.
    pub payload: Payload,
}

/// Why a stored message is not a fleet event (logged and skipped by the consumer).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A header this format needs is missing.
    #[error("header {0} missing")]
    MissingHeader(&'static str),
    /// The `Wahub-Kind` is not one this version knows.
    #[error("unknown kind `{0}`")]
    UnknownKind(String),
    /// The body is not the JSON its kind needs.
    #[error("body: {0}")]
    Body(#[from] serde_json::Error),
}

/// Hex SHA-256 of a webhook body: its `Nats-Msg-Id`.
pub fn body_key(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// The `Nats-Msg-Id` of the `kind` event (`qr`, `status`) decided from the webhook stored
/// under `webhook_id`: `<webhook id>.<kind>`. Retries of that publication are stored once.
pub fn derived_id(webhook_id: &str, kind: &str) -> String {
    format!("{webhook_id}.{kind}")
}

/// The `Nats-Msg-Id` of `derived`, decided from the fact `fact`: [`derived_id`] of the
/// webhook's id when `fact` is a webhook and `derived` a `qr` or `status` event; else `None`
/// (the event's own id).
pub fn derived_from(fact: &Payload, derived: &Payload) -> Option<String> {
    match (fact, derived) {
        (Payload::Webhook(w), Payload::Qr(_) | Payload::Status(_)) => {
            Some(derived_id(&body_key(&w.raw), derived.kind().as_str()))
        }
        _ => None,
    }
}

/// The message for `payload`, published by node `node` under subject prefix `prefix`, with
/// the `Nats-Msg-Id` `id` when given (a derived event, see [`derived_id`]), else the one the
/// table above gives.
pub fn encode(prefix: &str, node: &str, payload: &Payload, id: Option<String>) -> Outgoing {
    let kind = payload.kind();
    let mut headers = HeaderMap::new();
    headers.insert(NODE, node);
    headers.insert(KIND, kind.as_str());
    let fresh_id = || uuid::Uuid::new_v4().to_string();
    let (msg_id, body) = match payload {
        Payload::Webhook(w) => {
            headers.insert(RECORD_ID, w.id.as_str());
            headers.insert(RECEIVED_AT, w.timestamp.as_str());
            if let Some(valid) = w.signature_valid {
                headers.insert(SIGNATURE_VALID, if valid { "true" } else { "false" });
            }
            headers.insert("Content-Type", w.content_type.as_str());
            (body_key(&w.raw), w.raw.clone())
        }
        Payload::ApiLog(l) => (l.id.clone(), to_json(l)),
        Payload::Qr(q) => (id.unwrap_or_else(fresh_id), to_json(q)),
        Payload::Status(s) => {
            let mut s = s.clone();
            s.node.get_or_insert_with(|| node.to_owned());
            (id.unwrap_or_else(fresh_id), to_json(&s))
        }
    };
    headers.insert(MSG_ID, msg_id.as_str());
    headers.insert(EVENT_ID, msg_id.as_str());
    Outgoing {
        subject: subject(prefix, node, payload.instance_id(), kind.as_str()),
        msg_id,
        kind,
        instance: payload.instance_id().map(str::to_owned),
        headers,
        body,
    }
}

fn to_json(v: &impl serde::Serialize) -> Bytes {
    // Our own records always serialize.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// The payload of a stored message.
///
/// # Errors
/// [`DecodeError`] for a message this format did not write.
pub fn decode(headers: Option<&HeaderMap>, body: &Bytes) -> Result<Incoming, DecodeError> {
    let get = |name: &'static str| {
        headers
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
            .ok_or(DecodeError::MissingHeader(name))
    };
    let node = get(NODE)?;
    let msg_id = get(EVENT_ID)?;
    let kind = get(KIND)?;
    let payload = match kind.as_str() {
        "webhook" => {
            let parsed = crate::webhook::parse_json(body)?;
            let signature_valid = match get(SIGNATURE_VALID).ok().as_deref() {
                Some("true") => Some(true),
                Some(_) => Some(false),
                None => None,
            };
            Payload::Webhook(crate::webhook::record_with(
                parsed,
                signature_valid,
                body.clone(),
                get("Content-Type").unwrap_or_else(|_| "application/json".to_owned()),
                get(RECORD_ID)?,
                get(RECEIVED_AT)?,
            ))
        }
        "apiLog" => Payload::ApiLog(serde_json::from_slice::<ApiLog>(body)?),
        "qr" => {
            let q: QrWire = serde_json::from_slice(body)?;
            Payload::Qr(QrEvent {
                instance_id: q.instance_id,
                qr: q.qr,
                classification: "READY",
            })
        }
        "status" => Payload::Status(serde_json::from_slice::<StatusWire>(body)?.into()),
        other => return Err(DecodeError::UnknownKind(other.to_owned())),
    };
    Ok(Incoming {
        node,
        msg_id,
        payload,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QrWire {
    instance_id: String,
    qr: String,
}

/// [`InstanceStatus`] as JSON, with owned strings where the record has static ones.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusWire {
    instance_id: String,
    display_status: String,
    rank: u8,
    show_qr: bool,
    qr: Option<String>,
    qr_error: Option<String>,
    timed_out: bool,
    source: String,
    updated_at: String,
    ready_source: Option<Value>,
    authenticated_to_ready_ms: Option<Value>,
    ready_watchdog_start_at: Option<Value>,
    ready_watchdog_ms: Option<Value>,
    node: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    conflict: bool,
    #[serde(default)]
    warning: Option<String>,
}

impl From<StatusWire> for InstanceStatus {
    fn from(w: StatusWire) -> Self {
        let rank = match w.rank {
            0 => Rank::Disconnected,
            1 => Rank::NeedsQr,
            2 => Rank::Syncing,
            _ => Rank::Active,
        };
        let source = match w.source.as_str() {
            "webhook" => "webhook",
            "meta" => "meta",
            "api" => "api",
            _ => "unknown",
        };
        InstanceStatus {
            instance_id: w.instance_id,
            display_status: w.display_status,
            rank,
            label: rank.label(),
            show_qr: w.show_qr,
            qr: w.qr,
            qr_error: w.qr_error,
            timed_out: w.timed_out,
            // The words the status engine sets (status.rs); anything else is not ours.
            reason: match w.reason.as_deref() {
                Some("logged_out") => Some("logged_out"),
                Some("banned") => Some("banned"),
                _ => None,
            },
            conflict: w.conflict,
            warning: w.warning.map(|_| crate::status::DEPRECATED_WARNING),
            source,
            updated_at: w.updated_at,
            ready_source: w.ready_source,
            authenticated_to_ready_ms: w.authenticated_to_ready_ms,
            ready_watchdog_start_at: w.ready_watchdog_start_at,
            ready_watchdog_ms: w.ready_watchdog_ms,
            node: w.node,
        }
    }
}

/// Parses a status as stored in the KV bucket (the same JSON as a `status` message).
///
/// # Errors
/// The parser's error.
pub fn decode_status(body: &[u8]) -> Result<InstanceStatus, serde_json::Error> {
    Ok(serde_json::from_slice::<StatusWire>(body)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wa_hub_sinks::WebhookRecord;

    #[test]
    fn a_webhook_travels_as_its_raw_bytes_keyed_by_their_hash() {
        let raw = Bytes::from_static(br#"{"event":"ready","instanceId":"a.b","data":{}}"#);
        let record = WebhookRecord {
            id: "rid".into(),
            timestamp: "2026-11-30T00:00:00.000Z".into(),
            instance_id: Some("a.b".into()),
            event: "ready".into(),
            payload: serde_json::from_slice(&raw).unwrap(),
            signature_valid: Some(true),
            summary: "ready @ a.b".into(),
            raw: raw.clone(),
            content_type: "application/json".into(),
        };
        let out = encode("wahub", "n1", &Payload::Webhook(record), None);
        assert_eq!(out.subject, "wahub.n1.a=2Eb.webhook");
        assert_eq!(out.body, raw);
        assert_eq!(out.msg_id, body_key(&raw));
        let back = decode(Some(&out.headers), &out.body).unwrap();
        assert_eq!(back.node, "n1");
        match back.payload {
            Payload::Webhook(w) => {
                assert_eq!(w.id, "rid");
                assert_eq!(w.summary, "ready @ a.b");
                assert_eq!(w.signature_valid, Some(true));
                assert_eq!(w.raw, raw);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_without_fleet_headers_is_refused() {
        let err = decode(None, &Bytes::from_static(b"{}")).unwrap_err();
        assert!(matches!(err, DecodeError::MissingHeader(NODE)));
    }
}
