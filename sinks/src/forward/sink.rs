//! The forward sink's task: [`ForwardSink::deliver`] stores each webhook in the outbox
//! (fsynced) and returns; a delivery worker, spawned by [`ForwardSink::start`] and watched by
//! a small supervisor, sends from the outbox oldest first.
//!
//! Order: strictly first-in first-out per sink. The worker sends one event at a time and does
//! not move on while the oldest pending event is being retried, so an event of an instance is
//! never delivered before an earlier undelivered event of the same instance (nor of any other
//! instance). An event that goes to the dead letters no longer holds the queue; replaying it
//! appends it behind whatever is pending then.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::config::ForwardConfig;
use super::outbox::{Entry, EntryMeta, Outbox, OutboxError};
use super::retry::{backoff, judge_status, Verdict};
use crate::backoff::{sleep_or_shutdown, Backoff};
use crate::envelope::{iso_timestamp, Event, Payload};
use crate::router::SinkStats;
use crate::signature::{sign, SIGNATURE_HEADER};
use crate::sink::{Sink, SinkError};
use crate::throttle::LogThrottle;

/// Header carrying the webhook record's id, the same on every attempt of one event.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Most webhooks stored in one outbox transaction (one fsync).
pub const MAX_BATCH: usize = 512;
/// Pacing of outbox commits ([`Sink::batch_linger`]): under load at most one commit (one
/// fsync) per this interval, covering hundreds of webhooks; a lone webhook after a quiet
/// spell is committed at once, one in a stream at most this much later.
pub const BATCH_LINGER: Duration = Duration::from_millis(5);

/// Pause after a failed outbox read or write before the worker tries again.
const STORE_RETRY: Duration = Duration::from_secs(1);
/// First and largest pause before a panicked worker is restarted.
const WORKER_RESTART_MIN: Duration = Duration::from_millis(100);
const WORKER_RESTART_MAX: Duration = Duration::from_secs(30);
/// Longest wait for the worker to finish at [`Sink::stop`].
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Bytes of a response body read (to reuse the connection, and quoted in errors).
const RESPONSE_READ_MAX: usize = 64 * 1024;
/// Characters of a response body quoted in `last_error`.
const ERROR_DETAIL_CHARS: usize = 200;

/// Why a forward sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The outbox could not be opened.
    #[error("{0}")]
    Outbox(#[from] OutboxError),
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What the sink, its worker and its handle share.
struct Shared {
    name: String,
    cfg: ForwardConfig,
    /// `url` without query and fragment, for logs.
    log_url: String,
    client: reqwest::Client,
    outbox: Arc<Outbox>,
    stats: Arc<SinkStats>,
    /// Woken when an event is pushed or replayed.
    wake: Notify,
}

/// POSTs webhooks to `url`; see the module docs.
///
/// Only `webhook` events are forwarded (the config makes `kinds` default to `[webhook]`); an
/// event of another kind that reaches it is skipped.
pub struct ForwardSink {
    shared: Arc<Shared>,
    worker: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    full_log: LogThrottle,
}

impl ForwardSink {
    /// Opens the outbox (`cfg.outbox_file(name)`) and builds the HTTP client. Nothing is sent
    /// before [`Sink::start`]. `stats` gets `pending` at once.
    ///
    /// # Errors
    /// [`ForwardError::Outbox`] when the outbox cannot be opened (unwritable location, file
    /// locked by another process, a damaged file); [`ForwardError::Client`] when TLS cannot
    /// be set up.
    pub fn new(
        name: &str,
        cfg: ForwardConfig,
        stats: Arc<SinkStats>,
    ) -> Result<Self, ForwardError> {
        let outbox = Outbox::open(&cfg.outbox_file(name))?;
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .connect_timeout(cfg.timeout())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("wa-hub-sidecar/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut log_url = cfg.url.clone();
        log_url.set_query(None);
        log_url.set_fragment(None);
        stats.pending.store(outbox.pending_len(), Ordering::Relaxed);
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.to_owned(),
                log_url: log_url.to_string(),
                cfg,
                client,
                outbox: Arc::new(outbox),
                stats,
                wake: Notify::new(),
            }),
            worker: None,
            full_log: LogThrottle::default(),
        })
    }

    /// The handle the service keeps for the dead-letter routes.
    pub fn handle(&self) -> ForwardHandle {
        ForwardHandle(self.shared.clone())
    }

    /// Counts `dropped` webhooks that found the outbox full; logs at most every 10 s.
    fn outbox_full(&mut self, dropped: u64) {
        let shared = &self.shared;
        let total = shared.stats.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
        if self.full_log.allow() {
            tracing::warn!(
                sink = %shared.name,
                max_pending = shared.cfg.max_pending.get(),
                dropped_total = total,
                "forward outbox full, dropping webhooks"
            );
        }
    }
}

