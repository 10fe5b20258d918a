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

use super::hub::{encode_frame, Resume};
use crate::envelope::Event;

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

/// What a client said about the last event it saw: the `Last-Event-ID` header, else the
/// `lastEventId` query parameter (a first `EventSource` connection cannot set headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastEventId {
    /// Neither is given, or the value is empty (browsers send no header then): a fresh start.
    Absent,
    /// A decimal id that fits in a `u64`.
    Id(u64),
    /// Anything else (`abc`, `-1`, `18446744073709551616`, bytes that are not UTF-8): the client
    /// holds state the sidecar cannot place, so it gets `reset` (README "Server-Sent Events").
    Unusable,
}

impl LastEventId {
    /// The id, when usable.
    pub fn id(self) -> Option<u64> {
        match self {
            LastEventId::Id(id) => Some(id),
            LastEventId::Absent | LastEventId::Unusable => None,
        }
    }
}

/// Reads `Last-Event-ID` (raw header bytes) or the `lastEventId` query value (decoded). The
/// header wins when it is present and not empty; a header that is not UTF-8 falls back to the
/// query value, and is [`LastEventId::Unusable`] without one. Surrounding white space is
/// ignored.
pub fn last_event_id(header: Option<&[u8]>, query_value: Option<String>) -> LastEventId {
    // Decimal digits only: `u64::from_str` would also take a leading `+`.
    let parse = |s: &str| match s.trim() {
        "" => LastEventId::Absent,
        t if !t.bytes().all(|b| b.is_ascii_digit()) => LastEventId::Unusable,
        t => t.parse().map_or(LastEventId::Unusable, LastEventId::Id),
    };
    let from_query = || query_value.as_deref().map_or(LastEventId::Absent, parse);
    match header.map(std::str::from_utf8) {
        Some(Ok(h)) if !h.trim().is_empty() => parse(h),
        Some(Err(_)) => match from_query() {
            LastEventId::Absent => LastEventId::Unusable,
            q => q,
        },
        _ => from_query(),
    }
}

/// `{"type": kind, "data": data}` as compact JSON.
pub fn envelope(kind: &str, data: &impl Serialize) -> Vec<u8> {
    // Serializing our own structs and `serde_json::Value`s cannot fail.
    serde_json::to_vec(&json!({ "type": kind, "data": data })).unwrap_or_default()
}

/// The writes that open a stream, and how many bus events they carry: the `retry:` hint,
/// `connected`, then by `resume`: `initial` (fresh), `reset` + `initial` (unusable id), or the
/// missed frames this scope selects. The `reset` data is `{"reason": "lastEventIdNotKept",
/// "lastEventId": N}` for an id outside the kept history, `{"reason": "lastEventIdInvalid",
/// "lastEventId": null}` for an unusable value. `initial` is called only when needed and
/// returns the writes that carry the `initial` frame (shared bytes, not copied here) and any
/// events after it.
pub fn opening_frames(
    retry_ms: u64,
    scope: &Scope,
    resume: Resume,
    last_id: LastEventId,
    initial: impl FnOnce() -> Vec<Bytes>,
) -> (Vec<Bytes>, u64) {
    let mut first = BytesMut::new();
    first.extend_from_slice(format!("retry: {retry_ms}\n\n").as_bytes());
    first.extend_from_slice(&encode_frame(
        None,
        &envelope("connected", &scope.connected_data()),
    ));
    let (rest, sent) = match resume {
        Resume::Fresh => (initial(), 0),
        Resume::Reset => {
            let reason = match last_id {
                LastEventId::Id(_) => "lastEventIdNotKept",
                LastEventId::Absent | LastEventId::Unusable => "lastEventIdInvalid",
            };
            let reset = json!({ "reason": reason, "lastEventId": last_id.id() });
            first.extend_from_slice(&encode_frame(None, &envelope("reset", &reset)));
            (initial(), 0)
        }
        Resume::Resumed(frames) => catch_up(scope, &frames),
    };
    let mut writes = vec![first.freeze()];
    writes.extend(rest.into_iter().filter(|b| !b.is_empty()));
    (writes, sent)
}

/// The frames of `frames` that `scope` selects, as writes, and how many there are: small
/// frames are joined into writes of about [`MAX_BATCH_BYTES`]; a frame that large or larger is
/// a write of its own that shares the frame's bytes (no copy per client).
pub fn catch_up(scope: &Scope, frames: &[Arc<Event>]) -> (Vec<Bytes>, u64) {
    let mut writes = Vec::new();
    let mut buf = BytesMut::new();
    let mut n = 0;
    for f in frames.iter().filter(|f| scope.selects(f)) {
        n += 1;
        if f.sse_frame().len() >= MAX_BATCH_BYTES {
            if !buf.is_empty() {
                writes.push(buf.split().freeze());
            }
            writes.push(f.sse_frame().clone());
            continue;
        }
        buf.extend_from_slice(f.sse_frame());
        if buf.len() >= MAX_BATCH_BYTES {
            writes.push(buf.split().freeze());
        }
    }
    if !buf.is_empty() {
        writes.push(buf.freeze());
    }
    (writes, n)
}

