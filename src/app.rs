//! The state every request handler and background task shares, built once at start-up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use wa_hub_sinks::Bus;

use crate::config::Config;
use crate::status::StatusEngine;
use crate::store::History;

/// Shared process state: validated config, the bus, the histories and the shutdown signal.
#[derive(Debug)]
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The sequence-numbering event bus.
    pub bus: Bus,
    /// Newest-first ApiLog history (`api_log.history` entries).
    pub api_logs: History,
    /// Newest-first webhook history (`webhook.history` entries).
    pub webhooks: History,
    /// HTTP client for the sidecar's own calls to wa-hub (`/readyz`).
    pub http: reqwest::Client,
    engine: Mutex<StatusEngine>,
    shutdown: watch::Sender<bool>,
    inflight: Arc<AtomicUsize>,
}

impl App {
    /// Builds the state for a validated config.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS back-end initialisation).
    pub fn new(config: Config) -> Result<Arc<Self>, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            .build()?;
        let (shutdown, _) = watch::channel(false);
        Ok(Arc::new(Self {
            api_logs: History::new(config.raw.api_log.history.get()),
            webhooks: History::new(config.raw.webhook.history.get()),
            engine: Mutex::new(StatusEngine::new(config.raw.status.max_instances.get())),
            bus: Bus::new(1024),
            http,
            shutdown,
            inflight: Arc::new(AtomicUsize::new(0)),
            config,
        }))
    }

    /// The status engine, locked. Hold the guard while publishing what it decided, so bus ids
    /// follow the order of decisions.
    pub fn engine(&self) -> MutexGuard<'_, StatusEngine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A receiver that turns `true` when the process starts draining (first step of SIGTERM).
    pub fn shutdown_watch(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Whether draining has started.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Starts draining: long-lived streams close, new requests get 503.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// A guard counting one in-flight request until dropped.
    pub fn inflight_guard(&self) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.inflight.clone())
    }

    /// Requests currently in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }
}

/// Counts one in-flight request; see [`App::inflight_guard`].
#[derive(Debug)]
pub struct InflightGuard(Arc<AtomicUsize>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