#[async_trait]
impl Sink for ForwardSink {
    /// Spawns the delivery worker (under its supervisor) unless it is running. Pending events
    /// left by an earlier run are sent first.
    async fn start(&mut self) -> Result<(), SinkError> {
        if self.worker.as_ref().is_some_and(|(_, h)| !h.is_finished()) {
            return Ok(());
        }
        let (tx, rx) = watch::channel(false);
        let handle = tokio::spawn(supervise_worker(self.shared.clone(), rx));
        self.worker = Some((tx, handle));
        let pending = self.shared.outbox.pending_len();
        tracing::info!(
            sink = %self.shared.name,
            url = %self.shared.log_url,
            outbox = %self.shared.outbox.path().display(),
            pending,
            "forward sink started"
        );
        Ok(())
    }

    /// Stores a webhook in the outbox, committed with fsync, and wakes the worker; see
    /// [`Sink::deliver_batch`].
    ///
    /// # Errors
    /// When the outbox write failed; the router counts and logs it.
    async fn deliver(&mut self, event: &Arc<Event>) -> Result<(), SinkError> {
        self.deliver_batch(std::slice::from_ref(event)).await
    }

    /// Up to [`MAX_BATCH`]: under load one fsync covers many webhooks.
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    /// [`BATCH_LINGER`].
    fn batch_linger(&self) -> Duration {
        BATCH_LINGER
    }

    /// `true`: `delivered` counts webhooks the receiver accepted (2xx), not those stored in
    /// the outbox; dead letters and drops are counted under their own names.
    fn counts_deliveries(&self) -> bool {
        true
    }

    /// Stores the webhooks among `events` in the outbox in one transaction committed with
    /// fsync, then wakes the worker. Other kinds are skipped. Webhooks that do not fit under
    /// `max_pending` are dropped (counted in `dropped`, logged at most every 10 s).
    ///
    /// # Errors
    /// When the outbox write failed (none of them is stored); the router counts and logs it.
    async fn deliver_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
        let shared = self.shared.clone();
        let now = now_ms();
        let room = shared
            .cfg
            .max_pending
            .get()
            .saturating_sub(shared.outbox.pending_len());
        let mut items = Vec::with_capacity(events.len());
        let mut dropped = 0u64;
        for event in events {
            let Payload::Webhook(w) = &event.payload else {
                continue;
            };
            if items.len() as u64 >= room {
                dropped += 1;
                continue;
            }
            let meta = EntryMeta::new(
                w.id.clone(),
                w.instance_id.clone(),
                w.event.clone(),
                w.content_type.clone(),
                w.timestamp.clone(),
                now,
            );
            items.push((meta, w.raw.clone()));
        }
        if dropped > 0 {
            self.outbox_full(dropped);
        }
        if items.is_empty() {
            return Ok(());
        }
        blocking(&shared.outbox, move |ob| ob.push_many(&items))
            .await
            .map_err(|e| SinkError::Other(format!("outbox write failed: {e}")))?;
        shared
            .stats
            .pending
            .store(shared.outbox.pending_len(), Ordering::Relaxed);
        shared.wake.notify_one();
        Ok(())
    }

    /// Stops the worker (an attempt in flight is abandoned: the event stays pending and is
    /// sent again after restart) and makes the outbox durable.
    async fn stop(&mut self) {
        if let Some((tx, mut handle)) = self.worker.take() {
            let _ = tx.send(true);
            if tokio::time::timeout(STOP_WAIT, &mut handle).await.is_err() {
                handle.abort();
            }
        }
        let shared = &self.shared;
        if let Err(e) = blocking(&shared.outbox, |ob| ob.sync()).await {
            shared.stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::error!(sink = %shared.name, error = %e, "forward outbox sync at shutdown failed");
        }
        tracing::info!(
            sink = %shared.name,
            pending = shared.outbox.pending_len(),
            "forward sink stopped; pending events stay in the outbox"
        );
    }
}

