//! `GET /api/stream?instanceId=&scope=instance|global`: one SSE client, in four steps:
//! [`open`] on Pingora's session (scope, client slot, response header), then, on the
//! connection taken out of that session on HTTP/1 ([`out`]), the opening frames, the pump of
//! live events, and the close (DESIGN.md "Engineering notes on Pingora 0.9"). What a client is
//! sent is decided Pingora-free beside the hub, in `wa_hub_sinks::sse`.
//!
//! Order on connect (the dashboard's `useSSE` semantics): `connected` `{instanceId, scope}`,
//! then `initial` `{webhookEvents, apiLogs, instanceMeta}` (filtered to the instance unless the
//! scope is global), then live `webhook`, `apiLog`, `qr` and `status` events. Beyond the
//! dashboard: `id:` lines, a `retry:` hint, resume after `Last-Event-ID` (or the `lastEventId`
//! query parameter) with exactly the missed events, a `reset` event when that id is no longer
//! kept, heartbeat comments, a client limit (503), dropping clients that fall behind, and a
//! clean close on shutdown.

mod out;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast::error::RecvError;
use wa_hub_sinks::envelope::iso_timestamp;
use wa_hub_sinks::sse::{
    batch, catch_up, comment, encode_frame, initial_json, last_event_id, opening_frames,
    ClientGuard, LastEventId, Scope, SseHub, Subscription,
};
use wa_hub_sinks::{Event, Payload};

use crate::app::App;
use crate::framing;
use crate::rejection::Rejection;
use crate::routes::query_param;
use out::{Out, WriteError};

/// An SSE client whose response header is written: what the later steps need.
struct Client {
    scope: Scope,
    last_id: LastEventId,
    sub: Subscription,
    /// Live frames with ids up to this one were sent already (fleet resume from the stream).
    skip_through: u64,
    /// `Transfer-Encoding: chunked` was announced (HTTP/1.1).
    chunked: bool,
    _slot: ClientGuard,
}

/// Serves one SSE client until it leaves, falls behind, or the sidecar shuts down. The caller
/// has checked the client token. `cors_origin` is the allowed `Origin` to echo, if any.
///
/// On HTTP/1 the connection is taken out of Pingora's session once the header is written
/// ([`Out::detach`]) and served by a task of its own, tracked in [`App::requests`] (so
/// shutdown waits for its clean end); this returns at once. On HTTP/2 the stream is served
/// here, on Pingora's session, and this returns when it ends.
///
/// # Errors
/// A [`Rejection`] before anything is written (bad scope 400, client limit 503); once the
/// stream started, failures end it and are logged here.
pub async fn serve(
    app: &Arc<App>,
    hub: &Arc<SseHub>,
    session: &mut Session,
    query: Option<&str>,
    cors_origin: Option<&str>,
) -> Result<(), Rejection> {
    let Some(client) = open(app, hub, session, query, cors_origin).await? else {
        return Ok(());
    };
    if session.req_header().method == http::Method::HEAD {
        return Ok(());
    }
    let write_timeout = Duration::from_millis(hub.config().write_timeout_ms.get());
    match Out::detach(session, client.chunked, write_timeout) {
        Some(out) => {
            let (app, hub) = (app.clone(), hub.clone());
            app.requests
                .clone()
                .spawn(async move { run(&app, &hub, out, client).await });
        }
        None => run(app, hub, Out::Session(session), client).await,
    }
    Ok(())
}

/// The opening frames, the pump of live events and the close.
async fn run(app: &App, hub: &SseHub, mut out: Out<'_>, client: Client) {
    let Client {
        scope,
        last_id,
        sub,
        skip_through,
        chunked: _,
        _slot,
    } = client;
    let Subscription {
        snapshot_id,
        resume,
        mut rx,
    } = sub;
    let (writes, sent) =
        opening_frames(hub.config().retry_ms.get(), &scope, resume, last_id, || {
            initial_writes(app, hub, &scope, snapshot_id)
        });
    for bytes in writes {
        if let Err(e) = out.write(bytes).await {
            if e == WriteError::TimedOut {
                hub.stats
                    .clients_dropped_slow
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!("SSE client stopped reading during its first events; dropped");
            }
            // The stream cannot be resumed mid-frame: close the connection.
            out.abort();
            return;
        }
    }
    hub.stats.events_sent.fetch_add(sent, Ordering::Relaxed);
    let reason = pump(app, hub, &mut out, &scope, &mut rx, skip_through).await;
    close(&mut out, reason).await;
}

