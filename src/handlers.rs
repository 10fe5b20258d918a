//! Handlers of the sidecar's own routes (everything that is not proxied, streamed or the
//! webhook). Each takes plain inputs and returns a [`LocalResponse`] or a [`Rejection`], so
//! they are testable without Pingora; the proxy writes the answer.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::app::App;
use crate::rejection::Rejection;
use crate::response::LocalResponse;

/// What a handler answers: a response, or a refusal the proxy logs, counts and writes.
pub type Answer = Result<LocalResponse, Rejection>;

/// `GET /healthz`: the process is up. Always 200 `{"status":"ok"}`.
pub fn healthz() -> Answer {
    Ok(LocalResponse::json(200, &json!({ "status": "ok" })))
}

/// `GET /readyz`: 200 `{"ready":true}` when `<base_url>/health` answers 200 within
/// `upstream.health_timeout_ms`, else 503 `{"ready":false,"error":...}`. In fleet mode also
/// `"fleet": {"node", "connected", "responsive", "nodeIdConflict", "buffered"}`, and 503 while
/// NATS is unreachable or stalled (`responsive`: JetStream answered the last probe within 2 s;
/// the node still serves alone), or while another live process uses this `fleet.node_id`
/// (`nodeIdConflict`).
pub async fn readyz(app: &App) -> Answer {
    let upstream = probe_upstream(app).await;
    let fleet = app.fleet.as_ref().map(|f| {
        let conflict = f.presence.conflict();
        let problem = if let Some(holder) = &conflict {
            Some(format!(
                "fleet: another live process ({holder}) uses fleet.node_id {}",
                f.node_id()
            ))
        } else if !f.link.responsive() {
            Some("fleet: NATS does not answer (stalled?); serving alone".to_owned())
        } else if !f.connected() {
            Some("fleet: NATS unreachable; serving alone".to_owned())
        } else {
            None
        };
        (
            problem,
            json!({
                "node": f.node_id(),
                "connected": f.connected(),
                "responsive": f.link.responsive(),
                "nodeIdConflict": conflict.is_some(),
                "buffered": f.outbox.len(),
            }),
        )
    });
    let error = match (upstream, &fleet) {
        (Err(error), _) => Some(error),
        (Ok(()), Some((Some(problem), _))) => Some(problem.clone()),
        (Ok(()), _) => None,
    };
    let mut body = match &error {
        None => json!({ "ready": true }),
        Some(error) => json!({ "ready": false, "error": error }),
    };
    if let Some((_, f)) = fleet {
        body["fleet"] = f;
    }
    Ok(LocalResponse::json(
        if error.is_none() { 200 } else { 503 },
        &body,
    ))
}

/// Asks wa-hub's `GET /health` and records the answer in the `wa_hub_sidecar_upstream_up`
/// gauge, logging when the state changes.
///
/// # Errors
/// What went wrong, in words fit for a client (no addresses, no secrets).
pub async fn probe_upstream(app: &App) -> Result<(), String> {
    let outcome = app.upstream.health().await;
    let up = i64::from(outcome.is_ok());
    let was = app.metrics.upstream_up.get();
    app.metrics.upstream_up.set(up);
    match &outcome {
        Err(error) if was != 0 => tracing::warn!(%error, "wa-hub health check failed"),
        Ok(()) if was != 1 => tracing::info!("wa-hub health check passed"),
        _ => {}
    }
    outcome
}

/// `GET /api/config`: `{"webhookUrl": ...}` as the dashboard's route answers.
pub fn config(app: &App) -> Answer {
    Ok(LocalResponse::json(
        200,
        &json!({ "webhookUrl": app.config.webhook_url() }),
    ))
}

/// `GET /metrics`: Prometheus text exposition format.
pub fn metrics(app: &App) -> Answer {
    Ok(LocalResponse {
        status: 200,
        body: Bytes::from(app.render_metrics()),
        headers: Vec::new(),
        content_type: crate::metrics::CONTENT_TYPE,
    })
}

/// Default and largest `limit` of `GET /api/events`.
pub const EVENTS_LIMIT_MAX: usize = 5000;

/// `GET /api/instances`: `{"instances": [<InstanceStatus>...]}`, ordered by instance id.
pub fn instances(app: &App) -> Answer {
    let statuses = app.read_engine(|e| e.statuses());
    Ok(LocalResponse::json(200, &json!({ "instances": statuses })))
}

/// `GET /api/instances/<id>/status`: the instance's status.
///
/// # Errors
/// [`Rejection::UnknownInstance`] (404 `{"error":"Unknown instance"}`).
pub fn instance_status(app: &App, id: &str) -> Answer {
    match app.read_engine(|e| e.status(id).map(|s| json!(s))) {
        Some(s) => Ok(LocalResponse::json(200, &s)),
        None => Err(Rejection::UnknownInstance(id.to_owned())),
    }
}

