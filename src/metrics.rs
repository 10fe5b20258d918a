//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4).
//!
//! Hot-path counters (proxy, webhooks) are incremented where the event happens, by the code that
//! also logs it. Everything that already has a counter elsewhere (sinks, the SSE hub, the status
//! engine) is read at scrape time, so logs, stats and metrics never disagree.
//!
//! Labels stay bounded: routes are templates (`/instances/:id/client/status`) capped at
//! [`MAX_ROUTE_TEMPLATES`], webhook event names outside [`KNOWN_EVENTS`] count as `other`, and
//! per-instance series are capped by `metrics.max_instances`.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use wa_hub_sinks::sse::SseHub;
use wa_hub_sinks::{Rank, SinkSnapshot};

use crate::rejection::Rejection;

/// Prefix of every metric name. Metric names are public interface (dashboards, alerts): they
/// change only with a note in the README.
pub const PREFIX: &str = "wa_hub_sidecar";

/// Distinct proxy route templates tracked; further ones count as `other`.
pub const MAX_ROUTE_TEMPLATES: usize = 64;

/// Webhook event names wa-hub sends (whatsapp-web.js client events); others count as `other`.
pub const KNOWN_EVENTS: &[&str] = &[
    "qr",
    "authenticated",
    "auth_failure",
    "ready",
    "ready_timeout",
    "disconnected",
    "change_state",
    "restricted",
    "loading_screen",
    "message",
    "message_create",
    "message_ack",
    "message_revoke_everyone",
    "message_reaction",
    "vote_update",
    "group_join",
    "group_leave",
    "call",
    "unknown",
];

/// Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    route_templates: Mutex<HashSet<String>>,
    max_instances: usize,
    /// Proxied requests by `method`, `route` template and `status_class` (`2xx`…`5xx`, `none`).
    pub proxy_requests: IntCounterVec,
    /// Proxied request duration by `route`, seconds.
    pub proxy_duration: HistogramVec,
    /// 1 when wa-hub's `/health` last answered 200, 0 when it failed, -1 before the first probe.
    pub upstream_up: IntGauge,
    /// Upstream failures by `kind`: `connect_refused`, `connect_timeout`, `read_timeout`,
    /// `other`.
    pub upstream_errors: IntCounterVec,
    /// Accepted webhooks by `event` and `signature` (`valid`, `invalid`, `absent`, `unchecked`).
    pub webhooks_received: IntCounterVec,
    /// Rejected webhooks by `reason`.
    pub webhooks_rejected: IntCounterVec,
    /// Webhooks answered as duplicates of a body accepted within `webhook.dedup_window_secs`.
    pub webhooks_duplicate: IntCounter,
    /// Requests other than webhooks that the sidecar refused itself, by `reason`.
    pub requests_rejected: IntCounterVec,
    /// Webhook body sizes, bytes.
    pub webhook_body_bytes: Histogram,
    sinks: SinkFamilies,
    sse_clients: IntGauge,
    sse_events_sent: IntCounter,
    sse_dropped_slow: IntCounter,
    sse_resumes: IntCounter,
    sse_resets: IntCounter,
    instances: IntGauge,
    instance_rank: IntGaugeVec,
    instance_since_event: GaugeVec,
}

/// What the scrape reads from one instance.
#[derive(Debug, Clone)]
pub struct InstanceSample {
    /// Instance id (a label: bounded by `metrics.max_instances`).
    pub id: String,
    /// Lifecycle rank.
    pub rank: Rank,
    /// Seconds since its last event, when it had one.
    pub since_last_event_secs: Option<f64>,
}

fn name(n: &str) -> String {
    format!("{PREFIX}_{n}")
}

/// Registers metrics under [`PREFIX`] in one registry. The definitions are static (fixed
/// names, unique, valid labels), so a failure is a programming error caught by every test run.
struct Registrar(Registry);

impl Registrar {
    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &self,
        metric: prometheus::Result<M>,
    ) -> M {
        let m = metric.expect("metric definition is valid");
        self.0
            .register(Box::new(m.clone()))
            .expect("metric names are unique");
        m
    }

    fn counter(&self, n: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name(n), help))
    }

    fn counters(&self, n: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name(n), help), labels))
    }

    fn gauge(&self, n: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name(n), help))
    }

    fn gauges(&self, n: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name(n), help), labels))
    }

    /// `build_info` (version, git sha) and `start_time_seconds`, set once.
    fn process_info(&self) {
        let r = self;
        r.gauges(
            "build_info",
            "Build of the running sidecar (always 1).",
            &["version", "git_sha"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("WA_HUB_SIDECAR_GIT_SHA")])
        .set(1);
        r.add(Gauge::new(
            name("start_time_seconds"),
            "Start time of the process, Unix seconds.",
        ))
        .set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
        );
    }
}