/// Checks the scope, takes a client slot, subscribes and writes the response header.
/// `Ok(None)` when the header could not be written (the client is gone).
async fn open(
    app: &App,
    hub: &Arc<SseHub>,
    session: &mut Session,
    query: Option<&str>,
    cors_origin: Option<&str>,
) -> Result<Option<Client>, Rejection> {
    let scope = Scope::new(
        query_param(query, "scope").as_deref(),
        query_param(query, "instanceId"),
    )
    .map_err(Rejection::BadRequest)?;
    let Some(slot) = hub.join() else {
        tracing::warn!(
            max = hub.config().max_clients.get(),
            "SSE client refused: limit reached"
        );
        return Err(Rejection::TooManyClients);
    };
    let last_id = last_event_id(
        session
            .req_header()
            .headers
            .get("last-event-id")
            .map(|v| v.as_bytes()),
        query_param(query, "lastEventId"),
    );
    let (sub, skip_through) = match &app.fleet {
        Some(fleet) => crate::fleet::resume::subscribe(fleet, hub, last_id).await,
        None => (hub.subscribe(last_id), 0),
    };
    let write_timeout = Duration::from_millis(hub.config().write_timeout_ms.get());
    match write_header(session, cors_origin, write_timeout).await {
        Ok(chunked) => Ok(Some(Client {
            scope,
            last_id,
            sub,
            skip_through,
            chunked,
            _slot: slot,
        })),
        Err(e) => {
            tracing::debug!(error = %e, "SSE response header not written");
            Ok(None)
        }
    }
}

/// Writes the response header; `Ok(true)` when it announced chunked framing.
async fn write_header(
    session: &mut Session,
    cors_origin: Option<&str>,
    write_timeout: Duration,
) -> pingora::Result<bool> {
    let mut resp = ResponseHeader::build(200, Some(6))?;
    resp.insert_header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")?;
    resp.insert_header(header::CACHE_CONTROL, "no-cache, no-store, no-transform")?;
    resp.insert_header("x-accel-buffering", "no")?;
    if let Some(origin) = cors_origin {
        resp.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
        resp.insert_header(header::VARY, "Origin")?;
    }
    let head = session.req_header().method == http::Method::HEAD;
    let mut chunked = false;
    if !session.is_http2() && !head {
        if framing::chunked_allowed(session.req_header()) {
            resp.insert_header(header::TRANSFER_ENCODING, "chunked")?;
            chunked = true;
        } else {
            // HTTP/1.0: the stream ends when the connection closes (`Connection: close`).
            session.set_keepalive(None);
        }
    }
    session.set_write_timeout(Some(write_timeout));
    session.write_response_header(Box::new(resp), head).await?;
    Ok(chunked)
}

/// The writes that give a fresh client its state up to `snapshot_id`: the shared `initial`
/// frame of its scope ([`wa_hub_sinks::sse::InitialCache`]), built here when none is recent,
/// then the events between the snapshot it covers and `snapshot_id`.
fn initial_writes(app: &App, hub: &SseHub, scope: &Scope, snapshot_id: u64) -> Vec<Bytes> {
    let cache = hub.initial_cache();
    let build = || initial_frame(app, hub, scope, snapshot_id);
    let (covers, initial) = cache.get(scope, snapshot_id, Instant::now(), build);
    if covers == snapshot_id {
        return vec![initial];
    }
    match hub.frames_between(covers, snapshot_id) {
        Some(frames) => {
            let (missed, n) = catch_up(scope, &frames);
            hub.stats.events_sent.fetch_add(n, Ordering::Relaxed);
            std::iter::once(initial).chain(missed).collect()
        }
        None => {
            // The events since that snapshot are no longer kept: a snapshot of our own.
            cache.forget(scope, covers);
            vec![initial_frame(app, hub, scope, snapshot_id)]
        }
    }
}

