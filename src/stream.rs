//! `GET /api/stream?instanceId=&scope=instance|global`: one SSE client, driven from Pingora's
//! `request_filter` (DESIGN.md "Engineering notes on Pingora 0.9").
//!
//! Order on connect (the dashboard's `useSSE` semantics): `connected` `{instanceId, scope}`,
//! then `initial` `{webhookEvents, apiLogs, instanceMeta}` (filtered to the instance unless the
//! scope is global), then live `webhook`, `apiLog`, `qr` and `status` events. Beyond the
//! dashboard: `id:` lines, a `retry:` hint, resume after `Last-Event-ID` (or the `lastEventId`
//! query parameter) with exactly the missed events, a `reset` event when that id is no longer
//! kept, heartbeat comments, a client limit (503), dropping clients that fall behind, and a
//! clean close on shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use wa_hub_sinks::sse::{comment, encode_frame, Resume, SseFrame, SseHub, Subscription};
use wa_hub_sinks::{ApiLog, Event, Payload, WebhookRecord};

use crate::app::App;
use crate::local::LocalResponse;
use crate::routes::query_param;

/// Most bytes of queued frames written to a client in one write.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Which events a client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Events of one instance only.
    Instance(String),
    /// Everything.
    Global,
}

impl Scope {
    /// From the query: `scope=global` → global; `scope=instance` needs `instanceId`; no scope →
    /// instance when `instanceId` is given, else global.
    ///
    /// # Errors
    /// A message for a bad `scope` value or `scope=instance` without `instanceId`.
    pub fn from_query(query: Option<&str>) -> Result<Self, &'static str> {
        let id = query_param(query, "instanceId").filter(|s| !s.is_empty());
        match (query_param(query, "scope").as_deref(), id) {
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

    fn connected_data(&self) -> Value {
        match self {
            Scope::Global => json!({ "instanceId": null, "scope": "global" }),
            Scope::Instance(id) => json!({ "instanceId": id, "scope": "instance" }),
        }
    }
}

/// The `Last-Event-ID` of a reconnect (header first, then `lastEventId` in the query). A value
/// that is not a decimal id is ignored, as if absent.
pub fn last_event_id(header: Option<&[u8]>, query: Option<&str>) -> Option<u64> {
    header
        .and_then(|h| std::str::from_utf8(h).ok())
        .map(|s| s.trim().to_owned())
        .or_else(|| query_param(query, "lastEventId"))
        .and_then(|s| s.parse().ok())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Initial<'a> {
    webhook_events: Vec<&'a WebhookRecord>,
    api_logs: Vec<&'a ApiLog>,
    instance_meta: Value,
}

fn envelope(kind: &str, data: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(&json!({ "type": kind, "data": data })).unwrap_or_default()
}

/// The `initial` event: histories up to `snapshot_id` that the SSE sink's filter and the
/// client's scope select, newest first, at most `initial_limit` of each.
fn initial_frame(app: &App, hub: &SseHub, scope: &Scope, snapshot_id: u64) -> Bytes {
    let limit = hub.config().initial_limit;
    let keep = |e: &Event| e.id <= snapshot_id && hub.selects(e) && scope.selects(e);
    let webhooks = app.webhooks.newest(limit, keep);
    let logs = app.api_logs.newest(limit, keep);
    let only = match scope {
        Scope::Instance(id) => Some(id.as_str()),
        Scope::Global => None,
    };
    let initial = Initial {
        webhook_events: webhooks
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Webhook(w) => Some(w),
                _ => None,
            })
            .collect(),
        api_logs: logs
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::ApiLog(l) => Some(l),
                _ => None,
            })
            .collect(),
        instance_meta: app.engine().instance_meta(only),
    };
    encode_frame(Some(snapshot_id), &envelope("initial", &initial))
}

