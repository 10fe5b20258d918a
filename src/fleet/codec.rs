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
//! unchecked) and `Content-Type`; with `fleet.fleet_token` also `Wahub-Sealed-At` and
//! `Wahub-Fleet-Signature` ([`Sealer`]). The subject is [`super::subject::subject`].

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
    /// A `status` field is outside what a node writes.
    #[error("status field {0} is not one a node writes")]
    BadStatus(&'static str),
    /// `fleet.fleet_token` is set and the message's [`SEAL`] is missing or wrong: it was not
    /// written by a node holding the same token.
    #[error("fleet signature (Wahub-Fleet-Signature) missing or wrong; written by something else than a node with this fleet_token")]
    Unsealed,
    /// The seal is right but was made more than the duplicate window before (or after) the
    /// stream stored the message: an old message published again (a replay).
    #[error("sealed {0} s away from when the stream stored it (a replayed message)")]
    Stale(i64),
    /// A message with this `Wahub-Msg-Id` was consumed within the duplicate window already
    /// (published again under another `Nats-Msg-Id`: a replay).
    #[error("message id already consumed (a replayed message)")]
    Replayed,
}

/// Header with the time a message was sealed, Unix milliseconds (covered by the [`SEAL`]).
pub const SEALED_AT: &str = "Wahub-Sealed-At";

/// Header carrying a fleet message's HMAC when `fleet.fleet_token` is set: lower-case hex
/// HMAC-SHA256, keyed by the token, of [`SEALED_HEADERS`] (their values, each followed by a
/// newline, an absent one as empty) and then the body.
pub const SEAL: &str = "Wahub-Fleet-Signature";

/// The headers a [`SEAL`] covers, in order.
pub const SEALED_HEADERS: [&str; 8] = [
    SEALED_AT,
    NODE,
    KIND,
    EVENT_ID,
    RECORD_ID,
    RECEIVED_AT,
    SIGNATURE_VALID,
    "Content-Type",
];

/// Signs and checks fleet messages with `fleet.fleet_token`, so a node only takes messages
/// from nodes holding the same token: anything else that can publish on the subjects (a
/// misconfigured client, an attacker with broker access) is skipped. Without a token nothing
/// is signed and everything is taken.
///
/// Against replays of captured messages: the seal covers [`SEALED_AT`], set when the message
/// is sent; [`Sealer::check`] refuses a message the stream stored more than the duplicate
/// window away from that time, and the consumer refuses a `Wahub-Msg-Id` it consumed within
/// the window (`consume`).
#[derive(Debug, Clone, Default)]
pub struct Sealer {
    key: Option<wa_hub_sinks::signature::Verifier>,
}

impl Sealer {
    /// A sealer for `token`; `None` seals nothing.
    pub fn new(token: Option<&[u8]>) -> Self {
        Self {
            key: token.map(wa_hub_sinks::signature::Verifier::new),
        }
    }

    /// Whether messages are sealed (a token is set).
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// Adds [`SEALED_AT`] (`now_ms`) and the [`SEAL`] to the `headers` of a message with
    /// `body`, as it is sent (nothing without a token).
    pub fn seal(&self, headers: &mut HeaderMap, body: &[u8], now_ms: i64) {
        if let Some(key) = &self.key {
            headers.insert(SEALED_AT, now_ms.to_string().as_str());
            let digest = key.sign_parts(&sealed_parts(Some(headers), body));
            headers.insert(SEAL, digest.as_str());
        }
    }

