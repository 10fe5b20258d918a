//! The event envelope: what travels on the bus and, serialized, on the wire to SSE browsers and
//! other sinks.
//!
//! The JSON shape of a payload is the dashboard's SSE envelope `{"type": T, "data": {...}}`
//! (DESIGN.md "Public interface"), with `T` one of `webhook`, `apiLog`, `qr`, `status`.

use std::sync::OnceLock;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
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
    envelope_json: OnceLock<Bytes>,
}

impl Event {
    pub(crate) fn new(id: u64, timestamp: DateTime<Utc>, payload: Payload) -> Self {
        Self {
            id,
            timestamp,
            payload,
            envelope_json: OnceLock::new(),
        }
    }

    /// The dashboard envelope `{"type": T, "data": {...}}` as compact JSON.
    ///
    /// Serialized on first use and cached, so fanning one event out to many clients costs one
    /// serialization.
    pub fn envelope_json(&self) -> &Bytes {
        self.envelope_json.get_or_init(|| {
            // Serializing our own plain structs and `serde_json::Value`s cannot fail.
            Bytes::from(serde_json::to_vec(&self.payload).unwrap_or_default())
        })
    }

    /// Short name of the payload kind: `webhook`, `apiLog`, `qr` or `status`.
    pub fn kind(&self) -> &'static str {
        self.payload.kind()
    }
}

/// What an event carries. Serializes as `{"type": <kind>, "data": <record>}`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "camelCase")]
pub enum Payload {
    /// One proxied wa-hub REST call.
    ApiLog(ApiLog),
}

impl Payload {
    /// Short name of the kind, as it appears in the `type` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::ApiLog(_) => "apiLog",
        }
    }

    /// The wa-hub instance the payload concerns, when it concerns one.
    pub fn instance_id(&self) -> Option<&str> {
        match self {
            Payload::ApiLog(log) => log.instance_id.as_deref(),
        }
    }
}

/// One proxied wa-hub REST call, with the dashboard's ApiLog fields.
#[derive(Debug, Clone, Serialize)]
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
    /// Request body: parsed JSON, `{"raw": <first 500 chars>}`, or `null` when empty.
    pub request_body: Value,
    /// Response body, same rules as `request_body`.
    pub response_body: Value,
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