/// Runs the worker, restarting it with capped backoff if it panics, until `shutdown`.
async fn supervise_worker(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let mut pause = Backoff::new(WORKER_RESTART_MIN, WORKER_RESTART_MAX);
    loop {
        let run = tokio::spawn(run_worker(shared.clone(), shutdown.clone()));
        match run.await {
            Ok(()) => return,
            Err(e) => {
                shared.stats.restarts.fetch_add(1, Ordering::Relaxed);
                let delay = pause.next_delay();
                tracing::error!(
                    sink = %shared.name,
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "forward delivery worker died; restarting it"
                );
                if sleep_or_shutdown(delay, &mut shutdown.clone()).await {
                    return;
                }
            }
        }
    }
}

/// What to do after handling the oldest event.
enum Next {
    /// Go on at once.
    Now,
    /// Wait this long first (backoff, `Retry-After`, store trouble).
    After(Duration),
    /// Shutdown came.
    Stop,
}

/// Sends pending events oldest first until `shutdown` turns true.
async fn run_worker(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let next = match blocking(&shared.outbox, |ob| ob.front()).await {
            Ok(Some(entry)) => shared.process(entry, &mut shutdown).await,
            Ok(None) => {
                tokio::select! {
                    _ = shared.wake.notified() => Next::Now,
                    _ = shutdown.changed() => Next::Stop,
                }
            }
            Err(OutboxError::Corrupt { seq, source }) => shared.quarantine(seq, &source).await,
            Err(e) => shared.store_failed("read the next event", &e),
        };
        match next {
            Next::Now => {}
            Next::After(d) => {
                if sleep_or_shutdown(d, &mut shutdown).await {
                    return;
                }
            }
            Next::Stop => return,
        }
    }
}

