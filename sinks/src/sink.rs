//! The `Sink` trait: what every destination of events implements.

use std::sync::Arc;

use async_trait::async_trait;

use crate::envelope::Event;

/// A sink failed; the router logs and counts it, then restarts the sink with backoff.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error (stdout closed, socket error).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// A destination of events.
///
/// The router owns each sink and calls it from one task: [`Sink::start`] once before the
/// first event and again after every failure, [`Sink::deliver`] for each event its filter
/// selects, in bus order, and [`Sink::stop`] once at shutdown after the queue is drained.
/// A sink must not block the thread; slow work is awaited, and only delays this sink's own
/// queue.
#[async_trait]
pub trait Sink: Send + 'static {
    /// Prepares the sink (connects, opens files). Called again after a failure.
    ///
    /// # Errors
    /// When the sink cannot start; the router retries with backoff.
    async fn start(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Delivers one event.
    ///
    /// # Errors
    /// When delivery failed; the event is counted as failed and the sink is restarted.
    async fn deliver(&mut self, event: &Arc<Event>) -> Result<(), SinkError>;

    /// Called whenever the sink's queue is empty after a delivery: the moment to flush what
    /// `deliver` buffered. Under load, deliveries then batch into few writes; when idle, every
    /// event is flushed at once.
    ///
    /// # Errors
    /// As [`Sink::deliver`].
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Flushes and releases resources at shutdown.
    async fn stop(&mut self) {}
}
