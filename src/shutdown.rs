//! Shutdown: SIGTERM drains, SIGINT exits at once.
//!
//! On SIGTERM the sidecar first tells its own tasks through [`App::begin_shutdown`] (SSE
//! streams close, new requests get 503), waits until in-flight requests finish, gives the fleet
//! outbox time to publish ([`App::flush_fleet`]), then tells the sinks to deliver what they hold ([`App::stop_sinks`]) and waits for them, all within
//! `shutdown.grace_period_ms`. Only then does it hand Pingora a graceful
//! terminate with no further grace, so an idle sidecar exits at once instead of sleeping out
//! Pingora's fixed grace period (300 s by default).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::app::App;

/// Least time the sinks get to stop after the requests drained, even when the grace period
/// is spent: enough to stop a worker and sync an outbox.
const SINKS_MIN_STOP: Duration = Duration::from_secs(1);

/// Pingora shutdown watcher that drains the sidecar before Pingora stops its services.
pub struct DrainOnSignal {
    app: Arc<App>,
}

impl DrainOnSignal {
    /// A watcher for `app`.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// SIGINT: exit at once. SIGTERM: drain as the module doc says.
    async fn drain(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; SIGTERM/SIGINT will kill the process");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT received, exiting now");
                return ShutdownSignal::FastShutdown;
            }
            _ = term.recv() => {}
        }
        let grace = self.app.config.grace_period();
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "SIGTERM received, draining"
        );
        self.app.begin_shutdown();
        let deadline = Instant::now() + grace;
        match wait_for(&self.app.requests, deadline, &mut int).await {
            Waited::Done => tracing::info!("requests drained"),
            Waited::TimedOut => tracing::warn!(
                inflight = self.app.requests.len(),
                "grace period over, exiting with requests in flight"
            ),
            Waited::Interrupted => return ShutdownSignal::FastShutdown,
        }
        // Then the fleet outbox and the sinks: each delivers what is queued for it and stops
        // (`Sink::stop`), within what is left of the grace period, but never less than
        // SINKS_MIN_STOP.
        let deadline = deadline.max(Instant::now() + SINKS_MIN_STOP);
        self.app.flush_fleet(deadline).await;
        if let Some(fleet) = &self.app.fleet {
            // The node id is free at once for its next process, on any machine.
            fleet.release_presence().await;
        }
        self.app.stop_sinks();
        match wait_for(&self.app.sink_tasks, deadline, &mut int).await {
            Waited::Done => tracing::info!("sinks stopped"),
            Waited::TimedOut => tracing::warn!(
                running = self.app.sink_tasks.len(),
                "grace period over, exiting with sinks still running"
            ),
            Waited::Interrupted => return ShutdownSignal::FastShutdown,
        }
        ShutdownSignal::GracefulTerminate
    }
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    /// Drains on SIGTERM (see the module doc), then writes out the buffered access lines
    /// ([`crate::logging::flush`]): Pingora exits the process once this returns.
    async fn recv(&self) -> ShutdownSignal {
        let signal = self.drain().await;
        crate::logging::flush();
        signal
    }
}

/// How waiting for a tracker ended.
enum Waited {
    /// Everything it tracks finished.
    Done,
    /// The deadline passed first.
    TimedOut,
    /// SIGINT came first.
    Interrupted,
}

/// Closes `tracker` and waits until what it tracks finished, the deadline passed, or SIGINT.
async fn wait_for(tracker: &TaskTracker, deadline: Instant, int: &mut Signal) -> Waited {
    tracker.close();
    tokio::select! {
        _ = tracker.wait() => Waited::Done,
        _ = tokio::time::sleep_until(deadline) => Waited::TimedOut,
        _ = int.recv() => Waited::Interrupted,
    }
}
