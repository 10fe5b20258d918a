//! Sink health as JSON (`GET /api/sinks`, issue 11 §5): each configured sink's type, connection
//! state, queue and counters, read from the router's snapshot, for the console and any other
//! client. Same numbers as the `wa_hub_sidecar_sink_*` metrics.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};
use wa_hub_sinks::SinkSnapshot;

use crate::app::App;
use crate::response::LocalResponse;

/// One sink as `GET /api/sinks` lists it:
/// `{"name", "type", "connected": null|bool, "queueDepth", "queueCapacity", "delivered",
/// "failed", "dropped", "restarts", "retries", "deadLetters", "pending"}`.
///
/// `connected` is `null` for sinks without a connection (sse, stdout), else whether it is up;
/// `queueDepth`/`queueCapacity` are events in the router queue; the counters count events
/// since start (`restarts`: sink restarts; `retries`: failed attempts the sink will retry;
/// `pending`: events held inside the sink, such as an MQTT buffer or a forward outbox).
pub fn sink_json(s: &SinkSnapshot) -> Value {
    let st = &s.stats;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "name": s.name,
        "type": s.kind,
        "connected": st.connected(),
        "queueDepth": s.queue_depth,
        "queueCapacity": s.queue_capacity,
        "delivered": n(&st.delivered),
        "failed": n(&st.failed),
        "dropped": n(&st.dropped),
        "restarts": n(&st.restarts),
        "retries": n(&st.retries),
        "deadLetters": n(&st.dead_letters),
        "pending": n(&st.pending),
    })
}

/// `GET /api/sinks`: 200 `{"sinks": [<sink_json>...]}` in config order.
pub fn handle(app: &App) -> LocalResponse {
    let sinks: Vec<Value> = app.bus.router().snapshot().iter().map(sink_json).collect();
    LocalResponse::json(200, &json!({ "sinks": sinks }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use wa_hub_sinks::SinkStats;

    #[test]
    fn a_sink_without_connection_reports_null_and_its_counters() {
        let stats = Arc::new(SinkStats::default());
        stats.delivered.store(5, Ordering::Relaxed);
        stats.dropped.store(2, Ordering::Relaxed);
        let snap = SinkSnapshot {
            name: "sse".into(),
            kind: "sse",
            queue_capacity: 10000,
            queue_depth: 3,
            stats,
        };
        assert_eq!(
            sink_json(&snap),
            json!({"name":"sse","type":"sse","connected":null,"queueDepth":3,
                   "queueCapacity":10000,"delivered":5,"failed":0,"dropped":2,"restarts":0,
                   "retries":0,"deadLetters":0,"pending":0})
        );
    }

    #[test]
    fn a_connected_sink_reports_its_state() {
        let stats = Arc::new(SinkStats::default());
        stats.set_connected(false);
        let snap = SinkSnapshot {
            name: "m".into(),
            kind: "mqtt",
            queue_capacity: 1,
            queue_depth: 0,
            stats: stats.clone(),
        };
        assert_eq!(sink_json(&snap)["connected"], json!(false));
        stats.set_connected(true);
        assert_eq!(sink_json(&snap)["connected"], json!(true));
    }
}