/// What the loop does next.
enum Step {
    Write(Bytes, u64),
    Heartbeat,
    Stop(&'static str),
}

/// Serves one SSE client until it leaves, falls behind, or the sidecar shuts down.
/// The caller has checked the client token. `cors_origin` is the allowed `Origin` to echo, if
/// any. Returns a refusal to write as JSON (bad scope, client limit), or `None` when the stream
/// ran.
///
/// # Errors
/// Only Pingora errors writing the response header.
pub async fn serve(
    app: &App,
    hub: &Arc<SseHub>,
    session: &mut Session,
    query: Option<&str>,
    cors_origin: Option<&str>,
) -> pingora::Result<Option<LocalResponse>> {
    let scope = match Scope::from_query(query) {
        Ok(s) => s,
        Err(msg) => return Ok(Some(LocalResponse::error(400, "Bad request", msg))),
    };
    let Some(_slot) = hub.join() else {
        tracing::warn!(
            max = hub.config().max_clients.get(),
            "SSE client refused: limit reached"
        );
        return Ok(Some(
            LocalResponse::error(503, "Too many clients", "the SSE client limit is reached")
                .with_header("retry-after", "5"),
        ));
    };
    let last_id = last_event_id(
        session
            .req_header()
            .headers
            .get("last-event-id")
            .map(|v| v.as_bytes()),
        query,
    );
    let cfg = hub.config().clone();
    let sub = hub.subscribe(last_id);

    let mut resp = ResponseHeader::build(200, Some(6))?;
    resp.insert_header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")?;
    resp.insert_header(header::CACHE_CONTROL, "no-cache, no-store, no-transform")?;
    resp.insert_header("x-accel-buffering", "no")?;
    if let Some(origin) = cors_origin {
        resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
        resp.insert_header(header::VARY, "Origin")?;
    }
    if !session.is_http2() {
        resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
    }
    session.set_write_timeout(Some(Duration::from_millis(cfg.write_timeout_ms.get())));
    session.write_response_header(Box::new(resp), false).await?;

    let Subscription {
        snapshot_id,
        resume,
        mut rx,
    } = sub;
    let mut first = BytesMut::new();
    first.extend_from_slice(format!("retry: {}\n\n", cfg.retry_ms.get()).as_bytes());
    first.extend_from_slice(&encode_frame(
        None,
        &envelope("connected", &scope.connected_data()),
    ));
    let mut sent = 0u64;
    match resume {
        Resume::Fresh => first.extend_from_slice(&initial_frame(app, hub, &scope, snapshot_id)),
        Resume::Reset => {
            let reset = json!({ "reason": "lastEventIdNotKept", "lastEventId": last_id });
            first.extend_from_slice(&encode_frame(None, &envelope("reset", &reset)));
            first.extend_from_slice(&initial_frame(app, hub, &scope, snapshot_id));
        }
        Resume::Resumed(frames) => {
            for f in frames.iter().filter(|f| scope.selects(&f.event)) {
                first.extend_from_slice(&f.bytes);
                sent += 1;
            }
        }
    }
    if let Err(e) = write(session, first.freeze()).await {
        if e.etype == pingora::ErrorType::WriteTimedout {
            hub.stats
                .clients_dropped_slow
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("SSE client stopped reading during its first events; dropped");
        }
        // The stream cannot be resumed mid-frame: close the connection.
        session.set_keepalive(None);
        session.shutdown().await;
        return Ok(None);
    }
    hub.stats.events_sent.fetch_add(sent, Ordering::Relaxed);

    let mut shutdown = app.shutdown_watch();
    let heartbeat = Duration::from_millis(cfg.heartbeat_ms.get());
    let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let reason = loop {
        let step = tokio::select! {
            biased;
            _ = shutdown.changed() => Step::Stop("shutdown"),
            _ = session.read_body_or_idle(true) => Step::Stop("client gone"),
            msg = rx.recv() => match msg {
                Ok(frame) => batch(&scope, frame, &mut rx),
                Err(RecvError::Lagged(_)) => {
                    hub.stats.clients_dropped_slow.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backlog = cfg.client_backlog.get(), "SSE client fell behind; dropped");
                    Step::Stop("slow")
                }
                Err(RecvError::Closed) => Step::Stop("hub closed"),
            },
            _ = hb.tick() => Step::Heartbeat,
        };
        let (bytes, n) = match step {
            Step::Write(b, _) if b.is_empty() => continue,
            Step::Write(b, n) => (b, n),
            Step::Heartbeat => (comment("heartbeat"), 0),
            Step::Stop(reason) => break reason,
        };
        if let Err(e) = write(session, bytes).await {
            if e.etype == pingora::ErrorType::WriteTimedout {
                hub.stats
                    .clients_dropped_slow
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("SSE client stopped reading; dropped");
            }
            break "write failed";
        }
        hub.stats.events_sent.fetch_add(n, Ordering::Relaxed);
        hb.reset();
    };
    tracing::debug!(reason, "SSE stream ended");
    session.set_keepalive(None);
    if reason == "shutdown" {
        // End the chunked body so the client sees a clean end of stream.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            session.write_response_body(None, true),
        )
        .await;
    }
    Ok(None)
}

/// The frame, plus any already-queued frames, as one write, keeping only what `scope` selects.
fn batch(
    scope: &Scope,
    first: Arc<SseFrame>,
    rx: &mut tokio::sync::broadcast::Receiver<Arc<SseFrame>>,
) -> Step {
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
        // Lagging is noticed on the next `recv`.
        next = rx.try_recv().ok();
    }
    Step::Write(buf.freeze(), n)
}

async fn write(session: &mut Session, bytes: Bytes) -> pingora::Result<()> {
    session.write_response_body(Some(bytes), false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_rules() {
        assert_eq!(Scope::from_query(None), Ok(Scope::Global));
        assert_eq!(
            Scope::from_query(Some("instanceId=a")),
            Ok(Scope::Instance("a".into()))
        );
        assert_eq!(
            Scope::from_query(Some("instanceId=a&scope=global")),
            Ok(Scope::Global)
        );
        assert!(Scope::from_query(Some("scope=instance")).is_err());
        assert!(Scope::from_query(Some("scope=weird&instanceId=a")).is_err());
    }

    #[test]
    fn last_event_id_prefers_header_and_ignores_garbage() {
        assert_eq!(last_event_id(Some(b"42"), Some("lastEventId=7")), Some(42));
        assert_eq!(last_event_id(None, Some("lastEventId=7")), Some(7));
        assert_eq!(last_event_id(Some(b"abc"), None), None);
        assert_eq!(last_event_id(Some(&[0xff]), Some("lastEventId=3")), Some(3));
        assert_eq!(last_event_id(None, None), None);
    }
}
