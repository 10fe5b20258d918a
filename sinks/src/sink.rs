//! The `Sink` trait: what every destination of events implements.

use std::sync::Arc;

use async_trait::async_trait;

use crate::envelope::Event;

/// Pacing of the SSE and stdout sinks' batches ([`Sink::batch_linger`]): under a steady stream
/// their task takes a batch at most once per this interval, so it wakes about 200 times a
/// second however many events come (each wake-up is an `eventfd` write on the producing
/// thread and an `epoll_wait` return on the sink's; issue 10 counted them as most of the
/// system calls the sidecar made per proxied call beyond bare Pingora's). An event after a
/// quiet spell goes at once; one in a stream waits at most this long.
pub const LIVE_BATCH_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// Most events the SSE and stdout sinks take at once (see [`LIVE_BATCH_LINGER`]).
pub const LIVE_MAX_BATCH: usize = 256;

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
/// first event and again after every failure, [`Sink::deliver`] (or, for sinks that take
/// batches, [`Sink::deliver_batch`]) for the events its filter selects, in bus order, and [`Sink::stop`] once at shutdown after the queue is drained.
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

    /// Most events the router hands to [`Sink::deliver_batch`] at once. Default 1: the router
    /// calls [`Sink::deliver`] for each event. A sink that commits more cheaply in groups (one
    /// fsync for many events) returns more; the router then passes what is waiting in its
    /// queue, up to this many, paced by [`Sink::batch_linger`].
    fn max_batch(&self) -> usize {
        1
    }

    /// Least time between two batches the router takes for this sink: when the last one was
    /// taken less than this long ago, it waits out the rest and takes what gathered, up to
    /// [`Sink::max_batch`]; an event after a quiet spell goes at once. Default zero: no
    /// pacing. A sink whose cost is per call (an fsync, a wake-up) trades at most this much
    /// latency under load for fewer, larger batches.
    fn batch_linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Delivers several events, in bus order; called instead of [`Sink::deliver`] when
    /// [`Sink::max_batch`] is over 1 and more than one event is waiting. Default: `deliver`
    /// for each in turn.
    ///
    /// # Errors
    /// When delivery failed; every event of the batch is counted as failed and the sink is
    /// restarted.
    async fn deliver_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        for event in events {
            self.deliver(event).await?;
        }
        Ok(())
    }

    /// Whether the sink counts `delivered` itself ([`crate::SinkStats::delivered`]) when an
    /// event reached its destination. Default `false`: the router counts an event delivered
    /// when [`Sink::deliver`] returns `Ok`. A sink that only stores the event for later
    /// delivery (the forward sink's outbox) returns `true`, so that an event that later
    /// becomes a dead letter or is dropped is never also counted as delivered.
    fn counts_deliveries(&self) -> bool {
        false
    }

    /// Flushes and releases resources at shutdown.
    async fn stop(&mut self) {}
}
