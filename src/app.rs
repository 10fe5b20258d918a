//! The state every request handler and background task shares, built once at start-up, and the
//! one way events enter the bus: [`App::publish`] for facts, [`App::decide`] for status
//! decisions (so bus ids follow the order of decisions), [`App::decide_from`] for a fact and
//! what it decides (a webhook).
//!
//! Fleet mode (`fleet:`): all three hand the events to the fleet log instead (a webhook's
//! decisions are made when it is read back, `fleet::consume`); they enter the bus
//! when the consumer reads them back, through [`App::publish_consumed`], numbered by their
//! stream sequence. An event shown on this node only (API logs unless `fleet.share_api_log`,
//! anything accepted while NATS is unreachable) enters the bus at once, unnumbered.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken};
use wa_hub_sinks::config::SinksConfigError;
use wa_hub_sinks::forward::ForwardHandle;
use wa_hub_sinks::sse::SseHub;
use wa_hub_sinks::{Bus, Event, Payload, SinkTask};

use crate::config::Config;
use crate::fleet::{Fleet, FleetError};
use crate::metrics::{InstanceSample, Metrics};
use crate::signature::Verifier;
use crate::status::StatusEngine;
use crate::store::History;
use crate::upstream::Upstream;

/// Longest wait of [`App::settled`]; past it the events stay queued and the answer goes out.
pub const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Shared process state: validated config, the bus, the histories and the shutdown signals.
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
    /// The sidecar's own client for wa-hub (`/readyz`, status polls).
    pub upstream: Upstream,
    /// The SSE hub, when an `sse` sink is configured.
    pub sse: Option<Arc<SseHub>>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Whether any sink takes `apiLog` events; when none does, proxied calls build no ApiLog
    /// (their bodies are not copied) unless the status engine learns from the answer.
    pub api_log_wanted: bool,
    /// The webhook signature verifier, when `webhook.secret` is set.
    pub verifier: Option<Verifier>,
    /// Sinks that keep dead letters (forward sinks), by name, for the dead-letter routes.
    pub dead_letters: BTreeMap<String, ForwardHandle>,
    /// Dashboard cookie sessions (`auth.dashboard`).
    pub sessions: crate::session::Sessions,
    /// Bodies of recently accepted webhooks (`webhook.dedup_window_secs`).
    pub webhook_dedup: crate::dedup::Dedup,
    /// The fleet link, in fleet mode.
    pub fleet: Option<Arc<Fleet>>,
    engine: Mutex<StatusEngine>,
    shutdown: watch::Sender<bool>,
    sinks_shutdown: watch::Sender<bool>,
    /// In-flight requests, waited for at shutdown.
    pub requests: TaskTracker,
    /// Running sink tasks, waited for at shutdown.
    pub sink_tasks: TaskTracker,
}

