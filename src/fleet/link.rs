//! The JetStream link's health, probed: every [`PROBE_INTERVAL`] the node asks for the
//! stream's info and waits at most [`PROBE_TIMEOUT`].
//!
//! - No answer in time (a stalled nats-server, e.g. SIGSTOP, keeps the TCP connection and the
//!   client's state "connected" for minutes): the link is not responsive, so the node is not
//!   connected ([`super::Fleet::connected`]): `/readyz` answers 503, events are shown locally
//!   and buffered as during an outage.
//! - The stream is missing (nats-server lost its store: restarted with an empty store
//!   directory, or the stream was deleted): the stream and bucket are created again
//!   ([`super::setup::ensure`]).
//! - The stream was created anew since the last probe (its creation time changed): its
//!   sequence numbers started again. The epoch ([`Link::epoch`]) is bumped; the consumer then
//!   starts over from the new stream's first message and SSE clients get a `reset`
//!   (`super::consume::run`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::ErrorCode;
use parking_lot::Mutex;
use tokio::sync::watch;

use async_nats::jetstream::Context;

use super::config::FleetSettings;
use super::setup::ensure;

/// How often the link is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest wait for a probe's answer; past it the link is not responsive.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The probe's findings.
#[derive(Debug)]
pub struct Link {
    responsive: AtomicBool,
    rtt_us: AtomicU64,
    /// The stream's creation time (Unix ns) at the last probe that found it.
    created: Mutex<Option<i128>>,
    resets: AtomicU64,
    epoch: watch::Sender<u64>,
    rebased: watch::Sender<u64>,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            responsive: AtomicBool::new(true),
            rtt_us: AtomicU64::new(0),
            created: Mutex::new(None),
            resets: AtomicU64::new(0),
            epoch: watch::channel(0).0,
            rebased: watch::channel(0).0,
        }
    }
}

impl Link {
    /// Whether JetStream answered the last probe within [`PROBE_TIMEOUT`] (`true` before the
    /// first probe).
    pub fn responsive(&self) -> bool {
        self.responsive.load(Ordering::Relaxed)
    }

    /// The last answered probe's round trip, ms (0 before the first).
    pub fn rtt_ms(&self) -> f64 {
        self.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0
    }

    /// How often the stream was found created anew (its sequence numbers started again).
    pub fn stream_resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// A receiver of the stream's epoch: bumped each time the stream is found created anew.
    pub fn epoch(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// A receiver bumped each time the consumer started the ids again after a new epoch: live
    /// SSE streams then end, and their clients come back with their old id and get a `reset`.
    pub fn rebased(&self) -> watch::Receiver<u64> {
        self.rebased.subscribe()
    }

    /// Tells live SSE streams that the ids started again ([`Link::rebased`]).
    pub fn announce_rebase(&self) {
        self.rebased.send_modify(|e| *e += 1);
    }

    fn set_responsive(&self, now: bool, why: &str) {
        let was = self.responsive.swap(now, Ordering::Relaxed);
        match (was, now) {
            (true, false) => tracing::warn!(
                reason = why,
                "fleet: JetStream does not answer (nats-server stalled?); not ready, working alone"
            ),
            (false, true) => tracing::info!("fleet: JetStream answers again"),
            _ => {}
        }
    }

    /// Records the stream's creation time; `true` when it differs from the one seen before
    /// (the stream was created anew).
    fn saw_created(&self, nanos: i128) -> bool {
        let mut created = self.created.lock();
        let anew = created.is_some_and(|c| c != nanos);
        *created = Some(nanos);
        anew
    }

    fn bump_epoch(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
        self.epoch.send_modify(|e| *e += 1);
    }
}

/// Probes `link` every [`PROBE_INTERVAL`], forever, through `js`, for the stream and bucket of
/// `settings`; a round is skipped while `reachable()` is false (start-up has not found the
/// stream yet, or the client holds no connection).
pub async fn run(
    link: &Link,
    js: &Context,
    settings: &FleetSettings,
    reachable: impl Fn() -> bool,
) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if reachable() {
            probe(link, js, settings).await;
        }
    }
}

async fn probe(link: &Link, js: &Context, settings: &FleetSettings) {
    let started = Instant::now();
    let name = &settings.raw.stream;
    match tokio::time::timeout(PROBE_TIMEOUT, js.get_stream(name)).await {
        Ok(Ok(stream)) => {
            link.rtt_us
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            link.set_responsive(true, "");
            if link.saw_created(stream.cached_info().created.unix_timestamp_nanos()) {
                tracing::warn!(
                    stream = %name,
                    "fleet: the stream was created anew (NATS lost its store?); its sequence numbers start again"
                );
                link.bump_epoch();
            }
        }
        Ok(Err(e)) if is_not_found(&e) => {
            link.set_responsive(true, "");
            tracing::warn!(
                stream = %name,
                "fleet: the stream is missing (NATS lost its store?); creating the stream and bucket again"
            );
            match ensure(js, settings).await {
                // The next probe finds the new stream and bumps the epoch.
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "fleet: stream or bucket not re-created"),
            }
        }
        Ok(Err(e)) => link.set_responsive(false, &e.to_string()),
        Err(_) => link.set_responsive(false, "no answer within 2 s"),
    }
}

fn is_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_creation_time_bumps_nothing_the_first_time_and_is_anew_after() {
        let link = Link::default();
        assert!(!link.saw_created(5));
        assert!(!link.saw_created(5));
        assert!(link.saw_created(6));
        let rx = link.epoch();
        link.bump_epoch();
        assert_eq!(*rx.borrow(), 1);
        assert_eq!(link.stream_resets(), 1);
    }
}
