//! The connection task of the MQTT sink: one per sink, spawned by `MqttSink::start`.
//!
//! - Each connection gets a fresh rumqttc `AsyncClient` + `EventLoop`; a poller task owns
//!   the event loop and polls it without pause until it fails, forwarding what matters
//!   (CONNACK, publishes written, PUBACKs, the error). The connection task watches the poller:
//!   an error, or a poller that ended or panicked, is a lost connection.
//! - While connected, messages go to rumqttc in order, at most `max_inflight` unconfirmed at a
//!   time: first those a lost connection left unconfirmed, then the buffer, then statuses kept
//!   aside when the buffer was full. A message is confirmed by its PUBACK (QoS 1) or once
//!   written (QoS 0). On every connect `online` (retained) goes first.
//! - A lost connection puts every unconfirmed message back, in order, for the next one, so a
//!   retained status can never be overtaken by an older one. Reconnection waits
//!   `reconnect_min_ms`, doubling per failure up to `reconnect_max_ms`.
//! - On stop it keeps delivering for up to `flush_timeout_ms`, publishes `offline`
//!   (retained), disconnects (so the broker discards the Last Will), and counts what is left
//!   as dropped.
//!
//! rumqttc's own retransmission is not used: with a clean session it discards unacknowledged
//! publishes on reconnect, and a fresh event loop per connection means nothing queued for a
//! dead connection can be sent out of order on the next one.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use rumqttc::{AsyncClient, Event, EventLoop, NetworkOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::MqttSettings;
use super::message::{Message, MessageKind, Shared};
use crate::backoff::{sleep_or_shutdown, Backoff};

/// What the poller reports.
#[derive(Debug)]
enum LoopEvent {
    /// CONNACK accepted.
    Connected,
    /// A PUBLISH was written; packet id (0 at QoS 0).
    Written(u16),
    /// A QoS 1 PUBLISH got a packet id still in use; it is written later (as `Written`).
    Collided(u16),
    /// PUBACK for a packet id.
    Acked(u16),
    /// The connection failed or was lost.
    Failed(String),
}

/// A message handed to rumqttc and not yet confirmed.
#[derive(Debug)]
struct InFlight {
    msg: Message,
    pkid: Option<u16>,
    collided: bool,
}

/// One connection: the client handle and the poller that owns its event loop.
struct Conn {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<LoopEvent>,
    poller: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// Why the connected phase ended.
enum Ended {
    /// The connection was lost: reconnect.
    Lost(String),
    /// Stop requested and done (flushed, `offline` sent or given up).
    Stopped,
}

struct Driver {
    settings: MqttSettings,
    shared: Arc<Shared>,
    rx: mpsc::Receiver<Message>,
    rx_open: bool,
    stop: watch::Receiver<bool>,
    stopping: bool,
    retry: VecDeque<Message>,
    inflight: VecDeque<InFlight>,
    backoff: Backoff,
}

/// Runs the connection task until stop. Restarts the driver after a panic, keeping what it
/// holds.
pub(crate) async fn run(
    settings: MqttSettings,
    rx: mpsc::Receiver<Message>,
    stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let mut d = Driver {
        backoff: Backoff::new(settings.reconnect_min, settings.reconnect_max),
        settings,
        shared,
        rx,
        rx_open: true,
        stop,
        stopping: false,
        retry: VecDeque::new(),
        inflight: VecDeque::new(),
    };
    loop {
        match AssertUnwindSafe(d.drive()).catch_unwind().await {
            Ok(()) => break,
            Err(panic) => {
                let msg = crate::router::panic_message(panic.as_ref());
                d.shared.stats.restarts.fetch_add(1, Ordering::Relaxed);
                d.shared.stats.set_connected(false);
                tracing::error!(sink = %d.shared.name, panic = %msg, "mqtt: connection task panicked; restarting it");
                d.requeue_inflight();
                tokio::time::sleep(d.backoff.next_delay()).await;
            }
        }
    }
    d.drop_leftovers();
    d.shared.stats.set_connected(false);
}

impl Driver {
    async fn drive(&mut self) {
        loop {
            if self.stopping || *self.stop.borrow() {
                return;
            }
            let Some(conn) = self.connect().await else {
                return;
            };
            match self.connected(conn).await {
                Ended::Stopped => return,
                Ended::Lost(reason) => {
                    self.shared.stats.set_connected(false);
                    self.requeue_inflight();
                    self.connection_failed("connection lost", &reason);
                    if self.sleep_backoff().await {
                        return;
                    }
                }
            }
        }
    }

