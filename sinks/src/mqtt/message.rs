//! The messages the MQTT sink hands to its connection task, and the state both share (counters,
//! statuses kept aside while the buffer is full). Shared by [`super::sink`] and
//! [`super::connection`], so neither imports the other.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::router::SinkStats;
use crate::throttle::LogThrottle;

/// What a message is, for bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageKind {
    /// A webhook, counted in `pending` until confirmed.
    Event,
    /// A status, counted in `pending` until confirmed.
    Status,
    /// `online`/`offline`, made by the connection task itself; not counted.
    Availability,
}

/// One PUBLISH to make.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    pub kind: MessageKind,
}

impl Message {
    /// Whether the message counts in `stats.pending`.
    pub fn counted(&self) -> bool {
        self.kind != MessageKind::Availability
    }
}

/// State shared by the sink and its connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The sink's counters (the router's, shared).
    pub stats: Arc<SinkStats>,
    /// Newest status per status topic that found the buffer full; published once the buffer
    /// is empty, so the retained status ends up current even after drops.
    pub overflow: Mutex<HashMap<String, Bytes>>,
    /// Wakes the connection task when `overflow` gains an entry.
    pub wake: Notify,
    /// Sink name, for logs.
    pub name: String,
    full_log: LogThrottle,
}

impl Shared {
    pub fn new(name: String, stats: Arc<SinkStats>) -> Self {
        Self {
            stats,
            overflow: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            name,
            full_log: LogThrottle::default(),
        }
    }

    /// `pending -= n`.
    pub fn settle(&self, n: u64) {
        let _ = self
            .stats
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(n))
            });
    }

    /// Drops a message for a reason the operator must fix (too large, topic too long):
    /// counts it and logs it every time.
    pub fn drop_refused(&self, topic: &str, reason: &str, bytes: usize, limit: usize) {
        let total = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            sink = %self.name,
            topic = %truncated(topic),
            bytes,
            limit,
            dropped_total = total,
            "mqtt: {reason}; event dropped"
        );
    }

    /// Drops a message because the buffer is full: counts it, logs at most once per
    /// [`DROP_LOG_INTERVAL`](crate::throttle::DROP_LOG_INTERVAL).
    pub fn drop_full(&self, capacity: usize) {
        let total = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if self.full_log.allow() {
            tracing::warn!(
                sink = %self.name,
                capacity,
                dropped_total = total,
                "mqtt: buffer full (broker slow or unreachable); dropping events"
            );
        }
    }
}

/// The first 200 bytes of a topic, for logs.
fn truncated(topic: &str) -> &str {
    let mut end = topic.len().min(200);
    while !topic.is_char_boundary(end) {
        end -= 1;
    }
    &topic[..end]
}
