//! Fleet metrics, refreshed at each scrape from the fleet link's counters and appended to
//! `/metrics` (names `wa_hub_sidecar_fleet_*`; no labels, so the series stay bounded):
//!
//! | metric | type | what |
//! |---|---|---|
//! | `wa_hub_sidecar_fleet_connected` | gauge | 1 while NATS answers and the stream is in place |
//! | `wa_hub_sidecar_fleet_responsive` | gauge | 1 while JetStream answered the last probe (every 1 s) within 2 s; 0 while nats-server is stalled |
//! | `wa_hub_sidecar_fleet_probe_rtt_seconds` | gauge | round trip of the last answered probe (a stream info request) |
//! | `wa_hub_sidecar_fleet_node_id_conflict` | gauge | 1 while another live process uses this `fleet.node_id` |
//! | `wa_hub_sidecar_fleet_stream_resets_total` | counter | times the stream was found created anew (NATS lost its store; sequence numbers started again) |
//! | `wa_hub_sidecar_fleet_buffered_events` | gauge | events accepted here, not yet stored in the stream |
//! | `wa_hub_sidecar_fleet_publish_lag_seconds` | gauge | acceptance → stream acknowledgement, last event |
//! | `wa_hub_sidecar_fleet_consumer_pending_messages` | gauge | stream messages this node has yet to consume (consumer lag) |
//! | `wa_hub_sidecar_fleet_consumed_sequence` | gauge | last stream sequence consumed |
//! | `wa_hub_sidecar_fleet_published_total` | counter | events stored in the stream |
//! | `wa_hub_sidecar_fleet_duplicates_total` | counter | publishes the stream answered as duplicates (stored once) |
//! | `wa_hub_sidecar_fleet_publish_failures_total` | counter | failed publish rounds (retried) |
//! | `wa_hub_sidecar_fleet_lost_events_total` | counter | events dropped because the buffer was full |
//! | `wa_hub_sidecar_fleet_skipped_messages_total` | counter | stream messages skipped: not a fleet event, a status no node writes, or a wrong fleet signature |

use prometheus::{Encoder, Gauge, IntCounter, IntGauge, Registry, TextEncoder};

use crate::metrics::catch_up;

/// The fleet's metric families, in a registry of their own.
#[derive(Debug)]
pub struct FleetMetrics {
    registry: Registry,
    connected: IntGauge,
    responsive: IntGauge,
    probe_rtt: Gauge,
    node_id_conflict: IntGauge,
    stream_resets: IntCounter,
    buffered: IntGauge,
    publish_lag: Gauge,
    pending: IntGauge,
    consumed: IntGauge,
    published: IntCounter,
    duplicates: IntCounter,
    failures: IntCounter,
    lost: IntCounter,
    skipped: IntCounter,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: T) -> T {
    // Names are fixed and distinct: registration cannot fail.
    let _ = r.register(Box::new(m.clone()));
    m
}

