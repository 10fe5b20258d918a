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
/// Ids increase by one per published event, in publication order. The first id follows the
/// wall clock at start-up in microseconds since the Unix epoch (about 1.8e15 in 2026, below
/// JavaScript's 2^53 until the year 2255), so the ids of a new process exceed every id of an
/// earlier one unless that one published more than one event per microsecond of its life or
/// the clock was set back: an SSE client holding an old id is recognised (DESIGN.md "Public
/// interface": ids never repeat across restarts). Every sink sees its events in id order.
#[derive(Debug)]
pub struct Bus {
    last_id: Mutex<u64>,
    router: Router,
}

impl Bus {
    /// A bus delivering to `router`, numbering from the wall clock (see [`Bus`]).
    pub fn new(router: Router) -> Self {
        Self::starting_after(router, clock_seed())
    }

    /// A bus whose first event gets id `last_id + 1`.
    pub fn starting_after(router: Router, last_id: u64) -> Self {
        Self {
            last_id: Mutex::new(last_id),
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

    /// Fleet mode: the ids start again after `last_id`, even below the last one published
    /// (the fleet's stream was re-created and its sequence numbers started again).
    pub fn rebase(&self, last_id: u64) {
        *self.last_id.lock() = last_id;
    }

    /// The id of the last published event (before the first: the id the bus started after).
    pub fn last_id(&self) -> u64 {
        *self.last_id.lock()
    }

    /// The router, for sink statistics.
    pub fn router(&self) -> &Router {
        &self.router
    }
}

/// Microseconds since the Unix epoch now; 0 for a clock before 1970.
fn clock_seed() -> u64 {
    u64::try_from(Utc::now().timestamp_micros()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_bus_numbers_above_an_earlier_one() {
        let first = Bus::new(Router::empty());
        let a = first.publish(
            crate::test_support::webhook(0, "ready", None)
                .payload
                .clone(),
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = Bus::new(Router::empty());
        assert!(second.last_id() > a.id);
        let b = second.publish(
            crate::test_support::webhook(0, "ready", None)
                .payload
                .clone(),
        );
        assert_eq!(b.id, second.last_id());
        assert!(b.id < 1u64 << 53, "ids stay exact in JavaScript");
    }
}
