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
        "http://{}{}/health",
        cfg.upstream_addr, cfg.upstream_path_prefix
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
