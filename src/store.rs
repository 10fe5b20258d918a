//! In-memory histories the dashboard shows on connect: bounded, newest first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use wa_hub_sinks::Event;

/// A bounded newest-first list of events. Pushing past the capacity forgets the oldest.
#[derive(Debug)]
pub struct History {
    items: Mutex<VecDeque<Arc<Event>>>,
    capacity: usize,
}

impl History {
    /// An empty history holding at most `capacity` events.
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            capacity,
        }
    }

    /// Adds `event` as the newest entry.
    pub fn push(&self, event: Arc<Event>) {
        let evicted = {
            let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            items.push_front(event);
            // Each push adds one, so at most one is over.
            if items.len() > self.capacity {
                items.pop_back()
            } else {
                None
            }
        };
        // Freed after the lock: the other workers pushing meanwhile do not wait for it.
        drop(evicted);
    }

    /// Up to `limit` newest entries for which `keep` holds, newest first.
    pub fn newest(&self, limit: usize, keep: impl Fn(&Event) -> bool) -> Vec<Arc<Event>> {
        let items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        items
            .iter()
            .filter(|e| keep(e))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether the history is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wa_hub_sinks::{ApiLog, Bus, Payload};

    fn log(path: &str) -> Payload {
        Payload::ApiLog(ApiLog {
            id: path.into(),
            timestamp: String::new(),
            method: "GET".into(),
            path: path.into(),
            status_code: Some(200),
            latency_ms: 1,
            request_body: Default::default(),
            response_body: Default::default(),
            instance_id: None,
            error: None,
        })
    }

    #[test]
    fn history_is_newest_first_and_bounded() {
        let bus = Bus::starting_after(wa_hub_sinks::Router::empty(), 0);
        let h = History::new(2);
        for p in ["/a", "/b", "/c"] {
            h.push(bus.publish(log(p)));
        }
        let ids: Vec<u64> = h.newest(10, |_| true).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![3, 2]);
        assert_eq!(h.newest(1, |_| true)[0].id, 3);
    }
}
