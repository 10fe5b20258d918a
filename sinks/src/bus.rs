//! The bus: assigns every event its sequence id and timestamp, and hands it to subscribers.
//!
//! Publishing never blocks and never waits on a subscriber: ingest and the proxy call
//! [`Bus::publish`] on their hot path.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::broadcast;

use crate::envelope::{Event, Payload};

/// Sequence-numbering event bus.
///
/// Ids start at 1 and increase by one per published event, in publication order, for the life
/// of the process.
#[derive(Debug)]
pub struct Bus {
    state: Mutex<u64>,
    tx: broadcast::Sender<Arc<Event>>,
}

impl Bus {
    /// Creates a bus whose live subscribers may fall at most `capacity` events behind before
    /// they observe a lag.
    ///
    /// # Panics
    /// If `capacity` is 0 (tokio's broadcast channel asserts it).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity);
        Self {
            state: Mutex::new(0),
            tx,
        }
    }

    /// Numbers `payload`, stamps it with the current time and delivers it to live subscribers.
    /// Returns the event as delivered.
    pub fn publish(&self, payload: Payload) -> Arc<Event> {
        // The lock keeps id order and delivery order the same.
        let mut last = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *last += 1;
        let event = Arc::new(Event::new(*last, Utc::now(), payload));
        // No subscriber is not an error: events are still numbered.
        let _ = self.tx.send(event.clone());
        event
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}