impl Shared {
    /// One step for the oldest pending event: expire it, or make one attempt and act on the
    /// verdict. Every failure is logged and counted here.
    async fn process(&self, mut entry: Entry, shutdown: &mut watch::Receiver<bool>) -> Next {
        let now = now_ms();
        if let Some(max_age) = self.cfg.max_age() {
            // A clock set back makes the age negative: count it as zero.
            let age_ms = now.saturating_sub(entry.meta.enqueued_at_ms).max(0);
            let age = Duration::from_millis(u64::try_from(age_ms).unwrap_or(0));
            if age > max_age {
                let error = format!(
                    "expired: not delivered within max_age_secs ({} s); last error: {}",
                    self.cfg.max_age_secs,
                    entry.meta.last_error.as_deref().unwrap_or("none")
                );
                entry.meta.last_error = Some(error);
                return self.bury(entry, now).await;
            }
        }
        let verdict = tokio::select! {
            v = self.send(&entry) => v,
            _ = shutdown.changed() => return Next::Stop,
        };
        match verdict {
            Verdict::Delivered => {
                entry.meta.note_attempt(now, None);
                let seq = entry.seq;
                if let Err(e) = blocking(&self.outbox, move |ob| ob.delivered(seq)).await {
                    // The event will be sent again: a duplicate the receiver deduplicates.
                    return self.store_failed("remove a delivered event", &e);
                }
                // Counted here, when the receiver answered 2xx, not when the outbox took it.
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .pending
                    .store(self.outbox.pending_len(), Ordering::Relaxed);
                tracing::debug!(
                    sink = %self.name,
                    event_id = %entry.meta.event_id,
                    attempts = entry.meta.attempts,
                    "webhook forwarded"
                );
                Next::Now
            }
            Verdict::Reject { error } => {
                entry.meta.note_attempt(now, Some(error));
                self.bury(entry, now).await
            }
            Verdict::Retry { error, retry_after } => {
                entry.meta.note_attempt(now, Some(error.clone()));
                if entry.meta.attempts >= self.cfg.max_attempts.get() {
                    return self.bury(entry, now).await;
                }
                let delay = retry_after.unwrap_or_else(|| {
                    backoff(
                        entry.meta.attempts,
                        Duration::from_millis(self.cfg.backoff_initial_ms.get()),
                        Duration::from_millis(self.cfg.backoff_max_ms.get()),
                        fastrand::f64(),
                    )
                });
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    sink = %self.name,
                    event_id = %entry.meta.event_id,
                    instance = entry.meta.instance_id.as_deref().unwrap_or("-"),
                    attempt = entry.meta.attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    retry_after = retry_after.is_some(),
                    %error,
                    "forward attempt failed; will retry"
                );
                let stored = entry.clone();
                if let Err(e) = blocking(&self.outbox, move |ob| ob.update(&stored)).await {
                    // Only the attempt count is lost; retry as planned.
                    self.store_failed("record a failed attempt", &e);
                }
                Next::After(delay)
            }
        }
    }

    /// Moves the event to the dead letters; logs and counts it.
    async fn bury(&self, mut entry: Entry, now: i64) -> Next {
        entry.meta.dead_at_ms = Some(now);
        let meta = entry.meta.clone();
        let seq = entry.seq;
        if let Err(e) = blocking(&self.outbox, move |ob| ob.bury(&entry)).await {
            return self.store_failed("move an event to the dead letters", &e);
        }
        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        self.stats
            .pending
            .store(self.outbox.pending_len(), Ordering::Relaxed);
        tracing::warn!(
            sink = %self.name,
            dead_letter_id = seq,
            event_id = %meta.event_id,
            instance = meta.instance_id.as_deref().unwrap_or("-"),
            event = %meta.event,
            attempts = meta.attempts,
            error = meta.last_error.as_deref().unwrap_or("-"),
            "forward gave up on a webhook; moved to dead letters"
        );
        Next::Now
    }

    /// Moves an entry whose metadata does not parse out of the way; logs and counts it.
    async fn quarantine(&self, seq: u64, cause: &serde_json::Error) -> Next {
        if let Err(e) = blocking(&self.outbox, move |ob| ob.quarantine(seq, now_ms())).await {
            return self.store_failed("move an unreadable event to the dead letters", &e);
        }
        self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
        self.stats
            .pending
            .store(self.outbox.pending_len(), Ordering::Relaxed);
        tracing::error!(
            sink = %self.name,
            dead_letter_id = seq,
            error = %cause,
            "forward outbox entry unreadable; moved to dead letters"
        );
        Next::Now
    }

    /// Logs and counts an outbox failure; the worker pauses, then tries again.
    fn store_failed(&self, what: &str, e: &OutboxError) -> Next {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            sink = %self.name,
            error = %e,
            retry_in_ms = STORE_RETRY.as_millis() as u64,
            "forward outbox: cannot {what}"
        );
        Next::After(STORE_RETRY)
    }

    /// One POST of the entry; the verdict on its outcome.
    async fn send(&self, entry: &Entry) -> Verdict {
        let mut req = self
            .client
            .post(self.cfg.url.clone())
            .header(IDEMPOTENCY_KEY_HEADER, &entry.meta.event_id)
            .body(entry.body.clone());
        if !entry.meta.content_type.is_empty() {
            req = req.header(reqwest::header::CONTENT_TYPE, &entry.meta.content_type);
        }
        if let Some(secret) = &self.cfg.secret {
            req = req.header(
                SIGNATURE_HEADER,
                sign(secret.expose().as_bytes(), &entry.body),
            );
        }
        if let Some(token) = &self.cfg.auth_token {
            req = req.bearer_auth(token.expose());
        }
        match req.send().await {
            Ok(mut resp) => {
                self.stats.set_connected(true);
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .map(|v| v.as_bytes().to_vec());
                let mut body = Vec::new();
                while body.len() < RESPONSE_READ_MAX {
                    match resp.chunk().await {
                        Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                        _ => break,
                    }
                }
                let detail = if (200..300).contains(&status) {
                    String::new()
                } else {
                    excerpt(&body)
                };
                judge_status(status, retry_after.as_deref(), SystemTime::now(), &detail)
            }
            Err(e) => {
                if e.is_builder() {
                    return Verdict::Reject {
                        error: format!("cannot build the request: {}", chain(e.without_url())),
                    };
                }
                if e.is_connect() {
                    self.stats.set_connected(false);
                }
                let error = if e.is_timeout() {
                    format!("timed out after {} ms", self.cfg.timeout_ms)
                } else if e.is_connect() {
                    format!("cannot connect: {}", root_cause(&e.without_url()))
                } else {
                    format!("request failed: {}", chain(e.without_url()))
                };
                Verdict::Retry {
                    error,
                    retry_after: None,
                }
            }
        }
    }
}

