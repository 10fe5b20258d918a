//! What one SSE client is sent, apart from the HTTP connection that carries it: its scope, the
//! frames that open its stream (`retry:`, `connected`, then `initial`, `reset` + `initial`, or
//! the missed events) and the batches of live frames. Pingora-free; the service's
//! `GET /api/stream` endpoint drives it.
//!
//! Envelope (DESIGN.md "Public interface"; the dashboard's `useSSE`): `data: {"type": T,
//! "data": {...}}` with `T` one of `connected`, `initial`, `reset` and the event kinds.
//! Public interface: changes only with a note in the README.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::hub::{encode_frame, Resume, SseFrame};
use crate::envelope::{ApiLog, Event, WebhookRecord};

/// Most bytes of queued frames written to a client in one write.
pub const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Which events a client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Events of one instance only.
    Instance(String),
    /// Everything.
    Global,
}

impl Scope {
    /// From the query parameters `scope` and `instanceId` (decoded): `scope=global` → global;
    /// `scope=instance` needs `instanceId`; no scope → instance when `instanceId` is given,
    /// else global. An empty `instanceId` counts as absent.
    ///
    /// # Errors
    /// A message for a bad `scope` value or `scope=instance` without `instanceId`.
    pub fn new(scope: Option<&str>, instance_id: Option<String>) -> Result<Self, &'static str> {
        match (scope, instance_id.filter(|s| !s.is_empty())) {
            (Some("global"), _) => Ok(Scope::Global),
            (Some("instance") | None, Some(id)) => Ok(Scope::Instance(id)),
            (Some("instance"), None) => Err("scope=instance needs instanceId"),
            (None, None) => Ok(Scope::Global),
            (Some(_), _) => Err("scope must be instance or global"),
        }
    }

    /// Whether a client of this scope receives `event`.
    pub fn selects(&self, event: &Event) -> bool {
        match self {
            Scope::Global => true,
            Scope::Instance(id) => event.payload.instance_id() == Some(id.as_str()),
        }
    }

    /// The instance a scoped client follows; `None` when global.
    pub fn instance(&self) -> Option<&str> {
        match self {
            Scope::Instance(id) => Some(id),
            Scope::Global => None,
        }
    }

    /// The `connected` event's data: `{instanceId, scope}`.
    pub fn connected_data(&self) -> Value {
        match self {
            Scope::Global => json!({ "instanceId": null, "scope": "global" }),
            Scope::Instance(id) => json!({ "instanceId": id, "scope": "instance" }),
        }
    }
}

/// A `Last-Event-ID` value (header, else the `lastEventId` query parameter) as an id. A value
/// that is not a decimal id is ignored, as if absent; the header wins when it is readable.
pub fn last_event_id(header: Option<&[u8]>, query_value: Option<String>) -> Option<u64> {
    header
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(|s| s.trim().to_owned())
        .or(query_value)
        .and_then(|s| s.parse().ok())
}

/// The `initial` event's data: histories newest first and the dashboard's `instanceMeta`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Initial<'a> {
    /// Webhook records, newest first.
    pub webhook_events: Vec<&'a WebhookRecord>,
    /// API-log entries, newest first.
    pub api_logs: Vec<&'a ApiLog>,
    /// Per instance `{waStatus, lifecycleRank, lastEventAt, lastQrBase64, qrError}`.
    pub instance_meta: Value,
}

/// `{"type": kind, "data": data}` as compact JSON.
pub fn envelope(kind: &str, data: &impl Serialize) -> Vec<u8> {
    // Serializing our own structs and `serde_json::Value`s cannot fail.
    serde_json::to_vec(&json!({ "type": kind, "data": data })).unwrap_or_default()
}

/// The bytes that open a stream, and how many bus events they carry: the `retry:` hint,
/// `connected`, then by `resume`: `initial` (fresh), `reset` + `initial` (unusable id), or the
/// missed frames this scope selects. `initial` is called only when needed and returns the
/// encoded `initial` frame.
pub fn opening_frames(
    retry_ms: u64,
    scope: &Scope,
    resume: Resume,
    last_id: Option<u64>,
    initial: impl FnOnce() -> Bytes,
) -> (Bytes, u64) {
    let mut first = BytesMut::new();
    first.extend_from_slice(format!("retry: {retry_ms}\n\n").as_bytes());
    first.extend_from_slice(&encode_frame(
        None,
        &envelope("connected", &scope.connected_data()),
    ));
    let mut sent = 0u64;
    match resume {
        Resume::Fresh => first.extend_from_slice(&initial()),
        Resume::Reset => {
            let reset = json!({ "reason": "lastEventIdNotKept", "lastEventId": last_id });
            first.extend_from_slice(&encode_frame(None, &envelope("reset", &reset)));
            first.extend_from_slice(&initial());
        }
        Resume::Resumed(frames) => {
            for f in frames.iter().filter(|f| scope.selects(&f.event)) {
                first.extend_from_slice(&f.bytes);
                sent += 1;
            }
        }
    }
    (first.freeze(), sent)
}

/// `first` plus frames already queued behind it, as one write of at most about
/// [`MAX_BATCH_BYTES`], keeping only what `scope` selects; and how many events it carries.
/// Lagging is noticed on the caller's next `recv`.
pub fn batch(
    scope: &Scope,
    first: Arc<SseFrame>,
    rx: &mut broadcast::Receiver<Arc<SseFrame>>,
) -> (Bytes, u64) {
    let mut buf = BytesMut::new();
    let mut n = 0;
    let mut next = Some(first);
    while let Some(frame) = next.take() {
        if scope.selects(&frame.event) {
            buf.extend_from_slice(&frame.bytes);
            n += 1;
        }
        if buf.len() >= MAX_BATCH_BYTES {
            break;
        }
        next = rx.try_recv().ok();
    }
    (buf.freeze(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        assert_eq!(Scope::new(None, None), Ok(Scope::Global));
        assert_eq!(
            Scope::new(None, Some("a".into())),
            Ok(Scope::Instance("a".into()))
        );
        assert_eq!(
            Scope::new(Some("global"), Some("a".into())),
            Ok(Scope::Global)
        );
        assert!(Scope::new(Some("instance"), None).is_err());
        assert!(Scope::new(Some("weird"), Some("a".into())).is_err());
    }

    #[test]
    fn last_event_id_prefers_header_and_ignores_garbage() {
        assert_eq!(last_event_id(Some(b"42"), Some("7".into())), Some(42));
        assert_eq!(last_event_id(None, Some("7".into())), Some(7));
        assert_eq!(last_event_id(Some(b"abc"), None), None);
        assert_eq!(last_event_id(Some(&[0xff]), Some("3".into())), Some(3));
        assert_eq!(last_event_id(None, None), None);
    }
}
