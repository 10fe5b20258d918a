//! The outbox: events this node accepted, in order, until JetStream acknowledged them.
//!
//! Bounded by `fleet.buffer_events`. While NATS is unreachable events wait here (and
//! the node shows them locally, see [`super::Fleet::enqueue`]); once it is back they are
//! published in the order accepted. An event that finds the outbox full is dropped, counted in
//! [`Outbox::lost`] and logged (throttled). Retries are safe: each message carries its
//! `Nats-Msg-Id`, so a message the server stored before a lost acknowledgement is stored once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::Publish};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use wa_hub_sinks::backoff::Backoff;

use super::codec::Outgoing;

/// Most messages in flight (sent, acknowledgement awaited) at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// Most duplicate acknowledgements kept for [`Outbox::take_duplicates`]; older ones are
/// dropped (their correction is skipped).
pub const MAX_DUPLICATES_KEPT: usize = 4096;

/// A message JetStream answered as a duplicate: a message with its `Nats-Msg-Id` was stored
/// before, by this node or another.
#[derive(Debug, Clone)]
pub struct Duplicate {
    /// The `Nats-Msg-Id`.
    pub msg_id: String,
    /// The payload's kind.
    pub kind: wa_hub_sinks::Kind,
    /// The instance it is about, if any.
    pub instance: Option<String>,
}

/// One queued message and when it was accepted.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The message.
    pub msg: Outgoing,
    /// When the node accepted it (publish lag is measured from here).
    pub accepted: Instant,
    /// Its place in acceptance order, from 1.
    pub ticket: u64,
}