/// The first [`ERROR_DETAIL_CHARS`] characters of a response body, whitespace collapsed.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(ERROR_DETAIL_CHARS)
        .collect();
    if text.chars().count() > ERROR_DETAIL_CHARS {
        out.push('…');
    }
    out
}

/// An error and its sources, `": "`-joined.
fn chain(e: reqwest::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// The innermost source of an error (e.g. `Connection refused (os error 111)`).
fn root_cause(e: &reqwest::Error) -> String {
    let mut current: &dyn std::error::Error = e;
    while let Some(s) = current.source() {
        current = s;
    }
    current.to_string()
}

/// Runs an outbox operation on the blocking pool.
async fn blocking<T, F>(outbox: &Arc<Outbox>, f: F) -> Result<T, OutboxError>
where
    T: Send + 'static,
    F: FnOnce(&Outbox) -> Result<T, OutboxError> + Send + 'static,
{
    let ob = outbox.clone();
    tokio::task::spawn_blocking(move || f(&ob))
        .await
        .unwrap_or_else(|e| Err(OutboxError::Interrupted(e.to_string())))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn iso_ms(ms: Option<i64>) -> Option<String> {
    ms.and_then(DateTime::from_timestamp_millis)
        .map(iso_timestamp)
}

/// What the service holds of a forward sink: its dead letters and outbox size. Cheap to
/// clone; usable from any task while the sink runs.
#[derive(Clone)]
pub struct ForwardHandle(Arc<Shared>);

impl std::fmt::Debug for ForwardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardHandle")
            .field("sink", &self.0.name)
            .field("outbox", &self.0.outbox.path())
            .finish()
    }
}

/// `GET /api/sinks/<name>/dead-letters`: the answer's body.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterList {
    /// The sink's name.
    pub sink: String,
    /// Events waiting in the outbox for delivery.
    pub pending: u64,
    /// Dead letters kept in all (the list may be shorter: `limit`).
    pub total: u64,
    /// Oldest first.
    pub dead_letters: Vec<DeadLetter>,
}

