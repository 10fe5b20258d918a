//! Handlers of the sidecar's own routes (everything that is not proxied). They take plain
//! inputs and return a [`LocalResponse`], so they are testable without Pingora; `proxy` writes
//! the response.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::app::App;

/// A complete response to write to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
    /// Extra headers beyond `Content-Type` and `Content-Length`.
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type` of a non-empty body.
    pub content_type: &'static str,
}

impl LocalResponse {
    /// A JSON response.
    pub fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            headers: Vec::new(),
            content_type: "application/json",
        }
    }

    /// A response with no body (e.g. 204).
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: Bytes::new(),
            headers: Vec::new(),
            content_type: "application/json",
        }
    }

    /// The error shape every rejection uses: `{"error": <what>, "message": <detail>}`.
    pub fn error(status: u16, error: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &json!({ "error": error, "message": message.into() }),
        )
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// `GET /healthz`: the process is up. Always 200 `{"status":"ok"}`.
pub fn healthz() -> LocalResponse {
    LocalResponse::json(200, &json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 `{"ready":true}` when `<base_url>/health` answers 200 within
/// `upstream.health_timeout_ms`, else 503 `{"ready":false,"error":...}`.
pub async fn readyz(app: &App) -> LocalResponse {
    match probe_upstream(app).await {
        Ok(()) => LocalResponse::json(200, &json!({ "ready": true })),
        Err(error) => LocalResponse::json(503, &json!({ "ready": false, "error": error })),
    }
}

/// Asks wa-hub's `GET /health` (within `upstream.health_timeout_ms`) and records the answer in
/// the `wa_hub_sidecar_upstream_up` gauge, logging when the state changes.
///
/// # Errors
/// What went wrong, in words fit for a client (no addresses, no secrets).
pub async fn probe_upstream(app: &App) -> Result<(), String> {
    let cfg = &app.config;
    let url = format!(
        "{}{}/health",
        cfg.upstream_origin(),
        cfg.upstream_path_prefix
    );
    let result = app
        .http
        .get(&url)
        .header("host", &cfg.upstream_authority)
        .bearer_auth(cfg.raw.upstream.token.expose())
        .timeout(cfg.health_timeout())
        .send()
        .await;
    let outcome = match result {
        Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
        Ok(r) => Err(format!("wa-hub /health answered {}", r.status().as_u16())),
        Err(e) if e.is_timeout() => Err("wa-hub /health timed out".to_owned()),
        Err(_) => Err("wa-hub is unreachable".to_owned()),
    };
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
pub fn config(app: &App) -> LocalResponse {
    LocalResponse::json(200, &json!({ "webhookUrl": app.config.webhook_url() }))
}

/// 404 for paths the sidecar does not serve.
pub fn not_found() -> LocalResponse {
    LocalResponse::error(404, "Not found", "no such route")
}

/// 405 for a known route with the wrong method.
pub fn method_not_allowed(allow: &'static str) -> LocalResponse {
    LocalResponse::error(405, "Method not allowed", format!("use {allow}"))
        .with_header("allow", allow)
}

/// `GET /metrics`: Prometheus text exposition format.
pub fn metrics(app: &App) -> LocalResponse {
    LocalResponse {
        status: 200,
        body: Bytes::from(app.render_metrics()),
        headers: Vec::new(),
        content_type: crate::metrics::CONTENT_TYPE,
    }
}

/// Default and largest `limit` of `GET /api/events`.
pub const EVENTS_LIMIT_MAX: usize = 5000;

/// `GET /api/instances`: `{"instances": [<InstanceStatus>...]}`, ordered by instance id.
pub fn instances(app: &App) -> LocalResponse {
    let statuses = app.engine().statuses();
    LocalResponse::json(200, &json!({ "instances": statuses }))
}

/// `GET /api/instances/<id>/status`: the instance's status, or 404
/// `{"error":"Unknown instance"}`.
pub fn instance_status(app: &App, id: &str) -> LocalResponse {
    match app.engine().status(id) {
        Some(s) => LocalResponse::json(200, &json!(s)),
        None => LocalResponse::error(404, "Unknown instance", format!("no status known for {id}")),
    }
}

/// `GET /api/events?instanceId=&limit=`: `{"events": [<webhook record>...]}`, newest first.
/// `limit` defaults to and is capped at [`EVENTS_LIMIT_MAX`]; a non-numeric one is a 400.
pub fn events(app: &App, instance_id: Option<&str>, limit: Option<&str>) -> LocalResponse {
    let limit = match limit.filter(|l| !l.is_empty()) {
        None => EVENTS_LIMIT_MAX,
        Some(l) => match l.parse::<usize>() {
            Ok(n) => n.min(EVENTS_LIMIT_MAX),
            Err(_) => {
                return LocalResponse::error(
                    400,
                    "Bad request",
                    "limit must be a non-negative integer",
                )
            }
        },
    };
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
    LocalResponse::json(200, &json!({ "events": events }))
}

/// Default and largest `limit` of `GET /api/sinks/<name>/dead-letters`.
pub const DEAD_LETTERS_LIMIT_MAX: usize = 1000;

fn unknown_sink(name: &str) -> LocalResponse {
    LocalResponse::error(
        404,
        "Unknown sink",
        format!("no sink of type forward is named {name}"),
    )
}

fn outbox_failed() -> LocalResponse {
    LocalResponse::error(500, "Internal error", "the sink's outbox could not be used")
}

/// `GET /api/sinks/<name>/dead-letters?limit=`: the forward sink's dead letters, oldest first,
/// as [`wa_hub_sinks::forward::DeadLetterList`]:
/// `{"sink", "pending", "total", "deadLetters": [{"id", "eventId", "instanceId", "event",
/// "attempts", "lastError", "receivedAt", "firstAttemptAt", "lastAttemptAt", "deadAt",
/// "contentType", "body"}]}`. `limit` defaults to and is capped at [`DEAD_LETTERS_LIMIT_MAX`];
/// a non-numeric one is a 400. 404 `{"error":"Unknown sink"}` when no forward sink has that
/// name; 500 when the outbox cannot be read.
pub async fn dead_letters(app: &App, sink: &str, limit: Option<&str>) -> LocalResponse {
    let Some(handle) = app.forward.get(sink) else {
        return unknown_sink(sink);
    };
    let limit = match limit.filter(|l| !l.is_empty()) {
        None => DEAD_LETTERS_LIMIT_MAX,
        Some(l) => match l.parse::<usize>() {
            Ok(n) => n.min(DEAD_LETTERS_LIMIT_MAX),
            Err(_) => {
                return LocalResponse::error(
                    400,
                    "Bad request",
                    "limit must be a non-negative integer",
                )
            }
        },
    };
    match handle.dead_letters(limit).await {
        Ok(list) => LocalResponse::json(200, &json!(list)),
        Err(_) => outbox_failed(),
    }
}

/// `POST /api/sinks/<name>/dead-letters/replay[?id=<id>]`: moves the forward sink's dead
/// letters back to its outbox, behind the pending events, each with a fresh attempt count:
/// the one with dead-letter id `id` (query parameter, or `{"id": <id>}` as the JSON body), or
/// all when no id is given (empty body or `{}`).
///
/// 200 `{"sink", "replayed": <count>, "pending": <outbox size>}`; 400 for an id that is not a
/// non-negative integer or a body that is not such JSON; 404 `{"error":"Unknown sink"}` or
/// `{"error":"Unknown dead letter"}`; 500 when the outbox cannot be written.
pub async fn replay_dead_letters(
    app: &App,
    sink: &str,
    query_id: Option<&str>,
    body: &[u8],
) -> LocalResponse {
    let Some(handle) = app.forward.get(sink) else {
        return unknown_sink(sink);
    };
    let bad = |m: &str| LocalResponse::error(400, "Bad request", m);
    let id = match query_id {
        Some(q) => match q.parse::<u64>() {
            Ok(id) => Some(id),
            Err(_) => return bad("id must be a non-negative integer"),
        },
        None if body.iter().all(u8::is_ascii_whitespace) => None,
        None => match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(o)) => match o.get("id") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(id) => Some(id),
                    None => return bad("id must be a non-negative integer"),
                },
            },
            _ => return bad(r#"the body must be empty or {"id": <dead-letter id>}"#),
        },
    };
    match handle.replay(id).await {
        Ok(n) => LocalResponse::json(
            200,
            &json!({ "sink": handle.name(), "replayed": n, "pending": handle.pending() }),
        ),
        Err(wa_hub_sinks::forward::OutboxError::UnknownDeadLetter(id)) => LocalResponse::error(
            404,
            "Unknown dead letter",
            format!("sink {sink} has no dead letter with id {id}"),
        ),
        Err(_) => outbox_failed(),
    }
}
