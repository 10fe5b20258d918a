//! The event envelope: what travels on the bus and, serialized, on the wire to SSE browsers and
//! other sinks.
//!
//! The JSON shape of a payload is the dashboard's SSE envelope `{"type": T, "data": {...}}`
//! (DESIGN.md "Public interface"), with `T` one of `webhook`, `apiLog`, `qr`, `status`.

use std::sync::OnceLock;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// One numbered event on the bus.
///
/// Built only by [`crate::Bus::publish`], which assigns [`Event::id`]; the id is unique and
/// strictly increasing for the life of the process.
#[derive(Debug)]
pub struct Event {
    /// Bus-assigned sequence number, starting at 1. Used as the SSE `id:`.
    pub id: u64,
    /// When the bus accepted the event.
    pub timestamp: DateTime<Utc>,
    /// What happened.
    pub payload: Payload,
    /// The SSE frame `id: N\ndata: <envelope>\n\n` and, sharing its bytes, the envelope.
    encoded: OnceLock<Encoded>,
}

/// An event's one serialization: the SSE frame, and the envelope JSON as a slice of it (one
/// allocation for the SSE ring, the histories and every sink).
#[derive(Debug)]
struct Encoded {
    frame: Bytes,
    envelope: Bytes,
}

impl Event {
    /// An event read back from a log that numbered it (fleet mode: `id` is the JetStream
    /// stream sequence): used to replay events to a resuming SSE client without routing them.
    pub fn replayed(id: u64, timestamp: DateTime<Utc>, payload: Payload) -> Self {
        Self::new(id, timestamp, payload)
    }

    pub(crate) fn new(id: u64, timestamp: DateTime<Utc>, payload: Payload) -> Self {
        Self {
            id,
            timestamp,
            payload,
            encoded: OnceLock::new(),
        }
    }

    /// The dashboard envelope `{"type": T, "data": {...}}` as compact JSON.
    ///
    /// Serialized on first use and cached, so fanning one event out to many clients costs one
    /// serialization. Shares its bytes with [`Event::sse_frame`].
    pub fn envelope_json(&self) -> &Bytes {
        &self.encoded().envelope
    }

    /// The event as one SSE frame, `id: <id>\ndata: <envelope JSON>\n\n`; the same bytes as
    /// [`Event::envelope_json`], not a copy.
    pub fn sse_frame(&self) -> &Bytes {
        &self.encoded().frame
    }

    fn encoded(&self) -> &Encoded {
        self.encoded.get_or_init(|| {
            let mut buf = Vec::with_capacity(self.payload.encoded_len_hint() + 48);
            buf.extend_from_slice(b"id: ");
            buf.extend_from_slice(self.id.to_string().as_bytes());
            buf.extend_from_slice(b"\ndata: ");
            let start = buf.len();
            // Serializing our own plain structs and `serde_json::Value`s cannot fail.
            if serde_json::to_writer(&mut buf, &self.payload).is_err() {
                buf.truncate(start);
            }
            let end = buf.len();
            buf.extend_from_slice(b"\n\n");
            // Kept for as long as the histories keep the event: no spare capacity.
            let frame = if buf.capacity() - buf.len() > buf.len() / 16 {
                Bytes::copy_from_slice(&buf)
            } else {
                Bytes::from(buf)
            };
            Encoded {
                envelope: frame.slice(start..end),
                frame,
            }
        })
    }

    /// Whether the event was serialized yet ([`Event::sse_frame`] or [`Event::envelope_json`]
    /// was called).
    pub fn is_encoded(&self) -> bool {
        self.encoded.get().is_some()
    }

    /// The payload's kind.
    pub fn kind(&self) -> Kind {
        self.payload.kind()
    }
}

/// An event kind as named in the envelope's `type` field. Public interface (the SSE
/// envelope, sink `kinds` filters): changes only with a note in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Kind {
    /// `webhook`
    #[serde(rename = "webhook")]
    Webhook,
    /// `apiLog`
    #[serde(rename = "apiLog")]
    ApiLog,
    /// `qr`
    #[serde(rename = "qr")]
    Qr,
    /// `status`
    #[serde(rename = "status")]
    Status,
}

