//! The MQTT sink as the router sees it: turns events into messages and hands them, without
//! waiting, to the connection task ([`super::connection`]) through a bounded buffer.
//!
//! What is published (topic layout in [`super::topic`]):
//! - `webhook` events: the original request body ([`WebhookRecord::raw`]) to
//!   `<prefix>/<instance>/events/<event>`, not retained;
//! - `status` events: the display status JSON to `<prefix>/<instance>/status`, retained;
//! - `apiLog` and `qr` events are ignored: API calls are the proxy's business, and a QR is
//!   already in the `qr` webhook (`events/qr`) and in the retained status (`qr`, `showQr`).
//!
//! [`WebhookRecord::raw`]: crate::envelope::WebhookRecord::raw

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::MqttSettings;
use super::connection;
use super::message::{Message, MessageKind, Shared};
use super::topic::{publish_packet_bytes, MAX_TOPIC_BYTES};
use crate::envelope::{Event, Payload};
use crate::router::SinkStats;
use crate::sink::{Sink, SinkError};

/// Most instances whose newest status waits outside the buffer (see [`MqttSink`]).
pub const MAX_OVERFLOW_STATUSES: usize = 10_000;

/// Publishes webhooks and statuses to an MQTT broker.
///
/// [`Sink::start`] spawns the connection task, which owns the rumqttc event loop, reconnects
/// with capped exponential backoff and publishes `online` on every connect.
/// [`Sink::deliver`] never waits: it puts the message in a buffer of `buffer_capacity`
/// messages, or drops and counts it when the buffer is full (the newest status of each
/// instance is kept aside instead and published once the buffer has drained).
/// [`Sink::stop`] delivers what is held for up to `flush_timeout_ms`, publishes `offline` and
/// disconnects.
///
/// Counters (the router's [`SinkStats`]): `dropped` (too large, topic too long, buffer full,
/// left at shutdown), `pending` (accepted, not yet confirmed by the broker — PUBACK at QoS 1,
/// written to the socket at QoS 0), `retries` (reconnection attempts), connection state.
pub struct MqttSink {
    settings: MqttSettings,
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Message>>,
    stop_tx: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MqttSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSink")
            .field("name", &self.shared.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl MqttSink {
    /// A sink named `name` (for logs) with validated `settings`, counting into `stats`.
    /// Nothing connects before [`Sink::start`].
    pub fn new(name: impl Into<String>, settings: MqttSettings, stats: Arc<SinkStats>) -> Self {
        Self {
            settings,
            shared: Arc::new(Shared::new(name.into(), stats)),
            tx: None,
            stop_tx: None,
            task: None,
        }
    }

    /// The message for `event`, or `None` for kinds this sink ignores.
    fn message(&self, event: &Event) -> Option<Message> {
        let topics = &self.settings.topics;
        match &event.payload {
            Payload::Webhook(w) => Some(Message {
                topic: topics.event(w.instance_id.as_deref(), &w.event),
                payload: w.raw.clone(),
                retain: false,
                kind: MessageKind::Event,
            }),
            Payload::Status(s) => Some(Message {
                topic: topics.status(&s.instance_id),
                // Serializing our own plain struct cannot fail.
                payload: Bytes::from(serde_json::to_vec(s).unwrap_or_default()),
                retain: true,
                kind: MessageKind::Status,
            }),
            Payload::ApiLog(_) | Payload::Qr(_) => None,
        }
    }

    /// Checks topic length and packet size; counts and logs a refusal.
    fn fits(&self, msg: &Message) -> bool {
        if msg.topic.len() > MAX_TOPIC_BYTES {
            self.shared.drop_refused(
                &msg.topic,
                "topic longer than MQTT allows",
                msg.topic.len(),
                MAX_TOPIC_BYTES,
            );
            return false;
        }
        let size = publish_packet_bytes(
            msg.topic.len(),
            msg.payload.len(),
            self.settings.qos != rumqttc::QoS::AtMostOnce,
        );
        if size > self.settings.max_packet_bytes {
            self.shared.drop_refused(
                &msg.topic,
                "packet larger than max_packet_bytes",
                size,
                self.settings.max_packet_bytes,
            );
            return false;
        }
        true
    }

    /// Keeps the newest status of a topic aside when the buffer is full.
    fn overflow_status(&self, msg: Message) {
        let mut overflow = self.shared.overflow.lock();
        let len = overflow.len();
        match overflow.get_mut(&msg.topic) {
            Some(slot) => *slot = msg.payload,
            None if len < MAX_OVERFLOW_STATUSES => {
                overflow.insert(msg.topic, msg.payload);
                self.shared.stats.pending.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                drop(overflow);
                self.shared.drop_full(self.settings.buffer_capacity);
                return;
            }
        }
        drop(overflow);
        self.shared.wake.notify_one();
    }
}

#[async_trait]
impl Sink for MqttSink {
    async fn start(&mut self) -> Result<(), SinkError> {
        if self.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel(self.settings.buffer_capacity);
        let (stop_tx, stop_rx) = watch::channel(false);
        self.shared.stats.set_connected(false);
        self.task = Some(tokio::spawn(connection::run(
            self.settings.clone(),
            rx,
            stop_rx,
            self.shared.clone(),
        )));
        self.tx = Some(tx);
        self.stop_tx = Some(stop_tx);
        Ok(())
    }

    async fn deliver(&mut self, event: &Arc<Event>) -> Result<(), SinkError> {
        let Some(msg) = self.message(event) else {
            return Ok(());
        };
        if !self.fits(&msg) {
            return Ok(());
        }
        let Some(tx) = &self.tx else {
            return Err(SinkError::Other("mqtt sink not started".into()));
        };
        let is_status = msg.kind == MessageKind::Status;
        let topic = is_status.then(|| msg.topic.clone());
        // Counted before it is queued: the connection task may confirm it (and settle the
        // count) before `try_send` even returns.
        self.shared.stats.pending.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(msg) {
            Ok(()) => {
                if let Some(topic) = topic {
                    // A newer status is queued: an older one kept aside is obsolete.
                    let removed = self.shared.overflow.lock().remove(&topic);
                    if removed.is_some() {
                        self.shared.settle(1);
                    }
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.shared.settle(1);
                if is_status {
                    self.overflow_status(msg);
                } else {
                    self.shared.drop_full(self.settings.buffer_capacity);
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.shared.settle(1);
                // The connection task ended (it only does so after `stop`): have the router
                // restart the sink, which starts a new one.
                self.task = None;
                Err(SinkError::Other("mqtt connection task ended".into()))
            }
        }
    }

    async fn stop(&mut self) {
        if let Some(stop) = self.stop_tx.take() {
            let _ = stop.send(true);
        }
        self.tx = None;
        if let Some(task) = self.task.take() {
            let limit = self.settings.flush_timeout + Duration::from_secs(3);
            if tokio::time::timeout(limit, task).await.is_err() {
                tracing::warn!(sink = %self.shared.name, "mqtt: connection task did not stop in time");
            }
        }
        self.shared.stats.set_connected(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{InstanceStatus, QrEvent};
    use crate::mqtt::MqttConfig;
    use crate::test_support::{api_log, webhook};
    use chrono::Utc;
    use std::time::Instant;

    fn status(id: u64, instance: &str, word: &str) -> Arc<Event> {
        Arc::new(Event::new(
            id,
            Utc::now(),
            Payload::Status(InstanceStatus {
                instance_id: instance.into(),
                display_status: word.into(),
                rank: crate::Rank::Active,
                label: "active",
                show_qr: false,
                qr: None,
                qr_error: None,
                timed_out: false,
                reason: None,
                conflict: false,
                warning: None,
                source: "webhook",
                updated_at: "2026-11-29T00:00:00.000Z".into(),
                ready_source: None,
                authenticated_to_ready_ms: None,
                ready_watchdog_start_at: None,
                ready_watchdog_ms: None,
                node: None,
            }),
        ))
    }

    /// A sink whose broker is a closed loopback port: nothing ever drains its buffer.
    fn unreachable_sink(extra: serde_json::Value) -> (MqttSink, Arc<SinkStats>) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut cfg = serde_json::json!({
            "url": format!("mqtt://127.0.0.1:{port}"),
            "reconnect_min_ms": 60000,
            "reconnect_max_ms": 60000,
            "flush_timeout_ms": 0,
        });
        if let (Some(c), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let cfg: MqttConfig = serde_json::from_value(cfg).unwrap();
        let stats = Arc::new(SinkStats::default());
        (
            MqttSink::new("mqtt-test", cfg.validate().unwrap(), stats.clone()),
            stats,
        )
    }

    #[test]
    fn webhook_goes_to_its_event_topic_with_the_original_bytes() {
        let (sink, _) = unreachable_sink(serde_json::json!({"topic_prefix": "p"}));
        let ev = webhook(1, "message", Some("WASP-a/b"));
        let msg = sink.message(&ev).unwrap();
        assert_eq!(msg.topic, "p/WASP-a%2Fb/events/message");
        let Payload::Webhook(w) = &ev.payload else {
            unreachable!()
        };
        assert_eq!(msg.payload, w.raw);
        assert!(!msg.retain);
        assert_eq!(
            sink.message(&webhook(2, "qr", None)).unwrap().topic,
            "p/%/events/qr"
        );
    }

    #[test]
    fn status_is_retained_json_and_api_logs_and_qrs_are_ignored() {
        let (sink, _) = unreachable_sink(serde_json::json!({}));
        let msg = sink.message(&status(1, "WASP-x", "ready")).unwrap();
        assert_eq!(msg.topic, "wa-hub/WASP-x/status");
        assert!(msg.retain);
        let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(v["instanceId"], "WASP-x");
        assert_eq!(v["displayStatus"], "ready");
        assert!(sink.message(&api_log(2, Some("WASP-x"))).is_none());
        let qr = Arc::new(Event::new(
            3,
            Utc::now(),
            Payload::Qr(QrEvent {
                instance_id: "WASP-x".into(),
                qr: "iVBOR".into(),
                classification: "READY",
            }),
        ));
        assert!(sink.message(&qr).is_none());
    }

    #[tokio::test]
    async fn packet_over_the_limit_is_dropped_and_counted_and_the_next_is_queued() {
        let (mut sink, stats) = unreachable_sink(serde_json::json!({"max_packet_bytes": 200}));
        sink.start().await.unwrap();
        let big = webhook(1, &"e".repeat(300), Some("a"));
        sink.deliver(&big).await.unwrap();
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.pending.load(Ordering::Relaxed), 0);
        sink.deliver(&webhook(2, "ready", Some("a"))).await.unwrap();
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.pending.load(Ordering::Relaxed), 1);
        sink.stop().await;
        // Never delivered (no broker): counted as dropped at stop.
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.pending.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn topic_over_the_mqtt_limit_is_dropped_and_counted() {
        let (mut sink, stats) = unreachable_sink(serde_json::json!({}));
        sink.start().await.unwrap();
        // 40000 `/` become 120000 bytes of `%2F`: over 65535.
        let long = "/".repeat(40_000);
        sink.deliver(&webhook(1, "ready", Some(&long)))
            .await
            .unwrap();
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.pending.load(Ordering::Relaxed), 0);
        sink.stop().await;
    }

    #[tokio::test]
    async fn full_buffer_drops_events_without_waiting_but_keeps_the_newest_status() {
        let (mut sink, stats) = unreachable_sink(serde_json::json!({"buffer_capacity": 2}));
        sink.start().await.unwrap();
        let started = Instant::now();
        for id in 1..=100 {
            sink.deliver(&webhook(id, "message", Some("a")))
                .await
                .unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "deliver waited"
        );
        assert_eq!(stats.pending.load(Ordering::Relaxed), 2);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 98);
        // Statuses that find the buffer full are kept aside, newest per instance.
        sink.deliver(&status(101, "a", "qr")).await.unwrap();
        sink.deliver(&status(102, "a", "ready")).await.unwrap();
        sink.deliver(&status(103, "b", "qr")).await.unwrap();
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 98);
        assert_eq!(stats.pending.load(Ordering::Relaxed), 4);
        {
            let overflow = sink.shared.overflow.lock();
            let a: serde_json::Value =
                serde_json::from_slice(&overflow["wa-hub/a/status"]).unwrap();
            assert_eq!(a["displayStatus"], "ready");
            assert_eq!(overflow.len(), 2);
        }
        assert_eq!(stats.connected(), Some(false));
        sink.stop().await;
        assert_eq!(stats.pending.load(Ordering::Relaxed), 0);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 102);
    }

    #[tokio::test]
    async fn unreachable_broker_is_retried_and_counted() {
        let (mut sink, stats) = unreachable_sink(serde_json::json!({
            "reconnect_min_ms": 20, "reconnect_max_ms": 40
        }));
        sink.start().await.unwrap();
        for _ in 0..100 {
            if stats.retries.load(Ordering::Relaxed) >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stats.retries.load(Ordering::Relaxed) >= 3);
        assert_eq!(stats.connected(), Some(false));
        sink.stop().await;
    }
}
