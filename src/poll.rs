//! Background polls of wa-hub, run as one task: the status engine's API fallbacks and the
//! health probe.
//!
//! - **QR fallback** (the dashboard's): while an instance needs a QR and no webhook brought
//!   one, fetch `GET /instances/<id>/client/qr` every `status.qr_poll_interval_ms`; an instance
//!   leaves the list as soon as it has a QR or its status leaves needs_qr.
//! - **Reconcile poll** (off by default): every `status.reconcile_interval_ms`, fetch
//!   `GET /instances` and each known instance's `GET /instances/<id>/client/status`.
//! - **Health probe**: every `upstream.health_interval_ms`, `GET /health` for the
//!   `wa_hub_sidecar_upstream_up` gauge.
//!
//! All call wa-hub directly with the API key; failures are logged and retried on the next tick.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde_json::Value;
use url::Url;
use wa_hub_sinks::Payload;

use crate::app::App;
use crate::local;
use crate::status::ApiStatus;

/// The background task; see the module docs.
pub struct Pollers {
    app: Arc<App>,
}

impl Pollers {
    /// Pollers over the shared state.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

/// A tick every `ms`, or never when `ms` is 0.
fn ticker(ms: u64) -> Option<tokio::time::Interval> {
    (ms > 0).then(|| {
        let mut i = tokio::time::interval(Duration::from_millis(ms));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    })
}

async fn tick(i: &mut Option<tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[async_trait]
impl BackgroundService for Pollers {
    async fn start(&self, mut pingora_shutdown: ShutdownWatch) {
        let cfg = &self.app.config.raw.status;
        let mut qr = ticker(cfg.qr_poll_interval_ms);
        let mut reconcile = ticker(cfg.reconcile_interval_ms);
        let mut health = ticker(self.app.config.raw.upstream.health_interval_ms);
        let mut drain = self.app.shutdown_watch();
        loop {
            tokio::select! {
                _ = pingora_shutdown.changed() => break,
                _ = drain.changed() => break,
                _ = tick(&mut qr) => self.poll_qrs().await,
                _ = tick(&mut reconcile) => self.reconcile().await,
                _ = tick(&mut health) => {
                    let _ = local::probe_upstream(&self.app).await;
                }
            }
        }
    }
}

impl Pollers {
    /// `<upstream origin><prefix>/<segments...>`, each segment percent-encoded by `url`.
    fn url(&self, segments: &[&str]) -> Option<Url> {
        let cfg = &self.app.config;
        let mut url = Url::parse(&format!(
            "{}{}/",
            cfg.upstream_origin(),
            cfg.upstream_path_prefix
        ))
        .ok()?;
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .extend(segments);
        Some(url)
    }

    async fn get_json(&self, segments: &[&str]) -> Option<Value> {
        let cfg = &self.app.config;
        let url = self.url(segments)?;
        let path = url.path().to_owned();
        let path = path.as_str();
        let result = self
            .app
            .http
            .get(url)
            .header("host", &cfg.upstream_authority)
            .bearer_auth(cfg.raw.upstream.token.expose())
            .timeout(cfg.read_timeout())
            .send()
            .await;
        match result {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            Ok(r) => {
                tracing::debug!(path, status = r.status().as_u16(), "status poll: no data");
                None
            }
            Err(e) => {
                tracing::debug!(path, error = %e, "status poll failed");
                None
            }
        }
    }

    async fn poll_qrs(&self) {
        let waiting = self.app.engine().waiting_for_qr();
        for id in waiting {
            let Some(body) = self.get_json(&["instances", &id, "client", "qr"]).await else {
                continue;
            };
            let Some(qr) = qr_from_response(&body) else {
                continue;
            };
            let mut engine = self.app.engine();
            let outcome = engine.apply_fetched_qr(&id, &qr, Utc::now());
            if let Some(q) = outcome.qr {
                self.app.bus.publish(Payload::Qr(q));
            }
            if let Some(s) = outcome.status {
                self.app.bus.publish(Payload::Status(s));
            }
        }
    }

    async fn reconcile(&self) {
        if let Some(list) = self.get_json(&["instances"]).await {
            let mut engine = self.app.engine();
            for s in engine.apply_instance_list(&list, Utc::now()) {
                self.app.bus.publish(Payload::Status(s));
            }
        }
        let ids = self.app.engine().instance_ids();
        for id in ids {
            let Some(api) = self
                .get_json(&["instances", &id, "client", "status"])
                .await
                .as_ref()
                .and_then(ApiStatus::from_response)
            else {
                continue;
            };
            let mut engine = self.app.engine();
            if let Some(s) = engine.apply_api_status(&id, api, Utc::now()) {
                self.app.bus.publish(Payload::Status(s));
            }
        }
    }
}

/// The base64 PNG in a QR response: `qr` or `qrCode`, at the top or under `data`; a
/// `data:image/png;base64,` prefix is removed so it matches what webhooks carry.
pub fn qr_from_response(body: &Value) -> Option<String> {
    let pick = |v: &Value| {
        v.get("qr")
            .or_else(|| v.get("qrCode"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let qr = pick(body).or_else(|| body.get("data").and_then(pick))?;
    let qr = match qr.split_once(";base64,") {
        Some((prefix, data)) if prefix.starts_with("data:") => data.to_owned(),
        _ => qr,
    };
    (!qr.is_empty()).then_some(qr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qr_is_found_in_known_shapes() {
        assert_eq!(
            qr_from_response(&json!({"qr": "AAA"})).as_deref(),
            Some("AAA")
        );
        assert_eq!(
            qr_from_response(&json!({"data": {"qrCode": "data:image/png;base64,BBB"}})).as_deref(),
            Some("BBB")
        );
        assert_eq!(qr_from_response(&json!({"error": "not yet"})), None);
        assert_eq!(qr_from_response(&json!({"qr": ""})), None);
    }
}