impl Kind {
    /// The `type` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::ApiLog => "apiLog",
            Kind::Qr => "qr",
            Kind::Status => "status",
        }
    }
}

/// An instance's lifecycle rank (dashboard reference §5). Serialized as its number, 0–3, as
/// the dashboard's `lifecycleRank`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rank {
    /// 0: `disconnected`, `auth_failure`, `restricted` (and the sidecar's `logged_out`,
    /// `banned`).
    Disconnected = 0,
    /// 1: waiting for a QR scan; the default.
    NeedsQr = 1,
    /// 2: authenticated, syncing.
    Syncing = 2,
    /// 3: ready.
    Active = 3,
}

impl Rank {
    /// The rank's label: `disconnected`, `needs_qr`, `syncing` or `active`.
    pub fn label(self) -> &'static str {
        match self {
            Rank::Disconnected => "disconnected",
            Rank::NeedsQr => "needs_qr",
            Rank::Syncing => "syncing",
            Rank::Active => "active",
        }
    }

    /// The number, 0–3.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

impl Serialize for Rank {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

/// What an event carries. Serializes as `{"type": <kind>, "data": <record>}`: the dashboard's
/// SSE envelope. Public interface: changes only with a note in the README.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "camelCase")]
pub enum Payload {
    /// One webhook delivery from wa-hub, as stored.
    Webhook(WebhookRecord),
    /// One proxied wa-hub REST call.
    ApiLog(ApiLog),
    /// A QR code arrived for an instance.
    Qr(QrEvent),
    /// An instance's display status changed.
    Status(InstanceStatus),
}

impl Payload {
    /// The kind, as it appears in the `type` field ([`Kind::as_str`]).
    pub fn kind(&self) -> Kind {
        match self {
            Payload::Webhook(_) => Kind::Webhook,
            Payload::ApiLog(_) => Kind::ApiLog,
            Payload::Qr(_) => Kind::Qr,
            Payload::Status(_) => Kind::Status,
        }
    }

    /// About the length of the payload's envelope JSON, to allocate it once: the bodies it
    /// carries plus room for the other fields.
    fn encoded_len_hint(&self) -> usize {
        match self {
            Payload::Webhook(w) => w.raw.len() + w.summary.len() + 256,
            Payload::ApiLog(l) => {
                l.request_body.len_hint()
                    + l.response_body.len_hint()
                    + l.path.len()
                    + l.error.as_ref().map_or(0, String::len)
                    + 320
            }
            Payload::Qr(q) => q.qr.len() + q.instance_id.len() + 96,
            Payload::Status(s) => {
                s.qr.as_ref().map_or(0, String::len)
                    + s.qr_error.as_ref().map_or(0, String::len)
                    + 512
            }
        }
    }

    /// The wa-hub instance the payload concerns, when it concerns one.
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            Payload::Webhook(w) => w.instance_id.as_deref(),
            Payload::ApiLog(log) => log.instance_id.as_deref(),
            Payload::Qr(q) => Some(&q.instance_id),
            Payload::Status(s) => Some(&s.instance_id),
        }
    }

    /// The webhook event name, for webhook payloads.
    pub fn webhook_event(&self) -> Option<&str> {
        match self {
            Payload::Webhook(w) => Some(&w.event),
            _ => None,
        }
    }
}

/// One webhook delivery, with the dashboard's event-record fields.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRecord {
    /// Unique id of the record (UUID v4).
    pub id: String,
    /// When the sidecar received it, ISO 8601 UTC with milliseconds.
    pub timestamp: String,
    /// `instanceId` of the delivery; `null` when it had none (the summary then says `unknown`).
    pub instance_id: Option<String>,
    /// `event` of the delivery; `unknown` when it had none.
    pub event: String,
    /// The whole delivery, parsed.
    pub payload: Value,
    /// `true`/`false` when a secret is configured, `null` when signatures are `off`.
    pub signature_valid: Option<bool>,
    /// `change_state:<status> @ <id>` for `change_state`, else `<event> @ <id>`.
    pub summary: String,
    /// The exact request body, for sinks that forward it unchanged. Not serialized.
    #[serde(skip)]
    pub raw: Bytes,
    /// The request's `Content-Type`, sent along with `raw`. Not serialized.
    #[serde(skip)]
    pub content_type: String,
}

