//! Event builders for this crate's unit tests.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use serde_json::json;

use crate::envelope::{ApiLog, ApiLogBody, Event, Payload, WebhookRecord};

/// A webhook event with bus id `id`.
pub fn webhook(id: u64, event: &str, instance: Option<&str>) -> Arc<Event> {
    webhook_with_text(id, event, instance, "héllo\nworld")
}

/// A webhook event with bus id `id` whose `data.text` is `text`.
pub fn webhook_with_text(id: u64, event: &str, instance: Option<&str>, text: &str) -> Arc<Event> {
    let payload = json!({"event": event, "instanceId": instance, "data": {"text": text}});
    let raw = Bytes::from(payload.to_string());
    Arc::new(Event::new(
        id,
        Utc::now(),
        Payload::Webhook(WebhookRecord {
            id: format!("w{id}"),
            timestamp: "2026-11-29T00:00:00.000Z".into(),
            instance_id: instance.map(str::to_owned),
            event: event.into(),
            payload,
            signature_valid: Some(true),
            summary: format!("{event} @ {}", instance.unwrap_or("unknown")),
            raw,
            content_type: "application/json".into(),
        }),
    ))
}

/// An apiLog event with bus id `id`.
pub fn api_log(id: u64, instance: Option<&str>) -> Arc<Event> {
    Arc::new(Event::new(
        id,
        Utc::now(),
        Payload::ApiLog(ApiLog {
            id: format!("a{id}"),
            timestamp: "2026-11-29T00:00:00.000Z".into(),
            method: "GET".into(),
            path: "/instances".into(),
            status_code: Some(200),
            latency_ms: 1,
            request_body: ApiLogBody::default(),
            response_body: ApiLogBody::json("[]"),
            instance_id: instance.map(str::to_owned),
            error: None,
        }),
    ))
}
