//! The consumer: reads the fleet's stream in order and feeds this node's bus, histories and
//! status engine, so every SSE client on every node sees every event once, under its stream
//! sequence. Also the replay of a stretch of the stream for a resuming SSE client.
//!
//! Statuses are decided from the stream, not at acceptance: every node applies every
//! `webhook` to its status engine in stream order, and the node that accepted it publishes the
//! `qr`/`status` events it decides then, under message ids taken from the webhook's
//! ([`codec::derived_id`]). A webhook the stream stored once (a re-send that reached another
//! node) is therefore decided once.
//!
//! Per message (stream order):
//! - `webhook`: applied to the status engine (the other nodes drop what it decides; the
//!   accepting node publishes it), then routed;
//! - `status`, from any node: adopted as the instance's decided status (the log's order
//!   decides, so every node ends with the same statuses), then routed; this node's own are
//!   also written to the status bucket;
//! - another node's events go to `sse` sinks only (their own nodes' sinks have them);
//! - an event this node already showed while NATS was unreachable is not routed again, and a
//!   webhook among them is not applied again (the node decided at acceptance then).
//!
//! When the stream is created anew (NATS lost its store; [`super::link`] finds it), the
//! consumer starts over at its first message and the ids start again (`rebase`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use wa_hub_sinks::{Event, Payload};

use super::codec::{self, Incoming};
use super::kv;
use super::node::Fleet;
use super::setup::{ensure, FleetError};
use crate::app::App;

