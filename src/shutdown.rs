//! Shutdown: SIGTERM drains, SIGINT exits at once.
//!
//! On SIGTERM the sidecar first tells its own tasks through [`App::begin_shutdown`] (SSE
//! streams close, new requests get 503), waits until in-flight requests finish, then tells the
//! sinks to deliver what they hold ([`App::stop_sinks`]) and waits for them, all within
//! `shutdown.grace_period_ms`. Only then does it hand Pingora a graceful
//! terminate with no further grace, so an idle sidecar exits at once instead of sleeping out
//! Pingora's fixed grace period (300 s by default).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;

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
}

#[async_trait]
impl ShutdownSignalWatch for DrainOnSignal {
    async fn recv(&self) -> ShutdownSignal {
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
        loop {
            let inflight = self.app.inflight();
            if inflight == 0 {
                tracing::info!("requests drained");
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    inflight,
                    "grace period over, exiting with requests in flight"
                );
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
        // Then the sinks: each delivers what is queued for it and stops (`Sink::stop`), within
        // what is left of the grace period, but never less than SINKS_MIN_STOP.
        self.app.stop_sinks();
        let deadline = deadline.max(Instant::now() + SINKS_MIN_STOP);
        loop {
            let running = self.app.sinks_running();
            if running == 0 {
                tracing::info!("sinks stopped");
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    running,
                    "grace period over, exiting with sinks still running"
                );
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
        ShutdownSignal::GracefulTerminate
    }
}