    /// Checks a stored message's [`SEAL`], and that it was sealed within `window` of
    /// `stored_ms`, when the stream stored it (Unix ms).
    ///
    /// # Errors
    /// [`DecodeError::Unsealed`] when a token is set and the seal is missing or wrong;
    /// [`DecodeError::Stale`] when it was sealed further than `window` from `stored_ms`.
    pub fn check(
        &self,
        headers: Option<&HeaderMap>,
        body: &[u8],
        stored_ms: i64,
        window: std::time::Duration,
    ) -> Result<(), DecodeError> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let sealed_ms = headers
            .and_then(|h| h.get(SEALED_AT))
            .and_then(|v| v.as_str().parse::<i64>().ok())
            .ok_or(DecodeError::Unsealed)?;
        let values: Vec<&[u8]> = headers
            .map(|h| h.get_all(SEAL).map(|v| v.as_str().as_bytes()).collect())
            .unwrap_or_default();
        if key.verify_parts(values, &sealed_parts(headers, body))
            != wa_hub_sinks::signature::SignatureCheck::Valid
        {
            return Err(DecodeError::Unsealed);
        }
        let gap_ms = stored_ms.saturating_sub(sealed_ms).saturating_abs();
        if u128::from(gap_ms.unsigned_abs()) > window.as_millis() {
            return Err(DecodeError::Stale(gap_ms / 1000));
        }
        Ok(())
    }
}

/// What a [`SEAL`] covers, in order: each of [`SEALED_HEADERS`]' values (empty when absent)
/// followed by a newline, then the body; hashed part by part, the body never copied.
fn sealed_parts<'a>(headers: Option<&'a HeaderMap>, body: &'a [u8]) -> Vec<&'a [u8]> {
    let mut parts = Vec::with_capacity(2 * SEALED_HEADERS.len() + 1);
    for name in SEALED_HEADERS {
        if let Some(v) = headers.and_then(|h| h.get(name)) {
            parts.push(v.as_str().as_bytes());
        }
        parts.push(b"\n");
    }
    parts.push(body);
    parts
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
            if q.qr.len() > MAX_QR_BYTES || q.instance_id.len() > MAX_WORD_BYTES {
                return Err(DecodeError::BadStatus("qr"));
            }
            Payload::Qr(QrEvent {
                instance_id: q.instance_id,
                qr: q.qr,
                classification: "READY",
            })
        }
        "status" => {
            let mut status = checked_status(serde_json::from_slice::<StatusWire>(body)?)?;
            // The node that wrote the message, whatever the body says.
            status.node = Some(node.clone());
            Payload::Status(status)
        }
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

/// Longest `qr` string a status may carry (WhatsApp's pairing text is about 250 bytes).
pub const MAX_QR_BYTES: usize = 4096;
/// Longest `displayStatus` or instance id a status may carry.
pub const MAX_WORD_BYTES: usize = 256;

/// A status from the wire, refused when a field is outside what the status engine writes: an
/// `updatedAt` that is not RFC 3339, over-long words or QR; `showQr` only at rank 1.
fn checked_status(w: StatusWire) -> Result<InstanceStatus, DecodeError> {
    if chrono::DateTime::parse_from_rfc3339(&w.updated_at).is_err() {
        return Err(DecodeError::BadStatus("updatedAt"));
    }
    if w.display_status.len() > MAX_WORD_BYTES {
        return Err(DecodeError::BadStatus("displayStatus"));
    }
    if w.instance_id.is_empty() || w.instance_id.len() > MAX_WORD_BYTES {
        return Err(DecodeError::BadStatus("instanceId"));
    }
    if w.qr.as_ref().is_some_and(|q| q.len() > MAX_QR_BYTES) {
        return Err(DecodeError::BadStatus("qr"));
    }
    let mut status: InstanceStatus = w.into();
    status.show_qr &= status.rank == Rank::NeedsQr;
    Ok(status)
}