/// One dead letter as the dead-letter route shows it. Times are ISO 8601 UTC.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Dead-letter id: what `replay?id=` takes.
    pub id: u64,
    /// The webhook record's id, sent as `Idempotency-Key`.
    pub event_id: String,
    /// The wa-hub instance, if any.
    pub instance_id: Option<String>,
    /// The webhook's event name.
    pub event: String,
    /// Attempts made.
    pub attempts: u32,
    /// What the last attempt got (`HTTP 400: ...`, `cannot connect: ...`, `expired: ...`).
    pub last_error: Option<String>,
    /// When the sidecar received the webhook.
    pub received_at: String,
    /// First attempt, if any was made.
    pub first_attempt_at: Option<String>,
    /// Last attempt, if any was made.
    pub last_attempt_at: Option<String>,
    /// When it moved to the dead letters.
    pub dead_at: Option<String>,
    /// The `Content-Type` it is sent with.
    pub content_type: String,
    /// The body as text (invalid UTF-8 shown as U+FFFD; the stored bytes are unchanged).
    pub body: String,
}

impl From<Entry> for DeadLetter {
    fn from(e: Entry) -> Self {
        Self {
            id: e.seq,
            body: String::from_utf8_lossy(&e.body).into_owned(),
            first_attempt_at: iso_ms(e.meta.first_attempt_at_ms),
            last_attempt_at: iso_ms(e.meta.last_attempt_at_ms),
            dead_at: iso_ms(e.meta.dead_at_ms),
            event_id: e.meta.event_id,
            instance_id: e.meta.instance_id,
            event: e.meta.event,
            attempts: e.meta.attempts,
            last_error: e.meta.last_error,
            received_at: e.meta.received_at,
            content_type: e.meta.content_type,
        }
    }
}

impl ForwardHandle {
    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Events waiting in the outbox.
    pub fn pending(&self) -> u64 {
        self.0.outbox.pending_len()
    }

    /// Up to `limit` dead letters, oldest first, with the outbox counts. The counts are read
    /// first: they change only after a commit, so the list holds every dead letter `total`
    /// counts (up to `limit`). Read after the list, a commit in between gave `total: 1` with
    /// an empty list.
    ///
    /// # Errors
    /// [`OutboxError`] when the store cannot be read (logged and counted in `failed`).
    pub async fn dead_letters(&self, limit: usize) -> Result<DeadLetterList, OutboxError> {
        let pending = self.0.outbox.pending_len();
        let total = self.0.outbox.dead_len();
        let entries = blocking(&self.0.outbox, move |ob| ob.dead_letters(limit))
            .await
            .inspect_err(|e| {
                self.0.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(sink = %self.0.name, error = %e, "forward dead letters cannot be read");
            })?;
        Ok(DeadLetterList {
            sink: self.0.name.clone(),
            pending,
            total,
            dead_letters: entries.into_iter().map(DeadLetter::from).collect(),
        })
    }

    /// Re-queues the dead letter `id`, or all when `None`, behind the pending events, each
    /// with a fresh attempt count and age. Returns how many were re-queued.
    ///
    /// # Errors
    /// [`OutboxError::UnknownDeadLetter`] for an unknown id; other [`OutboxError`]s when the
    /// store failed (nothing re-queued then; logged and counted in `failed`).
    pub async fn replay(&self, id: Option<u64>) -> Result<usize, OutboxError> {
        let shared = &self.0;
        let moved = match blocking(&shared.outbox, move |ob| ob.replay(id, now_ms())).await {
            Ok(n) => n,
            Err(e @ OutboxError::UnknownDeadLetter(_)) => return Err(e),
            Err(e) => {
                shared.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(sink = %shared.name, error = %e, "forward dead-letter replay failed");
                return Err(e);
            }
        };
        shared
            .stats
            .pending
            .store(shared.outbox.pending_len(), Ordering::Relaxed);
        shared.wake.notify_one();
        tracing::info!(sink = %shared.name, replayed = moved, "forward dead letters re-queued");
        Ok(moved)
    }
}