/// Waits for NATS and the stream, loads the statuses from the bucket, then consumes from the
/// end of the stream as it was, forever (re-creating the consumer after failures).
pub async fn run(fleet: Arc<Fleet>, app: Arc<App>) {
    let mut delay = Duration::from_millis(200);
    while fleet.kv().is_none() {
        match ensure(fleet.jetstream(), &fleet.settings).await {
            Ok(store) => {
                fleet.set_kv(store);
                tracing::info!("fleet: connected to NATS");
            }
            Err(e) => {
                tracing::warn!(error = %e, "fleet: stream or bucket not ready; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    let (first, mut next) = loop {
        match stream_state(&fleet).await {
            Ok(s) => break (s.first_sequence, s.last_sequence + 1),
            Err(e) => {
                tracing::warn!(error = %e, "fleet: stream info failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    fleet.consumed_seq.fetch_max(next - 1, Ordering::AcqRel);
    fleet.start_seq.store(next, Ordering::Release);
    if let Some(store) = fleet.kv() {
        let statuses = kv::load_statuses(store).await;
        tracing::info!(
            instances = statuses.len(),
            "fleet: statuses read from the bucket"
        );
        app.update_engine(|engine| {
            for s in &statuses {
                engine.adopt(s.clone());
            }
        });
        warm_up(&fleet, &app, first, next - 1, &statuses).await;
    }
    let mut epoch = fleet.link.epoch();
    let mut seen = *epoch.borrow_and_update();
    loop {
        let now = *epoch.borrow_and_update();
        if now != seen {
            seen = now;
            next = rebase(&fleet, &app).await;
        }
        // After a reconnection the server may be another one of the cluster.
        fleet.refresh_max_payload();
        match consume_from(&fleet, &app, next, &mut epoch).await {
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, next, "fleet: consumer stopped; re-creating"),
        }
        fleet.consuming.store(false, Ordering::Relaxed);
        next = fleet.consumed_seq.load(Ordering::Relaxed).max(next - 1) + 1;
        if *epoch.borrow() == seen {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Most messages [`warm_up`] reads back from the stream's tail.
pub const WARM_UP_MAX: u64 = 5000;

/// At start: reads the stream's last messages, up to `last` (at most `webhook.history` and
/// [`WARM_UP_MAX`] of them, none before `first`), into the webhook and API-log histories and
/// through the status engine (webhooks applied with their outcomes dropped; then the bucket's
/// `statuses` adopted again, and the tail's last status event of each instance over them), and
/// routes none of them. So `initial`, `/api/events` and `instanceMeta` (lifecycle, last
/// event, QR) hold the recent past at once instead of only what arrives after the start. Ids
/// up to `last` then count as before this process's live events (the bus and the SSE hub start
/// after `last`). A failure (or over 10 s) is logged and leaves the histories empty.
async fn warm_up(
    fleet: &Fleet,
    app: &App,
    first: u64,
    last: u64,
    statuses: &[wa_hub_sinks::InstanceStatus],
) {
    let n = (app.config.raw.webhook.history.get() as u64).min(WARM_UP_MAX);
    let from = last.saturating_sub(n.saturating_sub(1)).max(first).max(1);
    if last == 0 || from > last {
        return;
    }
    let events = match tokio::time::timeout(Duration::from_secs(10), read_range(fleet, from, last))
        .await
    {
        Ok(Ok(events)) => events,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "fleet: the stream's tail not read; histories start empty");
            return;
        }
        Err(_) => {
            tracing::warn!("fleet: the stream's tail not read within 10 s; histories start empty");
            return;
        }
    };
    app.update_engine(|engine| {
        // The last status of each instance in the tail.
        let mut latest = std::collections::HashMap::new();
        for (_, at, payload) in &events {
            match payload {
                Payload::Webhook(w) => {
                    let _ = crate::webhook::decide(engine, w, *at);
                }
                Payload::Status(s) => {
                    latest.insert(s.instance_id.clone(), s);
                }
                _ => {}
            }
        }
        // Decided statuses are not what the tail's webhooks made of them: the bucket's, then
        // the tail's own status events over them (the bucket may lag behind the stream). In
        // the same lock, so no reader sees anything else.
        for s in statuses {
            engine.adopt(s.clone());
        }
        for s in latest.into_values() {
            engine.adopt(s.clone());
        }
    });
    let n = events.len();
    for (seq, at, payload) in events {
        let history = match payload {
            Payload::Webhook(_) => &app.webhooks,
            Payload::ApiLog(_) => &app.api_logs,
            _ => continue,
        };
        history.push(Arc::new(Event::replayed(seq, at, payload)));
    }
    app.bus.rebase(app.bus.last_id().max(last));
    if let Some(hub) = &app.sse {
        hub.begin_after(last);
    }
    tracing::info!(
        events = n,
        from,
        last,
        "fleet: recent events read back from the stream"
    );
}

/// The stream was created anew (NATS lost its store): its sequence numbers started again.
/// Starts the ids over at the new stream's first message: the consumer's position, the bus,
/// the SSE hub (a client holding a higher id gets a `reset`; live SSE streams end, so their
/// clients come back and get one), and writes the statuses this node decided to the new
/// bucket. Returns the sequence to consume from.
async fn rebase(fleet: &Fleet, app: &App) -> u64 {
    let first = loop {
        match stream_state(fleet).await {
            Ok(s) => break s.first_sequence.max(1),
            Err(e) => {
                tracing::warn!(error = %e, "fleet: stream info failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let had = fleet.consumed_seq.load(Ordering::Acquire);
    tracing::warn!(
        consumed = had,
        from = first,
        "fleet: the stream was created anew; ids start again (SSE clients holding higher ids get a reset)"
    );
    fleet.consumed_seq.store(first - 1, Ordering::Release);
    fleet.start_seq.store(first, Ordering::Release);
    app.bus.rebase(first - 1);
    if let Some(hub) = &app.sse {
        hub.rebase(first - 1);
    }
    fleet.link.announce_rebase();
    if let Some(store) = fleet.kv() {
        let me = fleet.node_id();
        let mine: Vec<_> = app
            .read_engine(|e| e.statuses())
            .into_iter()
            .filter(|s| s.node.as_deref().is_none_or(|n| n == me))
            .collect();
        for s in mine {
            let id = s.instance_id.clone();
            let msg = codec::encode(
                &fleet.settings.raw.subject_prefix,
                fleet.node_id(),
                &Payload::Status(s),
                None,
            );
            kv::put_status(store, &id, msg.body).await;
        }
    }
    first
}

/// The fleet stream's state now (first and last sequence kept).
pub(crate) async fn stream_state(
    fleet: &Fleet,
) -> Result<async_nats::jetstream::stream::State, FleetError> {
    let mut stream = fleet
        .jetstream()
        .get_stream(&fleet.settings.raw.stream)
        .await
        .map_err(|e| FleetError::JetStream(e.to_string()))?;
    let info = stream
        .info()
        .await
        .map_err(|e| FleetError::JetStream(e.to_string()))?;
    Ok(info.state.clone())
}

async fn ordered_from(fleet: &Fleet, start: u64) -> Result<pull::Ordered, FleetError> {
    let js_err = |e: &dyn std::fmt::Display| FleetError::JetStream(e.to_string());
    let stream = fleet
        .jetstream()
        .get_stream(&fleet.settings.raw.stream)
        .await
        .map_err(|e| js_err(&e))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start.max(1),
            },
            ..Default::default()
        })
        .await
        .map_err(|e| js_err(&e))?;
    consumer.messages().await.map_err(|e| js_err(&e))
}

async fn consume_from(
    fleet: &Fleet,
    app: &App,
    start: u64,
    epoch: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<(), FleetError> {
    let mut connections = fleet.connections.clone();
    connections.mark_unchanged();
    let mut messages = ordered_from(fleet, start).await?;
    fleet.consuming.store(true, Ordering::Relaxed);
    loop {
        let msg = tokio::select! {
            msg = messages.next() => msg,
            // A new connection: the server may have lost the ephemeral consumer; start over.
            _ = connections.changed() => return Ok(()),
            // The stream was created anew: start over from its first message.
            _ = epoch.changed() => return Ok(()),
        };
        let Some(msg) = msg else { break };
        let msg = msg.map_err(|e| FleetError::JetStream(e.to_string()))?;
        let Ok(info) = msg.info() else { continue };
        let seq = info.stream_sequence;
        let at = stored_at(info.published.unix_timestamp_nanos());
        fleet
            .consumer_pending
            .store(info.pending, Ordering::Relaxed);
        match decode_live(fleet, &msg) {
            Ok(incoming) => {
                let body = msg.payload.clone();
                apply(fleet, app, seq, at, incoming, body).await;
            }
            Err(e) => {
                fleet.skipped.fetch_add(1, Ordering::Relaxed);
                if fleet.skip_log.allow() {
                    tracing::warn!(seq, subject = %msg.subject, error = %e, "fleet: message is not a fleet event; skipped (this line at most every 10 s)");
                }
            }
        }
        fleet.consumed_seq.store(seq, Ordering::Release);
    }
    Ok(())
}

/// A stored message's payload, once its seal ([`codec::Sealer`], made within the duplicate
/// window of when the stream stored the message) and its format check out.
fn decode(
    fleet: &Fleet,
    msg: &async_nats::jetstream::Message,
) -> Result<Incoming, codec::DecodeError> {
    let stored_ms = msg
        .info()
        .map(|i| i64::try_from(i.published.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
        .unwrap_or(0);
    fleet.sealer.check(
        msg.headers.as_ref(),
        &msg.payload,
        stored_ms,
        fleet.settings.duplicate_window,
    )?;
    codec::decode(msg.headers.as_ref(), &msg.payload)
}

/// [`decode`] for live consumption: also refuses, when messages are sealed, a `Wahub-Msg-Id`
/// consumed within the duplicate window (a captured message published again under another
/// `Nats-Msg-Id`, which the stream's own de-duplication does not catch).
fn decode_live(
    fleet: &Fleet,
    msg: &async_nats::jetstream::Message,
) -> Result<Incoming, codec::DecodeError> {
    let incoming = decode(fleet, msg)?;
    if fleet.sealer.enabled()
        && fleet
            .consumed_ids
            .is_duplicate(incoming.msg_id.as_bytes(), std::time::Instant::now())
    {
        return Err(codec::DecodeError::Replayed);
    }
    Ok(incoming)
}

fn stored_at(nanos: i128) -> DateTime<Utc> {
    DateTime::from_timestamp_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
}

async fn apply(
    fleet: &Fleet,
    app: &App,
    seq: u64,
    at: DateTime<Utc>,
    incoming: Incoming,
    body: bytes::Bytes,
) {
    let Incoming {
        node,
        msg_id,
        payload,
    } = incoming;
    let own = node == fleet.node_id();
    let own_status = match (&payload, own) {
        (Payload::Status(s), true) => Some(s.instance_id.clone()),
        _ => None,
    };
    // An event this node showed while NATS was unreachable: the engine saw it then.
    let shown = own && fleet.take_shown_locally(&msg_id);
    // What this node decides from a webhook it accepted, published after the webhook.
    let mut derived = Vec::new();
    let mut update = |engine: &mut crate::status::StatusEngine, payload: &Payload| match payload {
        Payload::Webhook(w) if !shown => {
            let decided = crate::webhook::decide(engine, w, at);
            if own {
                derived = decided;
            }
        }
        Payload::Status(s) => engine.adopt(s.clone()),
        _ => {}
    };
    if shown {
        app.update_engine(|engine| update(engine, &payload));
    } else {
        app.publish_consumed(seq, at, payload, own, update);
    }
    for p in derived {
        let id = codec::derived_id(&msg_id, p.kind().as_str());
        app.publish_as(p, Some(id));
    }
    if let (Some(id), Some(store)) = (own_status, fleet.kv()) {
        kv::put_status(store, &id, body).await;
    }
}

/// Events after `after` up to `up_to` (stream sequences), read back from the stream for a
/// resuming SSE client. `Ok(None)` when the stream no longer keeps `after + 1` or the gap is
/// over `max` events: the client must reset.
///
/// # Errors
/// [`FleetError::JetStream`] when the stream cannot be read (NATS unreachable), or it took
/// over 5 s.
pub async fn replay(
    fleet: &Fleet,
    after: u64,
    up_to: u64,
    max: u64,
) -> Result<Option<Vec<Arc<Event>>>, FleetError> {
    if up_to <= after {
        return Ok(Some(Vec::new()));
    }
    if up_to - after > max {
        return Ok(None);
    }
    let first = stream_state(fleet).await?.first_sequence;
    if after + 1 < first {
        return Ok(None);
    }
    let read = async {
        let stored = read_range(fleet, after + 1, up_to).await?;
        Ok(stored
            .into_iter()
            .map(|(seq, at, payload)| Arc::new(Event::replayed(seq, at, payload)))
            .collect())
    };
    match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(r) => r.map(Some),
        Err(_) => Err(FleetError::JetStream("replay took over 5 s".into())),
    }
}

/// The stream's messages `from..=up_to` that decode (others are skipped, as the consumer skips
/// them): sequence, storage time and payload, in order. Used by the warm-up at start and by
/// the SSE resume replay; the caller bounds the time it takes.
///
/// # Errors
/// [`FleetError::JetStream`] when the stream cannot be read.
async fn read_range(
    fleet: &Fleet,
    from: u64,
    up_to: u64,
) -> Result<Vec<(u64, DateTime<Utc>, Payload)>, FleetError> {
    let mut messages = ordered_from(fleet, from).await?;
    let mut out = Vec::new();
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(|e| FleetError::JetStream(e.to_string()))?;
        let Ok(info) = msg.info() else { continue };
        let seq = info.stream_sequence;
        if seq > up_to {
            break;
        }
        if let Ok(incoming) = decode(fleet, &msg) {
            let at = stored_at(info.published.unix_timestamp_nanos());
            out.push((seq, at, incoming.payload));
        }
        if seq >= up_to {
            break;
        }
    }
    Ok(out)
}