/// A `limit` query value: absent or empty → `max`; a number → at most `max`.
///
/// # Errors
/// [`Rejection::BadRequest`] for anything but a non-negative integer.
pub fn parse_limit(limit: Option<&str>, max: usize) -> Result<usize, Rejection> {
    match limit.filter(|l| !l.is_empty()) {
        None => Ok(max),
        Some(l) => l
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| Rejection::BadRequest("limit must be a non-negative integer")),
    }
}

/// `GET /api/events?instanceId=&limit=`: `{"events": [<webhook record>...]}`, newest first.
/// `limit` defaults to and is capped at [`EVENTS_LIMIT_MAX`].
///
/// # Errors
/// [`Rejection::BadRequest`] for a non-numeric `limit`.
pub fn events(app: &App, instance_id: Option<&str>, limit: Option<&str>) -> Answer {
    let limit = parse_limit(limit, EVENTS_LIMIT_MAX)?;
    let events: Vec<_> = app
        .webhooks
        .newest(limit, |e| {
            instance_id.is_none_or(|want| e.payload.instance_id() == Some(want))
        })
        .iter()
        .filter_map(|e| match &e.payload {
            wa_hub_sinks::Payload::Webhook(w) => serde_json::to_value(w).ok(),
            _ => None,
        })
        .collect();
    Ok(LocalResponse::json(200, &json!({ "events": events })))
}

/// Default and largest `limit` of `GET /api/sinks/<name>/dead-letters`.
pub const DEAD_LETTERS_LIMIT_MAX: usize = 1000;

/// `GET /api/sinks/<name>/dead-letters?limit=`: the forward sink's dead letters, oldest first,
/// as [`wa_hub_sinks::forward::DeadLetterList`]:
/// `{"sink", "pending", "total", "deadLetters": [{"id", "eventId", "instanceId", "event",
/// "attempts", "lastError", "receivedAt", "firstAttemptAt", "lastAttemptAt", "deadAt",
/// "contentType", "body"}]}`. `limit` defaults to and is capped at [`DEAD_LETTERS_LIMIT_MAX`].
///
/// # Errors
/// 400 for a non-numeric `limit`; 404 [`Rejection::UnknownSink`] when no forward sink has that
/// name; 500 [`Rejection::OutboxFailed`] when the outbox cannot be read.
pub async fn dead_letters(app: &App, sink: &str, limit: Option<&str>) -> Answer {
    let handle = app
        .dead_letters
        .get(sink)
        .ok_or_else(|| Rejection::UnknownSink(sink.to_owned()))?;
    let limit = parse_limit(limit, DEAD_LETTERS_LIMIT_MAX)?;
    match handle.dead_letters(limit).await {
        Ok(list) => Ok(LocalResponse::json(200, &json!(list))),
        Err(_) => Err(Rejection::OutboxFailed),
    }
}

/// `POST /api/sinks/<name>/dead-letters/replay[?id=<id>]`: moves the forward sink's dead
/// letters back to its outbox, behind the pending events, each with a fresh attempt count:
/// the one with dead-letter id `id` (query parameter, or `{"id": <id>}` as the JSON body), or
/// all when no id is given (empty body or `{}`).
///
/// 200 `{"sink", "replayed": <count>, "pending": <outbox size>}`.
///
/// # Errors
/// 400 for an id that is not a non-negative integer or a body that is not such JSON; 404
/// [`Rejection::UnknownSink`] or [`Rejection::UnknownDeadLetter`]; 500 when the outbox cannot
/// be written.
pub async fn replay_dead_letters(
    app: &App,
    sink: &str,
    query_id: Option<&str>,
    body: &[u8],
) -> Answer {
    let handle = app
        .dead_letters
        .get(sink)
        .ok_or_else(|| Rejection::UnknownSink(sink.to_owned()))?;
    let id = replay_id(query_id, body)?;
    match handle.replay(id).await {
        Ok(n) => Ok(LocalResponse::json(
            200,
            &json!({ "sink": handle.name(), "replayed": n, "pending": handle.pending() }),
        )),
        Err(wa_hub_sinks::forward::OutboxError::UnknownDeadLetter(id)) => {
            Err(Rejection::UnknownDeadLetter {
                sink: sink.to_owned(),
                id,
            })
        }
        Err(_) => Err(Rejection::OutboxFailed),
    }
}

/// The dead-letter id to replay: the `id` query parameter, else `{"id": <id>}` in the body;
/// `None` (all) for an empty body, `{}` or `{"id": null}`.
fn replay_id(query_id: Option<&str>, body: &[u8]) -> Result<Option<u64>, Rejection> {
    const BAD_ID: Rejection = Rejection::BadRequest("id must be a non-negative integer");
    if let Some(q) = query_id {
        return q.parse::<u64>().map(Some).map_err(|_| BAD_ID);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => match o.get("id") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or(BAD_ID),
        },
        _ => Err(Rejection::BadRequest(
            r#"the body must be empty or {"id": <dead-letter id>}"#,
        )),
    }
}