    /// Logs and counts a failed or lost connection; the next attempt is a retry.
    fn connection_failed(&mut self, what: &str, reason: &str) {
        let retries = self.shared.stats.retries.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(
            sink = %self.shared.name,
            broker = %self.settings.broker,
            error = %reason,
            retry_in_ms = self.backoff.peek().as_millis() as u64,
            retries,
            held = self.held(),
            "mqtt: {what}; will reconnect"
        );
    }

    /// Sleeps the backoff (then doubles it); true when stop came first.
    async fn sleep_backoff(&mut self) -> bool {
        let d = self.backoff.next_delay();
        if sleep_or_shutdown(d, &mut self.stop).await {
            self.stopping = true;
        }
        self.stopping
    }

    /// Connects, retrying with backoff; `None` when stopped first.
    async fn connect(&mut self) -> Option<Conn> {
        loop {
            let (client, mut eventloop) = AsyncClient::new(
                self.settings.options.clone(),
                self.settings.max_inflight + 2,
            );
            let mut net = NetworkOptions::new();
            net.set_connection_timeout(self.settings.connect_timeout_secs);
            net.set_tcp_nodelay(true);
            eventloop.set_network_options(net);
            let (tx, mut events) = mpsc::unbounded_channel();
            let poller = tokio::spawn(poll(eventloop, tx));
            let conn_result = tokio::select! {
                ev = events.recv() => Some(ev),
                _ = self.stop.changed() => None,
            };
            let conn = Conn {
                client,
                events,
                poller,
            };
            match conn_result {
                None => {
                    self.stopping = true;
                    return None;
                }
                Some(Some(LoopEvent::Connected)) => {
                    self.backoff.reset();
                    self.shared.stats.set_connected(true);
                    tracing::info!(sink = %self.shared.name, broker = %self.settings.broker, held = self.held(), "mqtt: connected");
                    return Some(conn);
                }
                Some(Some(LoopEvent::Failed(e))) => {
                    drop(conn);
                    self.connection_failed("cannot connect", &e);
                }
                Some(other) => {
                    drop(conn);
                    self.connection_failed(
                        "cannot connect",
                        &format!("unexpected before CONNACK: {other:?}"),
                    );
                }
            }
            if self.sleep_backoff().await {
                return None;
            }
        }
    }

    /// The connected phase: `online`, then messages in order, until lost or stopped.
    async fn connected(&mut self, mut conn: Conn) -> Ended {
        let online = Message {
            topic: self.settings.topics.availability(),
            payload: Bytes::from_static(b"online"),
            retain: true,
            kind: MessageKind::Availability,
        };
        if let Err(e) = self.hand(&conn, online) {
            return Ended::Lost(e);
        }
        let mut deadline: Option<Instant> = None;
        if self.stopping {
            deadline = Some(Instant::now() + self.settings.flush_timeout);
        }
        loop {
            if let Err(e) = self.feed(&conn) {
                return Ended::Lost(e);
            }
            if self.stopping && self.nothing_held() {
                break;
            }
            let room = self.inflight.len() < self.settings.max_inflight && self.retry.is_empty();
            let step = tokio::select! {
                ev = conn.events.recv() => Step::Loop(ev),
                msg = self.rx.recv(), if self.rx_open && room => Step::Msg(msg),
                _ = self.shared.wake.notified() => Step::Nothing,
                _ = self.stop.changed(), if !self.stopping => Step::Stop,
                _ = sleep_until_opt(deadline), if deadline.is_some() => Step::Deadline,
            };
            match step {
                Step::Loop(Some(LoopEvent::Failed(e))) => return Ended::Lost(e),
                Step::Loop(None) => return Ended::Lost("event loop task ended".into()),
                Step::Loop(Some(ev)) => self.confirm(ev),
                Step::Msg(Some(msg)) => {
                    if let Err(e) = self.hand(&conn, msg) {
                        return Ended::Lost(e);
                    }
                }
                Step::Msg(None) => self.rx_open = false,
                Step::Nothing => {}
                Step::Stop => {
                    self.stopping = true;
                    deadline = Some(Instant::now() + self.settings.flush_timeout);
                }
                Step::Deadline => break,
            }
        }
        self.go_offline(conn).await;
        Ended::Stopped
    }

