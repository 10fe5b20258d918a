//! [`Fleet`]: this node's link to the fleet. It owns a small Tokio runtime of its own (the
//! NATS client, the publisher and the consumer run there, apart from Pingora's), the outbox,
//! and the state start-up left: whether the stream and bucket are in place.
//!
//! Life: [`Fleet::start`] connects and checks the stream and bucket (a mismatch fails start-up;
//! an unreachable NATS does not: the node runs alone and retries); [`Fleet::run`] then starts
//! the publisher and the consumer for the app.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use wa_hub_sinks::Payload;

use super::codec;
use super::config::FleetSettings;
use super::publish::Outbox;
use super::setup::{connect_options, ensure, FleetError};

/// nats-server's default `max_payload`, bytes.
pub const DEFAULT_MAX_PAYLOAD: u64 = 1024 * 1024;

/// Room kept in a message for the fleet headers, bytes (they take under 1 KiB).
pub const HEADER_ALLOWANCE: u64 = 4096;

/// The fleet link of one node.
#[derive(Debug)]
pub struct Fleet {
    /// The checked `fleet:` settings.
    pub settings: FleetSettings,
    handle: Handle,
    client: async_nats::Client,
    js: jetstream::Context,
    kv: OnceLock<kv::Store>,
    /// Events waiting to be published.
    pub outbox: Outbox,
    /// Signs this node's messages and checks the others' (`fleet.fleet_token`).
    pub sealer: codec::Sealer,
    /// `Wahub-Msg-Id`s consumed within the duplicate window, when messages are sealed
    /// (replays refused, see `consume`).
    pub consumed_ids: crate::dedup::Dedup,
    /// The largest message the NATS server takes (its `max_payload`, bytes; 1 MiB, the
    /// server's default, until it is known).
    max_payload: AtomicU64,
    /// Messages of this node shown locally while NATS was unreachable, by `Nats-Msg-Id`: not
    /// shown again when they come back from the stream.
    shown_locally: Mutex<HashSet<String>>,
    /// Whether the consumer is reading the stream.
    pub consuming: AtomicBool,
    /// Messages the stream holds that this node has not consumed yet (at the last message).
    pub consumer_pending: AtomicU64,
    /// Last stream sequence consumed.
    pub consumed_seq: AtomicU64,
    /// Stream messages the consumer skipped (not fleet events, or unsealed).
    pub skipped: AtomicU64,
    /// Limits the consumer's skip warnings to one per 10 s.
    pub skip_log: wa_hub_sinks::throttle::LogThrottle,
    /// The first stream sequence this process consumed (0 until the consumer started): the
    /// SSE hub holds nothing older.
    pub start_seq: AtomicU64,
    /// Counts (re)connections to NATS: the consumer starts over after each.
    pub connections: tokio::sync::watch::Receiver<u64>,
    /// The fleet metrics.
    pub metrics: super::metrics::FleetMetrics,
    /// The instances this node's wa-hub runs (proxy routing).
    pub local_instances: super::instances::LocalInstances,
    /// The JetStream link's health: the periodic probe's results ([`super::link`]).
    pub link: super::link::Link,
    /// This node's presence key: detects a `node_id` used twice ([`super::presence`]).
    pub presence: super::presence::Presence,
}