/// A QR code for an instance (`type: "qr"`), as the dashboard's SSE route emits it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QrEvent {
    /// The instance.
    pub instance_id: String,
    /// Base64 PNG as wa-hub sent it.
    pub qr: String,
    /// Always `READY` (the dashboard's classification of a usable QR).
    pub classification: &'static str,
}

/// An instance's display status as the status engine decides it (dashboard reference §5,
/// moved server-side). Sent as `type: "status"` on every change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// The instance.
    pub instance_id: String,
    /// Status word from the highest-precedence source (e.g. `ready`, `qr`, `CONNECTED`).
    pub display_status: String,
    /// 0 disconnected, 1 needs_qr, 2 syncing, 3 active.
    pub rank: Rank,
    /// Name of the rank: `disconnected`, `needs_qr`, `syncing` or `active`.
    pub label: &'static str,
    /// Whether a QR should be shown (not ready, not authenticating/initializing, QR known).
    pub show_qr: bool,
    /// The QR to show (base64 PNG), when known.
    pub qr: Option<String>,
    /// The last QR failure reported by wa-hub (`qr` event with `data.error`).
    pub qr_error: Option<String>,
    /// True after `ready_timeout` until the next lifecycle event.
    pub timed_out: bool,
    /// Why the rank is 0, by the sidecar's own rules: `logged_out` (`change_state`
    /// `UNPAIRED`/`UNPAIRED_IDLE`) or `banned` (`TOS_BLOCK`/`SMB_TOS_BLOCK`). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// True after `change_state` `CONFLICT` (the session is open elsewhere) until the next
    /// lifecycle event. Absent when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub conflict: bool,
    /// A warning to show (after `change_state` `DEPRECATED_VERSION`). Absent when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<&'static str>,
    /// Which source decided: `webhook`, `meta`, `api` or `unknown`.
    pub source: &'static str,
    /// When this status was decided, ISO 8601 UTC.
    pub updated_at: String,
    /// wa-hub's `readySource`, when the API reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_source: Option<Value>,
    /// wa-hub's `authenticatedToReadyMs`, when the API reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticated_to_ready_ms: Option<Value>,
    /// wa-hub's `readyWatchdogStartAt`, when the API reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_watchdog_start_at: Option<Value>,
    /// wa-hub's `readyWatchdogMs`, when the API reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_watchdog_ms: Option<Value>,
    /// Fleet mode: the `fleet.node_id` of the sidecar that decided this status. Absent on a
    /// single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// One proxied wa-hub REST call, with the dashboard's ApiLog fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiLog {
    /// Unique id of the entry (UUID v4).
    pub id: String,
    /// When the call started, ISO 8601 UTC with milliseconds.
    pub timestamp: String,
    /// HTTP method as the client sent it.
    pub method: String,
    /// wa-hub path and query as sent upstream, e.g. `/instances/x/client/status`.
    pub path: String,
    /// Status the client received; `None` when no response was written.
    pub status_code: Option<u16>,
    /// Milliseconds from request start to the end of the response.
    pub latency_ms: u64,
    /// Request body: the JSON as received when it is JSON, `{"raw": <first 500 chars>}`, or
    /// `null` when empty ([`ApiLogBody`]).
    pub request_body: ApiLogBody,
    /// Response body, same rules as `request_body`.
    pub response_body: ApiLogBody,
    /// Instance id taken from `/instances/<id>/...`, when the path has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// What went wrong when the call failed (no internals, no secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Formats a timestamp the way every record in this crate does: RFC 3339 / ISO 8601, UTC,
/// millisecond precision, `Z` suffix (as JavaScript's `Date.prototype.toISOString`).
pub fn iso_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Characters of a non-JSON body kept in `{"raw": ...}` (dashboard reference: first 500).
pub const RAW_PREVIEW_CHARS: usize = 500;

/// Bytes of a capture kept as it is even when it cannot be JSON: about what its preview
/// (500 characters of up to 4 bytes) takes anyway.
const PREVIEW_MAX_BYTES: usize = 4 * RAW_PREVIEW_CHARS;

