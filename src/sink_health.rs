//! Sink health as JSON (`GET /api/sinks`, issue 11 §5): each configured sink's type, connection
//! state, queue and counters, read from the router's snapshot, for the console and any other
//! client. Same numbers as the `wa_hub_sidecar_sink_*` metrics.

use std::sync::atomic::Ordering;

use serde::Serialize;
use wa_hub_sinks::SinkSnapshot;

use crate::app::App;
use crate::response::LocalResponse;

/// One sink as `GET /api/sinks` lists it (fields in this order, camelCase):
/// `{"name", "type", "connected": null|bool, "queueDepth", "queueCapacity", "delivered",
/// "failed", "dropped", "restarts", "retries", "deadLetters", "pending"}`.
///
/// `connected` is `null` for sinks without a connection (sse, stdout), else whether it is up;
/// `queueDepth`/`queueCapacity` are events in the router queue; the counters count events
/// since start (`restarts`: sink restarts; `retries`: failed attempts the sink will retry;
/// `pending`: events held inside the sink, such as an MQTT buffer or a forward outbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkHealth {
    /// The sink's configured name.
    pub name: String,
    /// Its configured `type`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Connection state; `None` for sinks without a connection.
    pub connected: Option<bool>,
    /// Events waiting in its router queue.
    pub queue_depth: usize,
    /// Capacity of that queue (`queue_capacity`).
    pub queue_capacity: usize,
    /// Events delivered.
    pub delivered: u64,
    /// Events whose delivery failed.
    pub failed: u64,
    /// Events dropped (queue full, too large, outbox full).
    pub dropped: u64,
    /// Times the sink was restarted.
    pub restarts: u64,
    /// Failed attempts the sink retries itself.
    pub retries: u64,
    /// Events moved to dead letters.
    pub dead_letters: u64,
    /// Events held inside the sink.
    pub pending: u64,
}

impl SinkHealth {
    /// Reads one sink's snapshot.
    pub fn of(s: &SinkSnapshot) -> Self {
        let st = &s.stats;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Self {
            name: s.name.clone(),
            kind: s.kind,
            connected: st.connected(),
            queue_depth: s.queue_depth,
            queue_capacity: s.queue_capacity,
            delivered: n(&st.delivered),
            failed: n(&st.failed),
            dropped: n(&st.dropped),
            restarts: n(&st.restarts),
            retries: n(&st.retries),
            dead_letters: n(&st.dead_letters),
            pending: n(&st.pending),
        }
    }
}

/// `GET /api/sinks`: 200 `{"sinks": [<SinkHealth>...]}` in config order.
pub fn handle(app: &App) -> LocalResponse {
    let sinks: Vec<SinkHealth> = app
        .bus
        .router()
        .snapshot()
        .iter()
        .map(SinkHealth::of)
        .collect();
    // Serialized from the structs (not through `Value`), so the fields keep their order.
    #[derive(Serialize)]
    struct Body {
        sinks: Vec<SinkHealth>,
    }
    LocalResponse {
        status: 200,
        body: serde_json::to_vec(&Body { sinks })
            .unwrap_or_default()
            .into(),
        headers: Vec::new(),
        content_type: "application/json",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
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
            serde_json::to_string(&SinkHealth::of(&snap)).unwrap(),
            r#"{"name":"sse","type":"sse","connected":null,"queueDepth":3,"queueCapacity":10000,"delivered":5,"failed":0,"dropped":2,"restarts":0,"retries":0,"deadLetters":0,"pending":0}"#
        );
        assert_eq!(
            json!(SinkHealth::of(&snap)),
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
        assert_eq!(SinkHealth::of(&snap).connected, Some(false));
        stats.set_connected(true);
        assert_eq!(SinkHealth::of(&snap).connected, Some(true));
    }
}