/// The `initial` event: histories up to `snapshot_id` that the SSE sink's filter and the
/// client's scope select, newest first, at most `initial_limit` of each and
/// `initial_max_bytes` in all, and the dashboard's `instanceMeta`.
fn initial_frame(app: &App, hub: &SseHub, scope: &Scope, snapshot_id: u64) -> Bytes {
    let limit = hub.config().initial_limit;
    let keep = |e: &Event| e.id <= snapshot_id && hub.selects(e) && scope.selects(e);
    let webhooks = app.webhooks.newest(limit, keep);
    let logs = app.api_logs.newest(limit, keep);
    let webhooks: Vec<_> = webhooks
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::Webhook(w) => Some((e.id, w)),
            _ => None,
        })
        .collect();
    let logs: Vec<_> = logs
        .iter()
        .filter_map(|e| match &e.payload {
            Payload::ApiLog(l) => Some((e.id, l)),
            _ => None,
        })
        .collect();
    let json = initial_json(
        &webhooks,
        &logs,
        instance_meta(app, scope.instance()),
        hub.config().initial_max_bytes.get(),
    );
    encode_frame(Some(snapshot_id), &json)
}

/// The dashboard's `instanceMeta` map: per instance `waStatus`, `lifecycleRank`,
/// `lastEventAt`, `lastQrBase64`, `qrError`. `only` restricts it to one instance.
fn instance_meta(app: &App, only: Option<&str>) -> Value {
    app.read_engine(|engine| {
        let mut map = Map::new();
        for v in engine.views().filter(|v| only.is_none_or(|o| o == v.id)) {
            map.insert(
                v.id.to_owned(),
                json!({
                    "waStatus": v.lifecycle.map(|(w, _)| w),
                    "lifecycleRank": v.lifecycle.map(|(_, r)| r),
                    "lastEventAt": v.last_event_at.map(iso_timestamp),
                    "lastQrBase64": v.qr,
                    "qrError": v.qr_error,
                }),
            );
        }
        Value::Object(map)
    })
}

/// Why the pump stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Shutdown,
    ClientGone,
    Slow,
    HubClosed,
    WriteFailed,
}

/// Writes live events (batched) and heartbeats until the client leaves, falls behind, a
/// write fails or times out (`write_timeout_ms`), or the sidecar shuts down. A heartbeat goes
/// out when nothing was written for `heartbeat_ms`; writes do not touch the timer (at 10,000
/// clients a reset per write and client was a timer-wheel lock per client per event).
async fn pump(
    app: &App,
    hub: &SseHub,
    out: &mut Out<'_>,
    scope: &Scope,
    rx: &mut tokio::sync::broadcast::Receiver<Arc<wa_hub_sinks::Event>>,
    skip_through: u64,
) -> Ended {
    let mut shutdown = app.shutdown_watch();
    // Fleet mode: the ids started again (the stream was created anew); the client comes back
    // with its old id and gets a reset.
    let mut rebased = app.fleet.as_ref().map(|f| f.link.rebased());
    let heartbeat = Duration::from_millis(hub.config().heartbeat_ms.get());
    let mut last_write = tokio::time::Instant::now();
    let hb = tokio::time::sleep(heartbeat);
    tokio::pin!(hb);
    // A frame taken from `rx` that did not fit in the last write.
    let mut carried: Option<Arc<wa_hub_sinks::Event>> = None;
    loop {
        let (bytes, n, rest) = match carried.take() {
            Some(frame) => batch(scope, frame, rx),
            None => tokio::select! {
                biased;
                _ = shutdown.changed() => return Ended::Shutdown,
                _ = changed(&mut rebased) => return Ended::HubClosed,
                _ = out.gone() => return Ended::ClientGone,
                msg = rx.recv() => match msg {
                    // Fleet resume: frames the replay from the stream already carried.
                    Ok(frame) if skip_through > 0 && frame.id <= skip_through => continue,
                    Ok(frame) => batch(scope, frame, rx),
                    Err(RecvError::Lagged(_)) => {
                        hub.stats.clients_dropped_slow.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(backlog = hub.config().client_backlog.get(), "SSE client fell behind; dropped");
                        return Ended::Slow;
                    }
                    Err(RecvError::Closed) => return Ended::HubClosed,
                },
                _ = &mut hb => {
                    let due = last_write + heartbeat;
                    if due > tokio::time::Instant::now() {
                        hb.as_mut().reset(due);
                        continue;
                    }
                    hb.as_mut().reset(tokio::time::Instant::now() + heartbeat);
                    (comment("heartbeat"), 0, None)
                }
            },
        };
        carried = rest;
        if bytes.is_empty() {
            continue;
        }
        if let Err(ended) = write_watching_lag(hub, out, bytes, rx).await {
            return ended;
        }
        hub.stats.events_sent.fetch_add(n, Ordering::Relaxed);
        last_write = tokio::time::Instant::now();
    }
}