    /// Publishes `offline` (retained), waits up to one second for it to be confirmed, then
    /// disconnects cleanly (DISCONNECT, so the broker discards the Last Will).
    async fn go_offline(&mut self, mut conn: Conn) {
        let offline = Message {
            topic: self.settings.topics.availability(),
            payload: Bytes::from_static(b"offline"),
            retain: true,
            kind: MessageKind::Availability,
        };
        // The request channel has room for `offline` and the DISCONNECT beyond the window.
        if !publish_now(&conn.client, &offline, self.settings.qos) {
            tracing::warn!(sink = %self.shared.name, "mqtt: could not queue `offline`; the broker's Last Will says it");
            return;
        }
        self.inflight.push_back(InFlight {
            msg: offline,
            pkid: None,
            collided: false,
        });
        let wait_until = Instant::now() + Duration::from_secs(1);
        let confirmed = loop {
            if !self
                .inflight
                .iter()
                .any(|f| f.msg.kind == MessageKind::Availability)
            {
                break true;
            }
            tokio::select! {
                ev = conn.events.recv() => match ev {
                    Some(LoopEvent::Failed(_)) | None => break false,
                    Some(ev) => self.confirm(ev),
                },
                _ = tokio::time::sleep_until(wait_until) => break false,
            }
        };
        let _ = conn.client.try_disconnect();
        // Let the poller write the DISCONNECT, then end with the connection.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(ev) = conn.events.recv().await {
                if let LoopEvent::Failed(_) = ev {
                    break;
                }
            }
        })
        .await;
        if confirmed {
            tracing::info!(sink = %self.shared.name, "mqtt: published offline and disconnected");
        } else {
            tracing::warn!(sink = %self.shared.name, "mqtt: `offline` not confirmed; disconnected");
        }
    }

    /// Hands messages to rumqttc while the window has room: retries, then the buffer, then
    /// statuses kept aside (only once the buffer is empty).
    fn feed(&mut self, conn: &Conn) -> Result<(), String> {
        while self.inflight.len() < self.settings.max_inflight {
            let msg = if let Some(m) = self.retry.pop_front() {
                m
            } else if let Ok(m) = self.rx.try_recv() {
                m
            } else if let Some(m) = self.take_overflow() {
                m
            } else {
                break;
            };
            self.hand(conn, msg)?;
        }
        Ok(())
    }

    /// One status kept aside, as a message.
    fn take_overflow(&mut self) -> Option<Message> {
        let mut overflow = self.shared.overflow.lock();
        let topic = overflow.keys().next()?.clone();
        let payload = overflow.remove(&topic)?;
        Some(Message {
            topic,
            payload,
            retain: true,
            kind: MessageKind::Status,
        })
    }

    /// Gives one message to rumqttc and tracks it. On failure the message goes back to the
    /// front of the retry list and the error says the connection is gone.
    fn hand(&mut self, conn: &Conn, msg: Message) -> Result<(), String> {
        if publish_now(&conn.client, &msg, self.settings.qos) {
            self.inflight.push_back(InFlight {
                msg,
                pkid: None,
                collided: false,
            });
            Ok(())
        } else {
            if msg.kind != MessageKind::Availability {
                self.retry.push_front(msg);
            }
            Err("the event loop stopped taking requests".into())
        }
    }

    /// Applies a poller report to the in-flight list.
    fn confirm(&mut self, ev: LoopEvent) {
        match ev {
            LoopEvent::Written(0) => {
                if let Some(i) = self.inflight.iter().position(|f| f.pkid.is_none()) {
                    if let Some(f) = self.inflight.remove(i) {
                        self.confirmed(f.msg);
                    }
                }
            }
            LoopEvent::Written(pkid) => {
                if let Some(f) = self
                    .inflight
                    .iter_mut()
                    .find(|f| f.collided && f.pkid == Some(pkid))
                {
                    f.collided = false;
                } else if let Some(f) = self.inflight.iter_mut().find(|f| f.pkid.is_none()) {
                    f.pkid = Some(pkid);
                }
            }
            LoopEvent::Collided(pkid) => {
                if let Some(f) = self.inflight.iter_mut().find(|f| f.pkid.is_none()) {
                    f.pkid = Some(pkid);
                    f.collided = true;
                }
            }
            LoopEvent::Acked(pkid) => {
                if let Some(i) = self
                    .inflight
                    .iter()
                    .position(|f| f.pkid == Some(pkid) && !f.collided)
                {
                    if let Some(f) = self.inflight.remove(i) {
                        self.confirmed(f.msg);
                    }
                }
            }
            LoopEvent::Connected | LoopEvent::Failed(_) => {}
        }
    }

    fn confirmed(&mut self, msg: Message) {
        if msg.counted() {
            self.shared.settle(1);
        }
    }

    /// Puts unconfirmed messages back in front of the retry list, oldest first.
    fn requeue_inflight(&mut self) {
        for f in self.inflight.drain(..).rev() {
            if f.msg.counted() {
                self.retry.push_front(f.msg);
            }
        }
    }

    fn nothing_held(&self) -> bool {
        self.retry.is_empty()
            && self.inflight.is_empty()
            && self.rx.is_empty()
            && self.shared.overflow.lock().is_empty()
    }

    fn held(&self) -> usize {
        self.retry.len() + self.inflight.len() + self.rx.len()
    }

    /// Counts as dropped (and logs) what was never confirmed when the task ends.
    fn drop_leftovers(&mut self) {
        self.requeue_inflight();
        self.rx.close();
        let mut left = self.retry.drain(..).filter(Message::counted).count();
        while let Ok(m) = self.rx.try_recv() {
            if m.counted() {
                left += 1;
            }
        }
        left += {
            let mut overflow = self.shared.overflow.lock();
            let n = overflow.len();
            overflow.clear();
            n
        };
        if left > 0 {
            let left = left as u64;
            self.shared.settle(left);
            let total = self.shared.stats.dropped.fetch_add(left, Ordering::Relaxed) + left;
            tracing::warn!(
                sink = %self.shared.name,
                undelivered = left,
                dropped_total = total,
                "mqtt: stopped with messages the broker never confirmed; dropped"
            );
        }
    }
}

enum Step {
    Loop(Option<LoopEvent>),
    Msg(Option<Message>),
    Nothing,
    Stop,
    Deadline,
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Queues a PUBLISH on the client without waiting; false when the event loop is gone or its
/// request channel is full.
fn publish_now(client: &AsyncClient, msg: &Message, qos: QoS) -> bool {
    matches!(
        client
            .publish_bytes(msg.topic.clone(), qos, msg.retain, msg.payload.clone())
            .now_or_never(),
        Some(Ok(()))
    )
}

/// Polls one connection's event loop without pause until it fails; reports what the
/// connection task needs. Ends when the connection fails or the task stops listening.
async fn poll(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<LoopEvent>) {
    loop {
        let ev = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => LoopEvent::Connected,
            Ok(Event::Incoming(Packet::PubAck(ack))) => LoopEvent::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => LoopEvent::Written(pkid),
            Ok(Event::Outgoing(Outgoing::AwaitAck(pkid))) => LoopEvent::Collided(pkid),
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(LoopEvent::Failed(e.to_string()));
                return;
            }
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}