/// A request or response body of an [`ApiLog`], as the proxy captured it: the bytes kept (at
/// most `api_log.max_body_bytes`) and the size of the whole body.
///
/// It becomes JSON only when the event is serialized, by the dashboard's rules:
/// - `null` for an empty body;
/// - the JSON as received when the whole body was kept and is JSON, its line breaks between
///   tokens removed so the event stays on one line;
/// - otherwise `{"raw": <first 500 chars>}`, plus `"truncated": true, "bytes": <total>` when
///   the body was over the cap.
///
/// So a proxied call costs no JSON work at all until some client or sink reads its ApiLog
/// (issue 10). Deserializing takes any JSON value as a whole body, so a serialized ApiLog reads
/// back to the same JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiLogBody {
    kept: Vec<u8>,
    total: usize,
}

impl ApiLogBody {
    /// A body of `total` bytes of which the first `kept.len()` were kept.
    ///
    /// A capture longer than [`PREVIEW_MAX_BYTES`] that cannot be JSON (only part of it kept,
    /// not UTF-8, or not starting like a JSON value) is turned into its `{"raw": ...}` form at
    /// once, so a history keeps 500 characters of it rather than the capture. Anything shorter
    /// waits, like JSON, for serialization.
    pub fn captured(kept: Vec<u8>, total: usize) -> Self {
        let body = Self {
            total: total.max(kept.len()),
            kept,
        };
        if body.kept.len() <= PREVIEW_MAX_BYTES || body.text().is_some_and(starts_like_json) {
            return body;
        }
        let preview = body.to_json();
        Self {
            kept: preview.get().as_bytes().to_vec(),
            total: preview.get().len(),
        }
    }

    /// A whole body of JSON text `json`.
    pub fn json(json: &str) -> Self {
        Self::captured(json.as_bytes().to_vec(), json.len())
    }

    /// The whole body as text ([`whole_text`]).
    pub fn text(&self) -> Option<&str> {
        whole_text(&self.kept, self.total)
    }

    /// The body's JSON form, by the rules above.
    pub fn to_json(&self) -> Box<RawValue> {
        if self.total == 0 {
            return raw(&Value::Null);
        }
        if let Some(text) = self.text() {
            if let Ok(v) = RawValue::from_string(text.to_owned()) {
                return one_line(v);
            }
        }
        let preview: String = String::from_utf8_lossy(&self.kept)
            .chars()
            .take(RAW_PREVIEW_CHARS)
            .collect();
        if self.total > self.kept.len() {
            raw(&serde_json::json!({ "raw": preview, "truncated": true, "bytes": self.total }))
        } else {
            raw(&serde_json::json!({ "raw": preview }))
        }
    }

    /// About the length of its JSON form.
    fn len_hint(&self) -> usize {
        self.kept.len() + 64
    }
}

/// A captured body as text, white space around it trimmed: `None` when only part of it was
/// kept (`kept` shorter than `total` bytes) or it is not UTF-8. Not checked to be JSON.
pub fn whole_text(kept: &[u8], total: usize) -> Option<&str> {
    if total > kept.len() {
        return None;
    }
    std::str::from_utf8(kept).ok().map(str::trim)
}

/// `json` without its line breaks. In valid JSON a raw CR or LF can only be white space
/// between tokens (inside strings they must be escaped, RFC 8259 §7), so dropping them keeps
/// the value and lets it travel on one line: an SSE `data:` line, an NDJSON line. A
/// pretty-printed upstream answer otherwise split the event (a browser's `EventSource` reads a
/// line break as the end of the field, so `JSON.parse` failed) and every later `initial`.
fn one_line(json: Box<RawValue>) -> Box<RawValue> {
    if !json.get().contains(['\n', '\r']) {
        return json;
    }
    let text: String = json
        .get()
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r'))
        .collect();
    RawValue::from_string(text).unwrap_or(json)
}

/// Whether `text` may be a JSON value: it starts like one (RFC 8259 §3).
fn starts_like_json(text: &str) -> bool {
    text.bytes()
        .next()
        .is_some_and(|b| b"{[\"-0123456789tfn".contains(&b))
}