/// `first` plus frames already queued behind it, as one write of at most about
/// [`MAX_BATCH_BYTES`], keeping only what `scope` selects; how many events it carries; and a
/// frame taken from `rx` that did not fit, to start the next write with. A write of one frame
/// shares that frame's bytes with every other client instead of copying them (large webhooks
/// to many stalled clients). Lagging is noticed on the caller's next `recv`.
pub fn batch(
    scope: &Scope,
    first: Arc<Event>,
    rx: &mut broadcast::Receiver<Arc<Event>>,
) -> (Bytes, u64, Option<Arc<Event>>) {
    let mut frames: Vec<Arc<Event>> = Vec::new();
    let mut size = 0;
    let mut next = Some(first);
    let mut leftover = None;
    while let Some(frame) = next.take() {
        if scope.selects(&frame) {
            if !frames.is_empty() && size + frame.sse_frame().len() > MAX_BATCH_BYTES {
                leftover = Some(frame);
                break;
            }
            size += frame.sse_frame().len();
            frames.push(frame);
            if size >= MAX_BATCH_BYTES {
                break;
            }
        }
        next = rx.try_recv().ok();
    }
    let n = frames.len() as u64;
    let bytes = match frames.as_slice() {
        [] => Bytes::new(),
        [one] => one.sse_frame().clone(),
        many => {
            let mut buf = BytesMut::with_capacity(size);
            for f in many {
                buf.extend_from_slice(f.sse_frame());
            }
            buf.freeze()
        }
    };
    (bytes, n, leftover)
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
    fn last_event_id_prefers_header_and_tells_garbage_from_absence() {
        use LastEventId::*;
        assert_eq!(last_event_id(Some(b"42"), Some("7".into())), Id(42));
        assert_eq!(last_event_id(None, Some("7".into())), Id(7));
        assert_eq!(last_event_id(Some(b" 9 "), None), Id(9));
        for garbage in [
            &b"abc"[..],
            b"-1",
            b"18446744073709551616",
            b"1.5",
            b"0x10",
            b"+5",
            b"4 2",
        ] {
            assert_eq!(last_event_id(Some(garbage), None), Unusable, "{garbage:?}");
            assert_eq!(last_event_id(Some(garbage), Some("3".into())), Unusable);
        }
        assert_eq!(last_event_id(None, Some("abc".into())), Unusable);
        assert_eq!(last_event_id(Some(&[0xff]), Some("3".into())), Id(3));
        assert_eq!(last_event_id(Some(&[0xff]), None), Unusable);
        assert_eq!(last_event_id(Some(b""), Some("3".into())), Id(3));
        assert_eq!(last_event_id(Some(b""), None), Absent);
        assert_eq!(last_event_id(None, None), Absent);
        assert_eq!(last_event_id(None, Some(String::new())), Absent);
    }

    /// A frame of at least `size` bytes: a webhook event padded with a text that long.
    fn frame(id: u64, size: usize) -> Arc<Event> {
        crate::test_support::webhook_with_text(id, "message", Some("a"), &"x".repeat(size))
    }

    #[test]
    fn large_frames_are_shared_not_copied_per_client() {
        let frames = vec![
            frame(1, 10),
            frame(2, MAX_BATCH_BYTES * 2),
            frame(3, 10),
            frame(4, 10),
        ];
        let len = |f: &Arc<Event>| f.sse_frame().len();
        assert!(len(&frames[0]) < MAX_BATCH_BYTES / 4, "a small frame");
        let (writes, n) = catch_up(&Scope::Global, &frames);
        assert_eq!(n, 4);
        assert_eq!(writes.len(), 3);
        assert_eq!(writes[0], frames[0].sse_frame());
        assert_eq!(
            writes[1].as_ptr(),
            frames[1].sse_frame().as_ptr(),
            "same bytes"
        );
        assert_eq!(writes[2].len(), len(&frames[2]) + len(&frames[3]));

        let (tx, mut rx) = broadcast::channel(8);
        let six = frame(6, 10);
        tx.send(six.clone()).unwrap();
        let big = frame(5, MAX_BATCH_BYTES * 2);
        let (bytes, n, rest) = batch(&Scope::Global, big.clone(), &mut rx);
        assert_eq!((bytes.as_ptr(), n), (big.sse_frame().as_ptr(), 1));
        assert!(rest.is_none());
        // A small frame followed by a large one: the large one waits for the next write.
        tx.send(frame(8, MAX_BATCH_BYTES * 2)).unwrap();
        let seven = frame(7, 10);
        let (bytes, n, rest) = batch(&Scope::Global, seven.clone(), &mut rx);
        assert_eq!(
            (bytes.len(), n),
            (len(&seven) + len(&six), 2),
            "frames 7 and 6"
        );
        assert_eq!(rest.map(|f| f.id), Some(8));
    }
}