impl Fleet {
    /// Connects to NATS and makes sure the stream and bucket exist with the configured
    /// settings. Waits at most `fleet.connect_timeout_ms` for NATS: when it does not answer,
    /// logs a warning and returns a fleet that runs alone until NATS is reachable.
    ///
    /// # Errors
    /// [`FleetError::StreamMismatch`] or [`FleetError::BucketMismatch`] when the stream or
    /// bucket exists with other settings; [`FleetError::NodeIdInUse`] when another live
    /// process holds this `node_id` (up to [`super::presence::STALE_AFTER`] is spent finding
    /// out whether it is alive); or any
    /// JetStream refusal while NATS is reachable; [`FleetError::Runtime`] when the runtime
    /// cannot be built.
    ///
    /// # Panics
    /// When called from inside a Tokio runtime (it blocks on the fleet's own runtime); start-up
    /// calls it before Pingora starts any.
    pub fn start(settings: FleetSettings) -> Result<Arc<Self>, FleetError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fleet")
            .enable_all()
            .build()
            .map_err(FleetError::Runtime)?;
        let handle = runtime.handle().clone();
        // The runtime lives as long as the process, on a thread of its own.
        std::thread::Builder::new()
            .name("fleet-runtime".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(FleetError::Runtime)?;
        let url = settings.raw.nats_url.clone();
        let wait = Duration::from_millis(settings.raw.connect_timeout_ms.get());
        let (connections_tx, connections) = tokio::sync::watch::channel(0);
        let opts = connect_options(&settings, connections_tx);
        let client = handle
            .block_on(async { opts.connect(url.as_str()).await })
            .map_err(|e| FleetError::Connect(e.to_string()))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(3));
        let fleet = Arc::new(Self {
            outbox: Outbox::new(settings.raw.buffer_events.get()),
            max_payload: AtomicU64::new(DEFAULT_MAX_PAYLOAD),
            consumed_ids: crate::dedup::Dedup::new(settings.duplicate_window),
            sealer: codec::Sealer::new(
                settings
                    .raw
                    .fleet_token
                    .as_ref()
                    .map(|t| t.expose().as_bytes()),
            ),
            settings,
            handle,
            client,
            js,
            kv: OnceLock::new(),
            shown_locally: Mutex::new(HashSet::new()),
            consuming: AtomicBool::new(false),
            consumer_pending: AtomicU64::new(0),
            consumed_seq: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            skip_log: wa_hub_sinks::throttle::LogThrottle::new(Duration::from_secs(10)),
            start_seq: AtomicU64::new(0),
            connections,
            metrics: Default::default(),
            local_instances: Default::default(),
            link: Default::default(),
            presence: super::presence::Presence::new(),
        });
        let f = fleet.clone();
        let outcome = fleet.handle.block_on(async move {
            tokio::time::timeout(wait, async {
                // Wait for the first connection, then check the stream and bucket.
                while f.client.connection_state() != async_nats::connection::State::Connected {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                ensure(&f.js, &f.settings).await
            })
            .await
        });
        match outcome {
            Ok(Ok(store)) => {
                fleet.refresh_max_payload();
                // A second live process with this node id stops here. Other failures leave
                // the check to the presence refresh (`presence::run`).
                let (f, s) = (fleet.clone(), store.clone());
                match fleet
                    .handle
                    .block_on(async move { f.presence.claim(&s, &f.settings).await })
                {
                    Err(e @ FleetError::NodeIdInUse { .. }) => return Err(e),
                    Err(e) => tracing::warn!(error = %e, "fleet: presence not claimed at start"),
                    Ok(()) => {}
                }
                let _ = fleet.kv.set(store);
                tracing::info!(
                    node = %fleet.settings.node_id,
                    stream = %fleet.settings.raw.stream,
                    "fleet: connected to NATS"
                );
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => tracing::warn!(
                url = %fleet.settings.raw.nats_url,
                "fleet: NATS unreachable at start; working alone until it answers"
            ),
        }
        Ok(fleet)
    }

    /// The largest webhook body the fleet can carry, bytes: the server's `max_payload` less
    /// [`HEADER_ALLOWANCE`] for the fleet headers. A larger message would be refused by the
    /// server and hold up every event queued behind it. Read on every webhook: one atomic
    /// load ([`Fleet::refresh_max_payload`] keeps it current).
    pub fn max_body_bytes(&self) -> usize {
        let payload = self.max_payload.load(Ordering::Relaxed);
        usize::try_from(payload.saturating_sub(HEADER_ALLOWANCE)).unwrap_or(usize::MAX)
    }

    /// Takes the `max_payload` of the server the client is connected to (kept when not
    /// connected yet). Called at start and whenever the consumer starts over (after each
    /// reconnection), not per message: the server info is a copy of the server's whole
    /// announcement.
    pub fn refresh_max_payload(&self) {
        let announced = self.client.server_info().max_payload as u64;
        if announced > 0 {
            self.max_payload.store(announced, Ordering::Relaxed);
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    /// Whether the client is connected, the stream and bucket are in place, and JetStream
    /// answered the last probe in time (a stalled server is not connected, see
    /// [`super::link`]).
    pub fn connected(&self) -> bool {
        self.kv.get().is_some() && self.link.responsive() && self.client_state_connected()
    }

    /// Whether the NATS client holds a connection now (says nothing of a stalled server).
    pub fn client_state_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// At shutdown: deletes this process's presence key (at most 1 s), so the next process with
    /// this node id starts at once, on any machine. Failures are logged at debug level (the
    /// key then goes stale in 5 s).
    pub async fn release_presence(&self) {
        let Some(store) = self.kv().cloned() else {
            return;
        };
        let (p, node) = (&self.presence, self.node_id().to_owned());
        let release = async move { p.release(&store, &node).await };
        // The NATS client lives on the fleet runtime; a plain await from another is fine, the
        // timer included.
        let _ = tokio::time::timeout(Duration::from_secs(1), release).await;
    }

    /// The status bucket, once in place.
    pub fn kv(&self) -> Option<&kv::Store> {
        self.kv.get()
    }

    pub(crate) fn set_kv(&self, store: kv::Store) {
        let _ = self.kv.set(store);
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The fleet runtime's handle (tasks talking to NATS run there).
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The message id of `derived`, decided from the fact `fact` ([`codec::derived_from`]).
    pub fn derived_id(&self, fact: &Payload, derived: &Payload) -> Option<String> {
        codec::derived_from(fact, derived)
    }

    /// Queues `payload` for the fleet log, under the `Nats-Msg-Id` `id` when given (see
    /// [`codec::encode`]). Returns `true` when the node must also show it locally now, because
    /// NATS is unreachable (it is then not shown again when it comes back from the stream).
    /// An event that finds the outbox full is counted as lost and shown locally only.
    pub fn enqueue(&self, payload: &Payload, id: Option<String>) -> bool {
        let msg = codec::encode(
            &self.settings.raw.subject_prefix,
            self.node_id(),
            payload,
            id,
        );
        let max = self.max_body_bytes();
        if msg.body.len() > max {
            // The server would refuse it, and retrying would hold up everything behind it.
            self.outbox.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                kind = msg.kind.as_str(),
                bytes = msg.body.len(),
                max,
                "fleet: event larger than the NATS server's max_payload; shown on this node only"
            );
            return true;
        }
        let alone = !self.connected();
        let id = msg.msg_id.clone();
        if !self.outbox.push(msg) {
            return true;
        }
        if alone {
            self.shown_locally.lock().insert(id);
        }
        alone
    }

    /// The link's counters now, for the `wa_hub_sidecar_fleet_*` metrics.
    pub fn metrics_sample(&self) -> super::metrics::FleetSample {
        let o = &self.outbox;
        super::metrics::FleetSample {
            connected: self.connected(),
            buffered: o.len() as u64,
            publish_lag_ms: o.last_lag_ms.load(Ordering::Relaxed),
            pending: self.consumer_pending.load(Ordering::Relaxed),
            consumed: self.consumed_seq.load(Ordering::Relaxed),
            published: o.published.load(Ordering::Relaxed),
            duplicates: o.duplicates.load(Ordering::Relaxed),
            failures: o.failures.load(Ordering::Relaxed),
            lost: o.lost.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            responsive: self.link.responsive(),
            probe_rtt_ms: self.link.rtt_ms(),
            stream_resets: self.link.stream_resets(),
            node_id_conflict: self.presence.conflict().is_some(),
        }
    }

    /// Whether the message `msg_id` of this node was shown locally already (forgets it).
    pub fn take_shown_locally(&self, msg_id: &str) -> bool {
        let mut set = self.shown_locally.lock();
        !set.is_empty() && set.remove(msg_id)
    }
}