/// Why the shared state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// The sink list is invalid.
    #[error("{0}")]
    Sinks(#[from] SinksConfigError),
    /// Fleet mode could not start (stream settings differ, JetStream refused).
    #[error("fleet: {0}")]
    Fleet(#[from] FleetError),
}

impl App {
    /// Builds the state for a validated config, and the sink tasks to run.
    ///
    /// In fleet mode also connects to NATS ([`Fleet::start`]); the server then starts the
    /// fleet's publisher and consumer (`fleet::tasks::start`).
    ///
    /// # Errors
    /// [`AppError`] when the HTTP client or a sink cannot be built, or fleet mode cannot start.
    pub fn new(config: Config) -> Result<(Arc<Self>, Vec<SinkTask>), AppError> {
        let upstream = Upstream::new(&config)?;
        let sinks = wa_hub_sinks::config::build(&config.raw.sinks)?;
        let fleet = match &config.fleet {
            Some(settings) => Some(Fleet::start(settings.clone())?),
            None => None,
        };
        let (shutdown, _) = watch::channel(false);
        let (sinks_shutdown, _) = watch::channel(false);
        // Single node: ids follow the clock, so they never repeat across restarts. Fleet mode:
        // ids are the stream's sequence numbers, which survive restarts themselves.
        let bus = if fleet.is_some() {
            Bus::starting_after(sinks.router, 0)
        } else {
            Bus::new(sinks.router)
        };
        if let Some(hub) = &sinks.sse {
            hub.begin_after(bus.last_id());
        }
        let app = Arc::new(Self {
            api_logs: History::new(config.raw.api_log.history.get()),
            webhooks: History::new(config.raw.webhook.history.get()),
            engine: Mutex::new(StatusEngine::new(config.raw.status.max_instances.get())),
            api_log_wanted: bus.router().takes_kind(wa_hub_sinks::Kind::ApiLog),
            bus,
            upstream,
            sse: sinks.sse,
            metrics: Metrics::new(config.raw.metrics.max_instances),
            verifier: config
                .raw
                .webhook
                .secret
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| Verifier::new(s.expose().as_bytes())),
            dead_letters: sinks.dead_letters,
            sessions: crate::session::Sessions::new(&config.raw.auth.dashboard),
            webhook_dedup: crate::dedup::Dedup::new(std::time::Duration::from_secs(
                config.raw.webhook.dedup_window_secs,
            )),
            fleet,
            shutdown,
            sinks_shutdown,
            requests: TaskTracker::new(),
            sink_tasks: TaskTracker::new(),
            config,
        });
        Ok((app, sinks.tasks))
    }

    /// Publishes a fact that decides nothing (an API log, a webhook of an untracked
    /// instance): numbers it, routes it, and keeps webhooks and API logs in their histories.
    /// Returns the event; `None` in fleet mode when it went to the fleet log (it enters the
    /// bus when consumed back).
    pub fn publish(&self, payload: Payload) -> Option<Arc<Event>> {
        self.publish_as(payload, None)
    }

    /// [`App::publish`], with the fleet message id `id` when given (an event the consumer
    /// decided from a webhook, `fleet::codec::derived_id`).
    pub(crate) fn publish_as(&self, payload: Payload, id: Option<String>) -> Option<Arc<Event>> {
        let Some(fleet) = &self.fleet else {
            return Some(self.keep(self.bus.publish(payload)));
        };
        let local_only = matches!(payload, Payload::ApiLog(_)) && !fleet.settings.raw.share_api_log;
        if local_only || fleet.enqueue(&payload, id) {
            return Some(self.keep(self.bus.publish_unnumbered(payload)));
        }
        None
    }

    /// Fleet mode: routes an event read from the fleet log under its stream sequence `id`,
    /// stored at `timestamp`, and keeps it in the histories; `update` runs first on the status
    /// engine, under the lock [`App::decide`] takes, so the engine and the bus see the log in
    /// the same order. Every sink gets the events this node accepted (`own`); only `sse` sinks
    /// get the other nodes' (their own nodes' sinks have them), so MQTT, stdout and forward
    /// sinks see each event once fleet-wide.
    pub fn publish_consumed(
        &self,
        id: u64,
        timestamp: chrono::DateTime<Utc>,
        payload: Payload,
        own: bool,
        update: impl FnOnce(&mut StatusEngine, &Payload),
    ) -> Arc<Event> {
        let mut engine = self.engine.lock();
        update(&mut engine, &payload);
        // `sse`: the SSE sink's config `type` (`SinkKind::type_name`).
        let event = self
            .bus
            .publish_numbered(id, timestamp, payload, |kind| own || kind == "sse");
        let event = self.keep(event);
        drop(engine);
        event
    }

    /// Fleet mode, while NATS is reachable: waits until everything this node queued so far is
    /// stored in the fleet's stream (at most [`SETTLE_TIMEOUT`]), so an answered webhook is in
    /// the stream, in the order answered. Returns `false` when the stream did not confirm in
    /// time (a stalled server; the events stay buffered); `true` at once otherwise (single
    /// node, or NATS unreachable: the node works alone).
    pub async fn settled(&self) -> bool {
        let Some(fleet) = &self.fleet else {
            return true;
        };
        if !fleet.connected() {
            return true;
        }
        let ticket = fleet.outbox.last_ticket();
        tokio::time::timeout(SETTLE_TIMEOUT, fleet.outbox.stored_through(ticket))
            .await
            .is_ok()
    }

    /// Fleet mode, at shutdown: gives the outbox until `deadline` to publish what it holds,
    /// while NATS is reachable; logs what stays unpublished (lost with the process).
    pub async fn flush_fleet(&self, deadline: tokio::time::Instant) {
        let Some(fleet) = &self.fleet else { return };
        if fleet.connected() && !fleet.outbox.is_empty() {
            let ticket = fleet.outbox.last_ticket();
            let _ = tokio::time::timeout_at(deadline, fleet.outbox.stored_through(ticket)).await;
        }
        let left = fleet.outbox.len();
        if left > 0 {
            tracing::warn!(events = left, "fleet: events not published at shutdown");
        }
    }

    /// Fleet mode: adopts `status`, the fleet's (read from the status bucket), and shows it to
    /// this node's sinks, unnumbered: it is in the stream already (`fleet::correct`).
    pub fn show_adopted(&self, status: wa_hub_sinks::InstanceStatus) -> Arc<Event> {
        let mut engine = self.engine.lock();
        engine.adopt(status.clone());
        let event = self.bus.publish_unnumbered(Payload::Status(status));
        drop(engine);
        event
    }

    /// Runs `update` on the status engine for a change that publishes nothing (fleet mode:
    /// statuses read from the status bucket at start).
    pub fn update_engine<T>(&self, update: impl FnOnce(&mut StatusEngine) -> T) -> T {
        update(&mut self.engine.lock())
    }

    /// Keeps webhooks and API logs in their histories.
    fn keep(&self, event: Arc<Event>) -> Arc<Event> {
        match &event.payload {
            Payload::Webhook(_) => self.webhooks.push(event.clone()),
            Payload::ApiLog(_) => self.api_logs.push(event.clone()),
            Payload::Qr(_) | Payload::Status(_) => {}
        }
        event
    }

    /// Locks the status engine, runs `decide` on it, and publishes the payloads it returns, in
    /// order, before the lock is released: bus ids follow the order of decisions, so every
    /// sink and every SSE client sees an instance's statuses in the order they were decided.
    /// Returns the events published on the bus (in fleet mode only those shown locally at once).
    pub fn decide(
        &self,
        decide: impl FnOnce(&mut StatusEngine, chrono::DateTime<Utc>) -> Vec<Payload>,
    ) -> Vec<Arc<Event>> {
        let mut engine = self.engine.lock();
        let payloads = decide(&mut engine, Utc::now());
        let events = payloads
            .into_iter()
            .filter_map(|p| self.publish(p))
            .collect();
        drop(engine);
        events
    }

    /// Publishes the fact `fact` (a webhook) and, after it, the payloads `derive` decides from
    /// it, under the engine lock like [`App::decide`].
    ///
    /// Fleet mode while NATS is reachable: only the fact goes to the fleet log, and nothing is
    /// decided here. Every node applies the fact when its consumer reads it back, and the
    /// accepting node publishes what it decides then (`fleet::consume`). So the stream's order
    /// decides every node's statuses, and a fact the stream stores once (a webhook re-sent to
    /// another node) is decided once. While NATS is unreachable the node decides at once.
    pub fn decide_from(
        &self,
        fact: Payload,
        derive: impl FnOnce(&mut StatusEngine, chrono::DateTime<Utc>, &Payload) -> Vec<Payload>,
    ) -> Vec<Arc<Event>> {
        let mut engine = self.engine.lock();
        let Some(event) = self.publish(fact) else {
            return Vec::new();
        };
        let derived = derive(&mut engine, Utc::now(), &event.payload);
        let mut events = Vec::with_capacity(1 + derived.len());
        for p in derived {
            // Decided alone (NATS unreachable): under ids derived from the fact's, so the
            // stream refuses them when another node decided from the same fact first.
            let id = self
                .fleet
                .as_ref()
                .and_then(|f| f.derived_id(&event.payload, &p));
            events.extend(self.publish_as(p, id));
        }
        events.insert(0, event);
        drop(engine);
        events
    }

    /// Runs `read` on the status engine (locked for the call only).
    pub fn read_engine<T>(&self, read: impl FnOnce(&StatusEngine) -> T) -> T {
        read(&self.engine.lock())
    }

    /// The `/metrics` text: refreshes scrape-time values from sinks, the SSE hub and the
    /// status engine, then encodes everything.
    pub fn render_metrics(&self) -> Vec<u8> {
        let now = Utc::now();
        let samples: Vec<InstanceSample> = self.read_engine(|e| {
            e.views()
                .filter_map(|v| {
                    Some(InstanceSample {
                        id: v.id.to_owned(),
                        rank: v.rank?,
                        since_last_event_secs: v
                            .last_event_at
                            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
                    })
                })
                .collect()
        });
        let mut text =
            self.metrics
                .render(&self.bus.router().snapshot(), self.sse.as_deref(), &samples);
        if let Some(fleet) = &self.fleet {
            text.extend(fleet.metrics.render(&fleet.metrics_sample()));
        }
        text
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

    /// A token counting one in-flight request until dropped.
    pub fn request_token(&self) -> TaskTrackerToken {
        self.requests.token()
    }
}