fn raw(v: &Value) -> Box<RawValue> {
    // Serializing a `Value` cannot fail.
    serde_json::value::to_raw_value(v).expect("a Value serializes")
}

impl Serialize for ApiLogBody {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ApiLogBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = Box::<RawValue>::deserialize(deserializer)?;
        Ok(Self::json(json.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(cap: usize, chunks: &[&[u8]]) -> Value {
        let mut kept = Vec::new();
        let mut total = 0;
        for c in chunks {
            total += c.len();
            kept.extend_from_slice(&c[..c.len().min(cap.saturating_sub(kept.len()))]);
        }
        serde_json::to_value(ApiLogBody::captured(kept, total)).unwrap()
    }

    #[test]
    fn an_empty_body_is_null() {
        assert_eq!(body(10, &[]), Value::Null);
    }

    #[test]
    fn a_whole_json_body_is_itself() {
        assert_eq!(
            body(100, &[b" {\"a\":", b"[1,2]} \n"]),
            json!({"a": [1, 2]})
        );
        let text = serde_json::to_string(&ApiLogBody::json("[1, 2]")).unwrap();
        assert_eq!(text, "[1, 2]", "the JSON as received");
    }

    #[test]
    fn a_pretty_printed_json_body_is_serialized_on_one_line_with_its_value() {
        let pretty = "{\r\n  \"a\": 1,\n  \"b\": [\n    \"x\\ny\",\r\n    2\n  ]\n}";
        let b = ApiLogBody::json(pretty);
        let text = serde_json::to_string(&b).unwrap();
        assert!(!text.contains(['\n', '\r']), "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({"a": 1, "b": ["x\ny", 2]})
        );
        let envelope = serde_json::to_string(&json!({ "body": b })).unwrap();
        assert!(!envelope.contains('\n'));
    }

    #[test]
    fn a_body_that_is_not_json_keeps_its_first_500_chars() {
        let text = "é".repeat(600);
        let v = body(10_000, &[text.as_bytes()]);
        assert_eq!(
            v["raw"].as_str().unwrap().chars().count(),
            RAW_PREVIEW_CHARS
        );
        assert!(v.get("truncated").is_none());
    }

    #[test]
    fn a_body_over_the_cap_shows_what_was_kept_and_its_size() {
        assert_eq!(
            body(8, &[b"{\"aaaa\":", b"\"bbbbbbbb\"}"]),
            json!({"raw": "{\"aaaa\":", "truncated": true, "bytes": 19})
        );
    }

    #[test]
    fn a_body_that_cannot_be_json_is_kept_as_its_preview_only() {
        let binary = ApiLogBody::captured(vec![0xff; 10_000], 10_000);
        let html = ApiLogBody::captured("<p>x</p>".repeat(1000).into_bytes(), 8000);
        let cut = ApiLogBody::captured(b"[1,".repeat(1000), 50_000);
        for b in [&binary, &html, &cut] {
            assert!(b.kept.len() < 2100, "{} bytes kept", b.kept.len());
        }
        let v = serde_json::to_value(&cut).unwrap();
        assert_eq!(
            (v["truncated"].clone(), v["bytes"].clone()),
            (json!(true), json!(50_000))
        );
        assert!(serde_json::to_value(&html).unwrap()["raw"].is_string());
        // Text that starts like JSON waits for serialization to be checked.
        let almost = ApiLogBody::captured(b"{not json".to_vec(), 9);
        assert_eq!(almost.kept, b"{not json");
        assert_eq!(
            serde_json::to_value(&almost).unwrap(),
            json!({"raw": "{not json"})
        );
    }

    #[test]
    fn a_serialized_body_reads_back_to_the_same_json() {
        for b in [
            ApiLogBody::default(),
            ApiLogBody::json(r#"{"clientStatus":{"state":"x"}}"#),
            ApiLogBody::json("not json"),
            ApiLogBody::captured(b"{\"a\":".to_vec(), 300),
        ] {
            let once = serde_json::to_string(&b).unwrap();
            let back: ApiLogBody = serde_json::from_str(&once).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), once);
        }
    }
}
