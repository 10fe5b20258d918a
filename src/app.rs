//! The state every request handler and background task shares, built once at start-up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use wa_hub_sinks::config::SinksConfigError;
use wa_hub_sinks::forward::ForwardHandle;
use wa_hub_sinks::sse::SseHub;
use wa_hub_sinks::{Bus, SinkTask};

use crate::config::Config;
use crate::metrics::{InstanceSample, Metrics};
use crate::signature::Verifier;
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
    /// HTTP client for the sidecar's own calls to wa-hub (`/readyz`, status polls).
    pub http: reqwest::Client,
    /// The SSE hub, when an `sse` sink is configured.
    pub sse: Option<Arc<SseHub>>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// The webhook signature verifier, when `webhook.secret` is set.
    pub verifier: Option<Verifier>,
    /// Forward sinks by name, for the dead-letter routes.
    pub forward: BTreeMap<String, ForwardHandle>,
    engine: Mutex<StatusEngine>,
    shutdown: watch::Sender<bool>,
    sinks_shutdown: watch::Sender<bool>,
    sinks_running: Arc<AtomicUsize>,
    inflight: Arc<AtomicUsize>,
}

/// Why the shared state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The sink list is invalid.
    #[error("config key sinks: {0}")]
    Sinks(#[from] SinksConfigError),
}

impl App {
    /// Builds the state for a validated config, and the sink tasks to run.
    ///
    /// # Errors
    /// [`AppError`] when the HTTP client or a sink cannot be built.
    pub fn new(config: Config) -> Result<(Arc<Self>, Vec<SinkTask>), AppError> {
        let http = crate::tls::upstream_client(
            config.connect_timeout(),
            &config.upstream_host,
            config.upstream_addr,
            config.upstream_ca.as_deref(),
        )?;
        let sinks = wa_hub_sinks::config::build(&config.raw.sinks)?;
        let (shutdown, _) = watch::channel(false);
        let (sinks_shutdown, _) = watch::channel(false);
        let app = Arc::new(Self {
            api_logs: History::new(config.raw.api_log.history.get()),
            webhooks: History::new(config.raw.webhook.history.get()),
            engine: Mutex::new(StatusEngine::new(config.raw.status.max_instances.get())),
            bus: Bus::new(sinks.router),
            http,
            sse: sinks.sse,
            metrics: Metrics::new(config.raw.metrics.max_instances),
            verifier: config
                .raw
                .webhook
                .secret
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| Verifier::new(s.expose().as_bytes())),
            forward: sinks.forward,
            shutdown,
            sinks_shutdown,
            sinks_running: Arc::new(AtomicUsize::new(0)),
            inflight: Arc::new(AtomicUsize::new(0)),
            config,
        });
        Ok((app, sinks.tasks))
    }

    /// The `/metrics` text: refreshes scrape-time values from sinks, the SSE hub and the
    /// status engine, then encodes everything.
    pub fn render_metrics(&self) -> Vec<u8> {
        let samples: Vec<InstanceSample> = self.engine().samples(chrono::Utc::now());
        self.metrics
            .render(&self.bus.router().snapshot(), self.sse.as_deref(), &samples)
    }

    /// A receiver that turns `true` when the sinks must drain and stop (after in-flight
    /// requests finished).
    pub fn sinks_shutdown_watch(&self) -> watch::Receiver<bool> {
        self.sinks_shutdown.subscribe()
    }

    /// Tells the sinks to drain and stop.
    pub fn stop_sinks(&self) {
        self.sinks_shutdown.send_replace(true);
    }

    /// A guard counting one running sink task until dropped.
    pub fn sink_guard(&self) -> InflightGuard {
        self.sinks_running.fetch_add(1, Ordering::AcqRel);
        InflightGuard(self.sinks_running.clone())
    }

    /// Sink tasks still running.
    pub fn sinks_running(&self) -> usize {
        self.sinks_running.load(Ordering::Acquire)
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

/// Counts one in-flight request or running task; see [`App::inflight_guard`].
#[derive(Debug)]
pub struct InflightGuard(Arc<AtomicUsize>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