/// The bounded queue of messages to publish.
#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<VecDeque<Queued>>,
    capacity: usize,
    notify: Notify,
    last_ticket: AtomicU64,
    acked: watch::Sender<u64>,
    /// Events dropped because the outbox was full.
    pub lost: AtomicU64,
    /// Messages stored by JetStream.
    pub published: AtomicU64,
    /// Messages JetStream answered as duplicates (same `Nats-Msg-Id`, stored once).
    pub duplicates: AtomicU64,
    /// Publish attempts that failed (each is retried).
    pub failures: AtomicU64,
    /// Milliseconds from acceptance to acknowledgement of the last published message.
    pub last_lag_ms: AtomicU64,
    duplicate_log: Mutex<VecDeque<Duplicate>>,
    duplicate_notify: Notify,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` messages.
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            notify: Notify::new(),
            last_ticket: AtomicU64::new(0),
            acked: watch::channel(0).0,
            lost: AtomicU64::new(0),
            published: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_lag_ms: AtomicU64::new(0),
            duplicate_log: Mutex::new(VecDeque::new()),
            duplicate_notify: Notify::new(),
        }
    }

    /// Waits for duplicate acknowledgements, and returns those received since the last call.
    pub async fn take_duplicates(&self) -> Vec<Duplicate> {
        loop {
            let taken: Vec<Duplicate> = self.duplicate_log.lock().drain(..).collect();
            if !taken.is_empty() {
                return taken;
            }
            self.duplicate_notify.notified().await;
        }
    }

    fn record_duplicate(&self, q: &Queued) {
        let mut log = self.duplicate_log.lock();
        if log.len() >= MAX_DUPLICATES_KEPT {
            log.pop_front();
        }
        log.push_back(Duplicate {
            msg_id: q.msg.msg_id.clone(),
            kind: q.msg.kind,
            instance: q.msg.instance.clone(),
        });
        drop(log);
        self.duplicate_notify.notify_one();
    }

    /// Queues `msg` behind the others. Returns `false` (and counts it as lost) when full.
    pub fn push(&self, msg: Outgoing) -> bool {
        let mut q = self.queue.lock();
        if q.len() >= self.capacity {
            drop(q);
            let n = self.lost.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(
                    lost_total = n,
                    capacity = self.capacity,
                    "fleet outbox full (NATS unreachable?): event not published to the fleet"
                );
            }
            return false;
        }
        let ticket = self.last_ticket.fetch_add(1, Ordering::AcqRel) + 1;
        q.push_back(Queued {
            msg,
            accepted: Instant::now(),
            ticket,
        });
        drop(q);
        self.notify.notify_one();
        true
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn front(&self, n: usize) -> Vec<Queued> {
        self.queue.lock().iter().take(n).cloned().collect()
    }

    fn pop(&self, n: usize) {
        let mut q = self.queue.lock();
        let mut last = None;
        for _ in 0..n {
            last = q.pop_front().map(|q| q.ticket);
        }
        drop(q);
        if let Some(t) = last {
            self.acked.send_replace(t);
        }
    }

    /// The ticket of the last message queued (0 before the first).
    pub fn last_ticket(&self) -> u64 {
        self.last_ticket.load(Ordering::Acquire)
    }

    /// Waits until every message up to `ticket` is stored by JetStream.
    pub async fn stored_through(&self, ticket: u64) {
        let mut rx = self.acked.subscribe();
        let _ = rx.wait_for(|t| *t >= ticket).await;
    }

    /// Publishes queued messages forever, in order, up to [`MAX_IN_FLIGHT`] at a time; on a
    /// failure keeps the unacknowledged ones at the front and retries after a backoff.
    pub async fn run(&self, js: jetstream::Context, sealer: super::codec::Sealer) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let batch = self.front(MAX_IN_FLIGHT);
            if batch.is_empty() {
                self.notify.notified().await;
                continue;
            }
            let done = self.publish_batch(&js, &sealer, &batch).await;
            self.pop(done);
            if done < batch.len() {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(backoff.next_delay()).await;
            } else {
                backoff.reset();
            }
        }
    }

    /// Sends `batch` and awaits its acknowledgements in order; returns how many, from the
    /// front, were stored.
    async fn publish_batch(
        &self,
        js: &jetstream::Context,
        sealer: &super::codec::Sealer,
        batch: &[Queued],
    ) -> usize {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut acks = Vec::with_capacity(batch.len());
        for q in batch {
            let publish = Publish::build()
                .headers({
                    // Sealed as sent, so the seal's time is close to the stream's.
                    let mut headers = q.msg.headers.clone();
                    sealer.seal(&mut headers, &q.msg.body, now_ms);
                    headers
                })
                .payload(q.msg.body.clone());
            match js.send_publish(q.msg.subject.clone(), publish).await {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    tracing::debug!(error = %e, "fleet publish not sent");
                    break;
                }
            }
        }
        let mut done = 0;
        for (ack, q) in acks.into_iter().zip(batch) {
            match ack.await {
                Ok(ack) => {
                    done += 1;
                    self.published.fetch_add(1, Ordering::Relaxed);
                    if ack.duplicate {
                        self.duplicates.fetch_add(1, Ordering::Relaxed);
                        self.record_duplicate(q);
                    }
                    self.last_lag_ms
                        .store(q.accepted.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, waiting = self.len(), "fleet publish failed; will retry");
                    break;
                }
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wa_hub_sinks::{ApiLog, Payload};

    fn api_log(i: u32) -> Payload {
        let json = format!(
            r#"{{"id":"log-{i}","timestamp":"t","method":"GET","path":"/x","statusCode":200,"latencyMs":1,"requestBody":null,"responseBody":null}}"#
        );
        Payload::ApiLog(serde_json::from_str::<ApiLog>(&json).unwrap())
    }

    #[test]
    fn a_full_outbox_counts_the_events_it_drops_and_keeps_the_older_ones() {
        let outbox = Outbox::new(2);
        let msg = |i| super::super::codec::encode("wahub", "n", &api_log(i), None);
        assert!(outbox.push(msg(1)));
        assert!(outbox.push(msg(2)));
        assert!(!outbox.push(msg(3)));
        assert_eq!(outbox.len(), 2);
        assert_eq!(outbox.lost.load(Ordering::Relaxed), 1);
        assert_eq!(outbox.last_ticket(), 2);
    }
}