/// Buckets of the proxy latency histogram, seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// Registers every metric, plus build info, start time and the standard process metrics.
    /// `max_instances` caps the per-instance series.
    ///
    /// # Panics
    /// Never for the static definitions here (names and labels are fixed and unique).
    pub fn new(max_instances: usize) -> Self {
        let r = Registrar(Registry::new());
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            let _ = r.0.register(Box::new(pc));
        }
        r.process_info();
        let size_buckets = prometheus::exponential_buckets(256.0, 4.0, 8).expect("valid buckets");
        let upstream_up = r.gauge(
            "upstream_up",
            "1 when wa-hub's /health last answered 200, 0 when not, -1 before the first probe.",
        );
        upstream_up.set(-1);
        let instance = ["instance_id"];
        Self {
            proxy_requests: r.counters(
                "proxy_requests_total",
                "Requests proxied to wa-hub.",
                &["method", "route", "status_class"],
            ),
            proxy_duration: r.add(HistogramVec::new(
                HistogramOpts::new(
                    name("proxy_request_duration_seconds"),
                    "Time from request start to the end of the response, seconds.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["route"],
            )),
            upstream_up,
            upstream_errors: r.counters(
                "upstream_errors_total",
                "Failed exchanges with wa-hub.",
                &["kind"],
            ),
            webhooks_received: r.counters(
                "webhooks_received_total",
                "Webhooks accepted and stored.",
                &["event", "signature"],
            ),
            webhooks_rejected: r.counters(
                "webhooks_rejected_total",
                "Webhooks refused.",
                &["reason"],
            ),
            requests_rejected: r.counters(
                "requests_rejected_total",
                "Requests (other than webhooks) the sidecar refused itself.",
                &["reason"],
            ),
            webhook_body_bytes: r.add(Histogram::with_opts(
                HistogramOpts::new(name("webhook_body_bytes"), "Webhook body sizes, bytes.")
                    .buckets(size_buckets),
            )),
            sinks: SinkFamilies::new(&r),
            sse_clients: r.gauge("sse_clients", "Connected SSE clients."),
            sse_events_sent: r.counter("sse_events_sent_total", "Events written to SSE clients."),
            sse_dropped_slow: r.counter(
                "sse_clients_dropped_slow_total",
                "SSE clients dropped for falling behind.",
            ),
            webhooks_duplicate: r.counter(
                "webhooks_duplicate_total",
                "Webhooks whose body was accepted within the dedup window: not stored again.",
            ),
            sse_resumes: r.counter(
                "sse_resumes_total",
                "SSE connections resumed after Last-Event-ID.",
            ),
            sse_resets: r.counter(
                "sse_resets_total",
                "SSE connections reset: Last-Event-ID not kept.",
            ),
            instances: r.gauge("instances", "Instances known to the status engine."),
            instance_rank: r.gauges(
                "instance_lifecycle_rank",
                "Display rank: 0 disconnected, 1 needs_qr, 2 syncing, 3 active.",
                &instance,
            ),
            instance_since_event: r.add(GaugeVec::new(
                Opts::new(
                    name("instance_seconds_since_last_event"),
                    "Seconds since the instance's last webhook.",
                ),
                &instance,
            )),
            registry: r.0,
            route_templates: Mutex::new(HashSet::new()),
            max_instances,
        }
    }

    /// The route label of a wa-hub path: its template, or `other` once
    /// [`MAX_ROUTE_TEMPLATES`] distinct templates were seen.
    pub fn route_label(&self, upstream_path: &str) -> String {
        let template = route_template(upstream_path);
        let mut seen = self.route_templates.lock();
        if seen.contains(&template) {
            return template;
        }
        if seen.len() < MAX_ROUTE_TEMPLATES {
            seen.insert(template.clone());
            template
        } else {
            "other".to_owned()
        }
    }

    /// Counts one finished proxied request.
    pub fn observe_proxy(&self, method: &str, route: &str, status: Option<u16>, took: Duration) {
        let class = match status {
            Some(s @ 100..=599) => ["1xx", "2xx", "3xx", "4xx", "5xx"][usize::from(s / 100 - 1)],
            _ => "none",
        };
        let method = match method {
            "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => method,
            _ => "other",
        };
        self.proxy_requests
            .with_label_values(&[method, route, class])
            .inc();
        self.proxy_duration
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// Counts one accepted webhook.
    pub fn webhook_received(&self, event: &str, signature: &str) {
        let event = if KNOWN_EVENTS.contains(&event) {
            event
        } else {
            "other"
        };
        self.webhooks_received
            .with_label_values(&[event, signature])
            .inc();
    }

    /// Counts one rejection: a webhook's in `webhooks_rejected_total`, any other request's in
    /// `requests_rejected_total`, both by [`Rejection::reason`].
    pub fn rejected(&self, webhook: bool, rejection: &Rejection) {
        let family = if webhook {
            &self.webhooks_rejected
        } else {
            &self.requests_rejected
        };
        family.with_label_values(&[rejection.reason()]).inc();
    }

    /// Renders the exposition text after refreshing the scrape-time values.
    pub fn render(
        &self,
        sinks: &[SinkSnapshot],
        sse: Option<&SseHub>,
        instances: &[InstanceSample],
    ) -> Vec<u8> {
        self.sinks.refresh(sinks);
        if let Some(hub) = sse {
            self.sse_clients
                .set(i64::try_from(hub.clients()).unwrap_or(i64::MAX));
            catch_up(
                &self.sse_events_sent,
                hub.stats.events_sent.load(Ordering::Relaxed),
            );
            catch_up(
                &self.sse_dropped_slow,
                hub.stats.clients_dropped_slow.load(Ordering::Relaxed),
            );
            catch_up(&self.sse_resumes, hub.stats.resumes.load(Ordering::Relaxed));
            catch_up(&self.sse_resets, hub.stats.resets.load(Ordering::Relaxed));
        }
        self.instances
            .set(i64::try_from(instances.len()).unwrap_or(i64::MAX));
        self.instance_rank.reset();
        self.instance_since_event.reset();
        for i in instances.iter().take(self.max_instances) {
            self.instance_rank
                .with_label_values(&[i.id.as_str()])
                .set(i64::from(i.rank.as_u8()));
            if let Some(s) = i.since_last_event_secs {
                self.instance_since_event
                    .with_label_values(&[i.id.as_str()])
                    .set(s);
            }
        }
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The per-sink families (label `sink`), refreshed from the sinks' counters at scrape time.
#[derive(Debug)]
struct SinkFamilies {
    deliveries: IntCounterVec,
    dropped: IntCounterVec,
    retries: IntCounterVec,
    dead_letters: IntCounterVec,
    restarts: IntCounterVec,
    queue_depth: IntGaugeVec,
    pending: IntGaugeVec,
    connected: IntGaugeVec,
}

impl SinkFamilies {
    fn new(r: &Registrar) -> Self {
        let sink = ["sink"];
        Self {
            deliveries: r.counters(
                "sink_deliveries_total",
                "Events by sink and outcome: delivered (reached the destination; forward: the \
                 receiver answered 2xx) or failed. Drops and dead letters have their own counters.",
                &["sink", "outcome"],
            ),
            dropped: r.counters(
                "sink_dropped_total",
                "Events dropped by a sink (queue full, too large).",
                &sink,
            ),
            retries: r.counters(
                "sink_retries_total",
                "Delivery attempts a sink retried.",
                &sink,
            ),
            dead_letters: r.counters(
                "sink_dead_letters_total",
                "Events moved to a dead-letter list.",
                &sink,
            ),
            restarts: r.counters(
                "sink_restarts_total",
                "Sink restarts after a failure or panic.",
                &sink,
            ),
            queue_depth: r.gauges(
                "sink_queue_depth",
                "Events waiting in a sink's queue.",
                &sink,
            ),
            pending: r.gauges(
                "sink_pending_events",
                "Events held inside a sink (buffer, outbox).",
                &sink,
            ),
            connected: r.gauges(
                "sink_connected",
                "1 when a connection-holding sink (MQTT) is connected, else 0.",
                &sink,
            ),
        }
    }

    /// Raises the counters and sets the gauges from each sink's snapshot.
    fn refresh(&self, sinks: &[SinkSnapshot]) {
        for s in sinks {
            let st = &s.stats;
            let name = s.name.as_str();
            catch_up(
                &self.deliveries.with_label_values(&[name, "delivered"]),
                st.delivered.load(Ordering::Relaxed),
            );
            catch_up(
                &self.deliveries.with_label_values(&[name, "failed"]),
                st.failed.load(Ordering::Relaxed),
            );
            catch_up(
                &self.dropped.with_label_values(&[name]),
                st.dropped.load(Ordering::Relaxed),
            );
            catch_up(
                &self.retries.with_label_values(&[name]),
                st.retries.load(Ordering::Relaxed),
            );
            catch_up(
                &self.dead_letters.with_label_values(&[name]),
                st.dead_letters.load(Ordering::Relaxed),
            );
            catch_up(
                &self.restarts.with_label_values(&[name]),
                st.restarts.load(Ordering::Relaxed),
            );
            self.queue_depth
                .with_label_values(&[name])
                .set(i64::try_from(s.queue_depth).unwrap_or(i64::MAX));
            self.pending
                .with_label_values(&[name])
                .set(i64::try_from(st.pending.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
            if let Some(up) = st.connected() {
                self.connected.with_label_values(&[name]).set(i64::from(up));
            }
        }
    }
}

/// Raises a counter to `total` (sources are monotonic atomics).
pub(crate) fn catch_up(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// The template of a wa-hub path: query dropped, the segment after `instances` replaced by
/// `:id`, segments that look like values (digits, UUIDs, long or mixed-case tokens) by
/// `:param`, at most six segments.
pub fn route_template(upstream_path: &str) -> String {
    let path = upstream_path.split('?').next().unwrap_or_default();
    let mut out = String::with_capacity(path.len());
    let mut after_instances = false;
    for (i, seg) in path.split('/').filter(|s| !s.is_empty()).enumerate() {
        if i >= 6 {
            out.push_str("/...");
            break;
        }
        out.push('/');
        if after_instances {
            out.push_str(":id");
        } else if looks_like_value(seg) {
            out.push_str(":param");
        } else {
            out.push_str(seg);
        }
        after_instances = i == 0 && seg == "instances";
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn looks_like_value(seg: &str) -> bool {
    seg.len() > 32
        || !seg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_hide_ids_and_values() {
        assert_eq!(
            route_template("/instances/WASP-x/client/status?x=1"),
            "/instances/:id/client/status"
        );
        assert_eq!(route_template("/instances"), "/instances");
        assert_eq!(route_template("/instances/abc"), "/instances/:id");
        assert_eq!(route_template("/health"), "/health");
        assert_eq!(route_template("/"), "/");
        assert_eq!(route_template("/queue/12345/items"), "/queue/:param/items");
        assert_eq!(route_template("/a/b/c/d/e/f/g/h"), "/a/b/c/d/e/f/...");
    }

    #[test]
    fn route_labels_are_capped() {
        let m = Metrics::new(10);
        for i in 0..200 {
            let seg: String =
                std::iter::repeat_n(char::from(b'a' + (i % 26) as u8), 1 + i / 26).collect();
            m.route_label(&format!("/{seg}"));
        }
        assert_eq!(m.route_label("/zzzzzzzzzzzzzzzzzz"), "other");
        assert!(m.route_templates.lock().len() <= MAX_ROUTE_TEMPLATES);
    }

    #[test]
    fn unknown_event_names_count_as_other() {
        let m = Metrics::new(10);
        m.webhook_received("brand_new", "valid");
        m.webhook_received("qr", "valid");
        assert_eq!(
            m.webhooks_received
                .with_label_values(&["other", "valid"])
                .get(),
            1
        );
        assert_eq!(
            m.webhooks_received
                .with_label_values(&["qr", "valid"])
                .get(),
            1
        );
    }

    #[test]
    fn render_is_text_exposition_with_prefix() {
        let m = Metrics::new(10);
        m.observe_proxy("GET", "/health", Some(200), Duration::from_millis(3));
        let text = String::from_utf8(m.render(
            &[],
            None,
            &[InstanceSample {
                id: "a".into(),
                rank: Rank::Active,
                since_last_event_secs: Some(1.5),
            }],
        ))
        .unwrap();
        assert!(text.contains("wa_hub_sidecar_proxy_requests_total{method=\"GET\",route=\"/health\",status_class=\"2xx\"} 1"));
        assert!(text.contains("wa_hub_sidecar_instance_lifecycle_rank{instance_id=\"a\"} 3"));
        assert!(text.contains("wa_hub_sidecar_build_info{"));
    }
}
