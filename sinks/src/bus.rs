//! The bus: assigns every event its sequence id and timestamp and hands it to the router.
//!
//! Publishing never blocks on a sink: the router only `try_send`s into bounded queues. Ingest
//! and the proxy call [`Bus::publish`] on their hot path.

use std::sync::Arc;

use parking_lot::Mutex;

use chrono::{DateTime, Utc};

use crate::envelope::{Event, Payload};
use crate::router::Router;

/// Sequence-numbering event bus.
///
/// Ids start at 1 and increase by one per published event, in publication order, for the life
/// of the process. Every sink sees its events in id order.
#[derive(Debug)]
pub struct Bus {
    last_id: Mutex<u64>,
    router: Router,
}

impl Bus {
    /// A bus delivering to `router`.
    pub fn new(router: Router) -> Self {
        Self {
            last_id: Mutex::new(0),
            router,
        }
    }

    /// Numbers `payload`, stamps it with the current time and routes it. Returns the event.
    pub fn publish(&self, payload: Payload) -> Arc<Event> {
        // The lock keeps id order and queue order the same across producers.
        let mut last = self.last_id.lock();
        *last += 1;
        let event = Arc::new(Event::new(*last, Utc::now(), payload));
        self.router.dispatch(&event);
        event
    }

    /// Routes `payload` under an id given from outside (fleet mode: the JetStream stream
    /// sequence, and `timestamp` the time the stream stored it), to the sinks whose config
    /// `type` `sinks` accepts. Ids must increase; an id not above the last one is still routed
    /// (sinks see it in call order) but does not lower [`Bus::last_id`]. Returns the event.
    pub fn publish_numbered(
        &self,
        id: u64,
        timestamp: DateTime<Utc>,
        payload: Payload,
        sinks: impl Fn(&str) -> bool,
    ) -> Arc<Event> {
        let mut last = self.last_id.lock();
        *last = (*last).max(id);
        let event = Arc::new(Event::new(id, timestamp, payload));
        self.router.dispatch_to(&event, sinks);
        event
    }

    /// Routes a payload that has no id of its own (fleet mode: an event shown on this node
    /// only, such as an API log when `fleet.share_api_log` is off or an event accepted while
    /// NATS is unreachable). It carries the id of the last event, so a client resuming after
    /// it misses nothing of the fleet's log. Returns the event.
    pub fn publish_unnumbered(&self, payload: Payload) -> Arc<Event> {
        let last = self.last_id.lock();
        let event = Arc::new(Event::new(*last, Utc::now(), payload));
        self.router.dispatch(&event);
        event
    }

    /// The id of the last published event (0 before the first).
    pub fn last_id(&self) -> u64 {
        *self.last_id.lock()
    }

    /// The router, for sink statistics.
    pub fn router(&self) -> &Router {
        &self.router
    }
}