impl Default for FleetMetrics {
    fn default() -> Self {
        let r = Registry::new();
        let g = |n: &str, h: &str| reg(&r, IntGauge::new(n, h).expect("valid metric"));
        let c = |n: &str, h: &str| reg(&r, IntCounter::new(n, h).expect("valid metric"));
        Self {
            connected: g(
                "wa_hub_sidecar_fleet_connected",
                "1 while NATS answers and the fleet stream is in place",
            ),
            responsive: g(
                "wa_hub_sidecar_fleet_responsive",
                "1 while JetStream answered the last probe in time (0: nats-server stalled)",
            ),
            probe_rtt: reg(
                &r,
                Gauge::new(
                    "wa_hub_sidecar_fleet_probe_rtt_seconds",
                    "Round trip of the last answered JetStream probe (stream info)",
                )
                .expect("valid metric"),
            ),
            node_id_conflict: g(
                "wa_hub_sidecar_fleet_node_id_conflict",
                "1 while another live process uses this fleet.node_id",
            ),
            stream_resets: c(
                "wa_hub_sidecar_fleet_stream_resets_total",
                "Times the fleet stream was found created anew (sequence numbers started again)",
            ),
            buffered: g(
                "wa_hub_sidecar_fleet_buffered_events",
                "Events accepted by this node not yet stored in the fleet stream",
            ),
            publish_lag: reg(
                &r,
                Gauge::new(
                    "wa_hub_sidecar_fleet_publish_lag_seconds",
                    "Seconds from acceptance to the stream's acknowledgement, last event",
                )
                .expect("valid metric"),
            ),
            pending: g(
                "wa_hub_sidecar_fleet_consumer_pending_messages",
                "Stream messages this node has yet to consume",
            ),
            consumed: g(
                "wa_hub_sidecar_fleet_consumed_sequence",
                "Last stream sequence this node consumed",
            ),
            published: c(
                "wa_hub_sidecar_fleet_published_total",
                "Events stored in the fleet stream by this node",
            ),
            duplicates: c(
                "wa_hub_sidecar_fleet_duplicates_total",
                "Publishes the stream answered as duplicates (stored once)",
            ),
            failures: c(
                "wa_hub_sidecar_fleet_publish_failures_total",
                "Failed publish rounds (retried)",
            ),
            lost: c(
                "wa_hub_sidecar_fleet_lost_events_total",
                "Events not published to the fleet because the buffer was full",
            ),
            skipped: c(
                "wa_hub_sidecar_fleet_skipped_messages_total",
                "Stream messages skipped: not a fleet event, or a wrong fleet signature",
            ),
            registry: r,
        }
    }
}

/// The fleet link's counters at one moment, for [`FleetMetrics::render`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FleetSample {
    /// Whether NATS is connected.
    pub connected: bool,
    /// Events held in the outbox, not yet stored in the stream.
    pub buffered: u64,
    /// Time the last stored event waited in the outbox, ms.
    pub publish_lag_ms: u64,
    /// Stream messages the consumer has not read yet.
    pub pending: u64,
    /// Stream sequence the consumer reached.
    pub consumed: u64,
    /// Events stored in the stream.
    pub published: u64,
    /// Events the stream already held (`Nats-Msg-Id` seen).
    pub duplicates: u64,
    /// Publish attempts that failed and will be retried.
    pub failures: u64,
    /// Events lost past the outbox's bound.
    pub lost: u64,
    /// Stream messages the consumer skipped.
    pub skipped: u64,
    /// Whether JetStream answered the last probe in time.
    pub responsive: bool,
    /// Round trip of the last answered probe, ms.
    pub probe_rtt_ms: f64,
    /// Times the stream was found created anew.
    pub stream_resets: u64,
    /// Whether another live process uses this node id.
    pub node_id_conflict: bool,
}

impl FleetMetrics {
    /// Refreshes every value from `s` and encodes them as Prometheus text.
    pub fn render(&self, s: &FleetSample) -> Vec<u8> {
        self.connected.set(i64::from(s.connected));
        self.responsive.set(i64::from(s.responsive));
        self.probe_rtt.set(s.probe_rtt_ms / 1000.0);
        self.node_id_conflict.set(i64::from(s.node_id_conflict));
        catch_up(&self.stream_resets, s.stream_resets);
        self.buffered
            .set(i64::try_from(s.buffered).unwrap_or(i64::MAX));
        self.publish_lag.set(s.publish_lag_ms as f64 / 1000.0);
        self.pending
            .set(i64::try_from(s.pending).unwrap_or(i64::MAX));
        self.consumed
            .set(i64::try_from(s.consumed).unwrap_or(i64::MAX));
        catch_up(&self.published, s.published);
        catch_up(&self.duplicates, s.duplicates);
        catch_up(&self.failures, s.failures);
        catch_up(&self.lost, s.lost);
        catch_up(&self.skipped, s.skipped);
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode fleet metrics");
        }
        out
    }
}