/// How often a blocked write looks at how far its client fell behind.
const LAG_CHECK: Duration = Duration::from_millis(100);

/// Writes `bytes` to the client. While the write blocks (the client is not reading), the
/// client's backlog in the hub is looked at every [`LAG_CHECK`]: more than `client_backlog`
/// events behind drops it at once (README "Server-Sent Events"), not only when the write
/// times out (`write_timeout_ms`). A write that completes at once sets no timer. Each drop is
/// counted and logged here.
async fn write_watching_lag(
    hub: &SseHub,
    out: &mut Out<'_>,
    bytes: Bytes,
    rx: &tokio::sync::broadcast::Receiver<Arc<wa_hub_sinks::Event>>,
) -> Result<(), Ended> {
    let backlog = hub.config().client_backlog.get();
    let write = out.write(bytes);
    tokio::pin!(write);
    // Most writes complete at once: no timer for them.
    if let Some(written) = futures::FutureExt::now_or_never(&mut write) {
        return written_or_dropped(hub, written);
    }
    let mut check = tokio::time::interval(LAG_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            written = &mut write => return written_or_dropped(hub, written),
            _ = check.tick() => {
                if rx.len() > backlog {
                    hub.stats.clients_dropped_slow.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(backlog, "SSE client fell behind; dropped");
                    return Err(Ended::Slow);
                }
            }
        }
    }
}

/// A finished write's outcome: a write that timed out is a slow client's drop, counted and
/// logged here.
fn written_or_dropped(hub: &SseHub, written: Result<(), WriteError>) -> Result<(), Ended> {
    match written {
        Ok(()) => Ok(()),
        Err(WriteError::TimedOut) => {
            hub.stats
                .clients_dropped_slow
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!("SSE client stopped reading; dropped");
            Err(Ended::WriteFailed)
        }
        Err(WriteError::Failed) => Err(Ended::WriteFailed),
    }
}

/// Resolves when `rx` (if any) sees a new value; never without one.
async fn changed(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    if let Some(rx) = rx {
        if rx.changed().await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

/// Ends the stream: the connection is not reused. On shutdown (or when the hub closes) the
/// body is ended, within 1 s, so the client sees a clean end of stream; otherwise, and when
/// that fails, the connection is aborted ([`Out::abort`]): after a stop in reading, a lag or a
/// failed write, what is queued for the client is discarded at once.
async fn close(out: &mut Out<'_>, reason: Ended) {
    tracing::debug!(?reason, "SSE stream ended");
    if matches!(reason, Ended::Shutdown | Ended::HubClosed) && out.end().await {
        return;
    }
    out.abort();
}