/// Parses a status as stored in the KV bucket (the same JSON as a `status` message), with the
/// same checks.
///
/// # Errors
/// [`DecodeError::Body`] or [`DecodeError::BadStatus`].
pub fn decode_status(body: &[u8]) -> Result<InstanceStatus, DecodeError> {
    checked_status(serde_json::from_slice::<StatusWire>(body)?)
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

    fn status_message(node: &str, body: &str) -> (HeaderMap, Bytes) {
        let mut h = HeaderMap::new();
        h.insert(NODE, node);
        h.insert(KIND, "status");
        h.insert(EVENT_ID, "m1");
        (h, Bytes::from(body.to_owned()))
    }

    const STATUS: &str = r#"{"instanceId":"x","displayStatus":"ready","rank":3,"showQr":true,"qr":"q","qrError":null,"timedOut":false,"source":"webhook","updatedAt":"2026-11-30T00:00:00.000Z","readySource":null,"authenticatedToReadyMs":null,"readyWatchdogStartAt":null,"readyWatchdogMs":null,"node":"someone-else"}"#;

    #[test]
    fn a_status_keeps_only_what_a_node_writes() {
        let (h, body) = status_message("n1", STATUS);
        let Payload::Status(s) = decode(Some(&h), &body).unwrap().payload else {
            panic!("not a status")
        };
        assert_eq!(
            s.node.as_deref(),
            Some("n1"),
            "the writer, not the body's claim"
        );
        assert!(!s.show_qr, "a QR is shown at rank 1 only");
        let long_qr = format!(r#""qr":"{}""#, "q".repeat(5000));
        for (field, bad) in [
            (
                "updatedAt",
                STATUS.replace("2026-11-30T00:00:00.000Z", "not a date"),
            ),
            ("qr", STATUS.replace(r#""qr":"q""#, &long_qr)),
            (
                "instanceId",
                STATUS.replace(r#""instanceId":"x""#, r#""instanceId":"""#),
            ),
        ] {
            let (h, body) = status_message("n1", &bad);
            let err = decode(Some(&h), &body).unwrap_err();
            assert!(
                matches!(err, DecodeError::BadStatus(f) if f == field),
                "{field}: {err}"
            );
        }
    }

    #[test]
    fn a_sealed_message_checks_out_only_with_the_same_token_unchanged_and_fresh() {
        let record = Payload::Status(decode_status(STATUS.as_bytes()).unwrap());
        let msg = encode("wahub", "n1", &record, None);
        let (mut h, body) = (msg.headers.clone(), msg.body.clone());
        let sealer = Sealer::new(Some(b"token"));
        let window = std::time::Duration::from_secs(120);
        let sent = 1_000_000_000;
        sealer.seal(&mut h, &body, sent);
        let check = |s: &Sealer, h: Option<&HeaderMap>, b: &[u8], stored: i64| {
            s.check(h, b, stored, window)
        };
        assert!(check(&sealer, Some(&h), &body, sent + 50).is_ok());
        assert!(
            check(&sealer, Some(&h), &body, sent - 50).is_ok(),
            "clocks apart"
        );
        let other = Sealer::new(Some(b"other"));
        assert!(check(&other, Some(&h), &body, sent).is_err());
        assert!(
            check(&Sealer::new(None), None, &body, sent).is_ok(),
            "no token: no check"
        );
        assert!(check(&sealer, None, &body, sent).is_err(), "unsealed");
        let mut posing = h.clone();
        posing.insert(NODE, "n2");
        assert!(
            check(&sealer, Some(&posing), &body, sent).is_err(),
            "another node's name"
        );
        let mut later = h.clone();
        later.insert(SEALED_AT, (sent + 500_000).to_string().as_str());
        assert!(
            check(&sealer, Some(&later), &body, sent + 500_000).is_err(),
            "time changed"
        );
        let mut changed = body.to_vec();
        changed[0] = b' ';
        assert!(
            check(&sealer, Some(&h), &changed, sent).is_err(),
            "another body"
        );
        let replayed = check(&sealer, Some(&h), &body, sent + 121_000).unwrap_err();
        assert!(matches!(replayed, DecodeError::Stale(121)), "{replayed}");
    }

    #[test]
    fn a_message_without_fleet_headers_is_refused() {
        let err = decode(None, &Bytes::from_static(b"{}")).unwrap_err();
        assert!(matches!(err, DecodeError::MissingHeader(NODE)));
    }
}
