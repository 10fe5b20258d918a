//! The router: hands each event to every sink whose filter selects it, through one bounded
//! queue per sink, and supervises the sink tasks.
//!
//! Dispatch never blocks: a full queue drops the event for that sink only, counts the drop and
//! logs it at most once per [`DROP_LOG_INTERVAL`]. A sink that fails or panics is restarted
//! with capped exponential backoff; it never takes the process down.
//!
//! [`DROP_LOG_INTERVAL`]: crate::throttle::DROP_LOG_INTERVAL

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{mpsc, watch};

use crate::backoff::{sleep_or_shutdown, Backoff};
use crate::envelope::Event;
use crate::filter::Filter;
use crate::sink::{Sink, SinkError};
use crate::throttle::LogThrottle;
/// First restart delay after a failure.
pub const RESTART_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Largest restart delay.
pub const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Counters of one sink, for logs and metrics. The router counts `delivered`, `failed`,
/// `dropped` and `restarts`; a sink with its own retry logic, dead letters or a connection
/// updates the rest through the `Arc` it is built with (see [`SinkSpec::stats`]).
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events handed to the sink successfully (`Sink::deliver` returned `Ok`).
    pub delivered: AtomicU64,
    /// Events whose delivery failed.
    pub failed: AtomicU64,
    /// Events dropped: queue full, or dropped by the sink itself (e.g. too large).
    pub dropped: AtomicU64,
    /// Times the sink was restarted after a failure or panic.
    pub restarts: AtomicU64,
    /// Delivery attempts retried by the sink itself.
    pub retries: AtomicU64,
    /// Events moved to a dead-letter list.
    pub dead_letters: AtomicU64,
    /// Events waiting inside the sink (buffer, outbox), beyond its router queue.
    pub pending: AtomicU64,
    /// Connection state: 0 not applicable, 1 down, 2 up.
    connection: std::sync::atomic::AtomicU8,
}

impl SinkStats {
    /// Records the sink's connection state (for sinks that hold a connection).
    pub fn set_connected(&self, up: bool) {
        self.connection
            .store(if up { 2 } else { 1 }, Ordering::Relaxed);
    }

    /// The connection state: `None` for sinks without a connection.
    pub fn connected(&self) -> Option<bool> {
        match self.connection.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v == 2),
        }
    }
}

/// The dispatch side of one sink: its filter and the sending end of its bounded queue.
struct SinkQueue {
    name: String,
    kind: &'static str,
    filter: Filter,
    tx: mpsc::Sender<Arc<Event>>,
    capacity: usize,
    stats: Arc<SinkStats>,
    full_log: LogThrottle,
}

/// Fan-out of bus events to sink queues.
pub struct Router {
    queues: Vec<SinkQueue>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field(
                "sinks",
                &self.queues.iter().map(|q| &q.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// One sink as configured, before it runs.
pub struct SinkSpec {
    /// Unique name (logs, metrics, routes).
    pub name: String,
    /// The sink's config `type` (`sse`, `stdout`, `mqtt`, `forward`).
    pub kind: &'static str,
    /// What it receives.
    pub filter: Filter,
    /// Queue capacity, events (at least 1).
    pub queue_capacity: usize,
    /// The sink.
    pub sink: Box<dyn Sink>,
    /// Its counters; the sink may hold a clone to count what only it sees.
    pub stats: Arc<SinkStats>,
}

/// A sink with its queue, ready to be run by [`supervise`].
pub struct SinkTask {
    name: String,
    sink: Box<dyn Sink>,
    rx: mpsc::Receiver<Arc<Event>>,
    stats: Arc<SinkStats>,
    /// When the last batch was taken (see [`SinkTask::next_batch`]).
    last_batch: Option<tokio::time::Instant>,
}

impl SinkTask {
    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Queue depth and counters of one sink.
#[derive(Debug, Clone)]
pub struct SinkSnapshot {
    /// The sink's name.
    pub name: String,
    /// The sink's config `type`.
    pub kind: &'static str,
    /// Events waiting in its queue.
    pub queue_depth: usize,
    /// Most events its queue holds (`queue_capacity`).
    pub queue_capacity: usize,
    /// Its counters.
    pub stats: Arc<SinkStats>,
}

impl Router {
    /// Builds the router and the tasks that will run the sinks.
    pub fn new(specs: Vec<SinkSpec>) -> (Self, Vec<SinkTask>) {
        let mut queues = Vec::with_capacity(specs.len());
        let mut tasks = Vec::with_capacity(specs.len());
        for spec in specs {
            let capacity = spec.queue_capacity.max(1);
            let (tx, rx) = mpsc::channel(capacity);
            let stats = spec.stats;
            queues.push(SinkQueue {
                name: spec.name.clone(),
                kind: spec.kind,
                filter: spec.filter,
                tx,
                capacity,
                stats: stats.clone(),
                full_log: LogThrottle::default(),
            });
            tasks.push(SinkTask {
                name: spec.name,
                sink: spec.sink,
                rx,
                stats,
                last_batch: None,
            });
        }
        (Self { queues }, tasks)
    }

    /// A router with no sinks.
    pub fn empty() -> Self {
        Self::new(Vec::new()).0
    }

    /// Whether any sink receives events of `kind`: producers skip building events nobody takes.
    pub fn takes_kind(&self, kind: crate::envelope::Kind) -> bool {
        self.queues.iter().any(|q| q.filter.takes_kind(kind))
    }

    /// Queues `event` for every sink that selects it. Never blocks.
    pub fn dispatch(&self, event: &Arc<Event>) {
        self.dispatch_to(event, |_| true);
    }

    /// Like [`Router::dispatch`], to the sinks whose config `type` `kind` accepts (fleet mode:
    /// another node's events go to `sse` sinks only, so each event reaches the other sinks
    /// once fleet-wide, on the node that accepted it).
    pub fn dispatch_to(&self, event: &Arc<Event>, kind: impl Fn(&str) -> bool) {
        for queue in &self.queues {
            if !kind(queue.kind) || !queue.filter.matches(event) {
                continue;
            }
            match queue.tx.try_send(event.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let dropped = queue.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if queue.full_log.allow() {
                        tracing::warn!(
                            sink = %queue.name,
                            dropped_total = dropped,
                            capacity = queue.capacity,
                            "sink queue full, dropping events for this sink"
                        );
                    }
                }
                // The sink task has ended (shutdown): nothing to deliver to.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    queue.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Queue depth and counters of every sink, in config order.
    pub fn snapshot(&self) -> Vec<SinkSnapshot> {
        self.queues
            .iter()
            .map(|q| SinkSnapshot {
                name: q.name.clone(),
                kind: q.kind,
                queue_depth: q.capacity - q.tx.capacity(),
                queue_capacity: q.capacity,
                stats: q.stats.clone(),
            })
            .collect()
    }
}

/// Runs one sink until `shutdown` turns true or the router is dropped: delivers queued events
/// in order (in batches of up to [`Sink::max_batch`], at most one batch per
/// [`Sink::batch_linger`]), restarts the sink with capped exponential backoff after an error
/// or a panic, and at shutdown delivers what is still queued for at most `drain` before
/// calling [`Sink::stop`].
pub async fn supervise(mut task: SinkTask, mut shutdown: watch::Receiver<bool>, drain: Duration) {
    let mut backoff = Backoff::new(RESTART_BACKOFF_MIN, RESTART_BACKOFF_MAX);
    let mut started = false;
    let mut batch: Vec<Arc<Event>> = Vec::new();
    while !*shutdown.borrow() {
        if !started {
            if let Err(e) = guarded(task.sink.start()).await {
                let delay = backoff.next_delay();
                tracing::warn!(sink = %task.name, error = %e, retry_in_ms = delay.as_millis() as u64, "sink failed to start");
                task.stats.restarts.fetch_add(1, Ordering::Relaxed);
                if sleep_or_shutdown(delay, &mut shutdown).await {
                    break;
                }
                continue;
            }
            started = true;
        }
        let event = tokio::select! {
            ev = task.rx.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        task.next_batch(event, &mut batch).await;
        let count = batch.len() as u64;
        match task.deliver(&batch).await {
            Ok(()) => {
                if !task.sink.counts_deliveries() {
                    task.stats.delivered.fetch_add(count, Ordering::Relaxed);
                }
                backoff.reset();
            }
            Err(e) => {
                task.stats.failed.fetch_add(count, Ordering::Relaxed);
                task.stats.restarts.fetch_add(1, Ordering::Relaxed);
                let delay = backoff.next_delay();
                tracing::warn!(sink = %task.name, event_id = batch[0].id, events = count, error = %e, retry_in_ms = delay.as_millis() as u64, "sink delivery failed; restarting sink");
                started = false;
                if sleep_or_shutdown(delay, &mut shutdown).await {
                    break;
                }
            }
        }
    }
    task.drain_and_stop(started, drain).await;
}

impl SinkTask {
    /// `first` plus what is queued behind it, up to [`Sink::max_batch`]. Batches are paced: when
    /// the previous batch was taken less than [`Sink::batch_linger`] ago (a steady stream), the
    /// task first sleeps until a linger has passed since then and takes what gathered
    /// meanwhile, so it wakes at most about once per linger however fast events come. While it
    /// sleeps, producers wake nobody: that wake-up (an `eventfd` write by the proxy's thread,
    /// an `epoll_wait` return on the sink's) was the SSE sink's system calls per proxied call.
    /// An event after a quiet spell (more than a linger since the last batch) goes at once.
    async fn next_batch(&mut self, first: Arc<Event>, batch: &mut Vec<Arc<Event>>) {
        let max_batch = self.sink.max_batch().max(1);
        batch.clear();
        batch.push(first);
        fill(&mut self.rx, batch, max_batch);
        let linger = self.sink.batch_linger();
        if batch.len() < max_batch && !linger.is_zero() {
            if let Some(due) = self.last_batch.map(|at| at + linger) {
                if due > tokio::time::Instant::now() {
                    tokio::time::sleep_until(due).await;
                    fill(&mut self.rx, batch, max_batch);
                }
            }
        }
        self.last_batch = Some(tokio::time::Instant::now());
    }

    /// Delivers a non-empty batch, then lets the sink flush when its queue is empty (caught
    /// up).
    async fn deliver(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        if batch.len() == 1 {
            guarded(self.sink.deliver(&batch[0])).await?;
        } else {
            guarded(self.sink.deliver_batch(batch)).await?;
        }
        if self.rx.is_empty() {
            guarded(self.sink.flush()).await?;
        }
        Ok(())
    }

    /// At shutdown: delivers what is already queued within `drain` (when the sink is
    /// started), then flushes and stops the sink (given at least 100 ms).
    async fn drain_and_stop(&mut self, started: bool, drain: Duration) {
        let deadline = tokio::time::Instant::now() + drain;
        if started {
            while let Ok(event) = self.rx.try_recv() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, guarded(self.sink.deliver(&event))).await {
                    Ok(Ok(())) => {
                        if !self.sink.counts_deliveries() {
                            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Err(e)) => {
                        self.stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(sink = %self.name, error = %e, "sink failed while draining");
                        break;
                    }
                    Err(_) => {
                        tracing::warn!(sink = %self.name, left = self.rx.len() + 1, "drain time over; events left undelivered");
                        break;
                    }
                }
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(left.max(Duration::from_millis(100)), async {
            if started {
                let _ = guarded(self.sink.flush()).await;
            }
            self.sink.stop().await;
        })
        .await;
    }
}

/// Moves queued events into `batch` until it holds `max` or the queue is empty.
fn fill(rx: &mut mpsc::Receiver<Arc<Event>>, batch: &mut Vec<Arc<Event>>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(ev) => batch.push(ev),
            Err(_) => break,
        }
    }
}

/// Runs a sink future, turning a panic into an error.
async fn guarded<F>(fut: F) -> Result<(), SinkError>
where
    F: std::future::Future<Output = Result<(), SinkError>>,
{
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(panic) => Err(SinkError::Other(format!(
            "sink panicked: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

/// The text of a caught panic's payload (`&str` or `String`), else `unknown panic`.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::webhook;
    use async_trait::async_trait;
    use std::sync::Mutex;
    use std::time::Instant;

    /// Records delivered ids; panics on ids in `panic_on`, fails on ids in `fail_on`, waits on
    /// `gate` before each delivery when set.
    struct Probe {
        seen: Arc<Mutex<Vec<u64>>>,
        panic_on: Vec<u64>,
        fail_on: Vec<u64>,
        gate: Option<Arc<tokio::sync::Semaphore>>,
        starts: Arc<AtomicU64>,
    }

    #[async_trait]
    impl Sink for Probe {
        async fn start(&mut self) -> Result<(), SinkError> {
            self.starts.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn deliver(&mut self, event: &Arc<Event>) -> Result<(), SinkError> {
            if let Some(g) = &self.gate {
                g.acquire().await.unwrap().forget();
            }
            if self.panic_on.contains(&event.id) {
                panic!("boom {}", event.id);
            }
            if self.fail_on.contains(&event.id) {
                return Err(SinkError::Other("refused".into()));
            }
            self.seen.lock().unwrap().push(event.id);
            Ok(())
        }
    }

    fn probe(
        panic_on: Vec<u64>,
        fail_on: Vec<u64>,
        gate: Option<Arc<tokio::sync::Semaphore>>,
    ) -> (Probe, Arc<Mutex<Vec<u64>>>, Arc<AtomicU64>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let starts = Arc::new(AtomicU64::new(0));
        (
            Probe {
                seen: seen.clone(),
                panic_on,
                fail_on,
                gate,
                starts: starts.clone(),
            },
            seen,
            starts,
        )
    }

    async fn wait_for(seen: &Arc<Mutex<Vec<u64>>>, n: usize) {
        for _ in 0..400 {
            if seen.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("only {:?} delivered", seen.lock().unwrap());
    }

    #[tokio::test]
    async fn panicking_or_failing_sink_is_restarted_and_others_are_unaffected() {
        let (bad, bad_seen, bad_starts) = probe(vec![2], vec![4], None);
        let (good, good_seen, _) = probe(vec![], vec![], None);
        let (router, tasks) = Router::new(vec![
            SinkSpec {
                kind: "test",
                name: "bad".into(),
                filter: Filter::default(),
                queue_capacity: 16,
                sink: Box::new(bad),
                stats: Default::default(),
            },
            SinkSpec {
                kind: "test",
                name: "good".into(),
                filter: Filter::default(),
                queue_capacity: 16,
                sink: Box::new(good),
                stats: Default::default(),
            },
        ]);
        let (_tx, shutdown) = watch::channel(false);
        for t in tasks {
            tokio::spawn(supervise(t, shutdown.clone(), Duration::from_secs(1)));
        }
        for id in 1..=6 {
            router.dispatch(&webhook(id, "ready", Some("a")));
        }
        wait_for(&good_seen, 6).await;
        wait_for(&bad_seen, 4).await;
        assert_eq!(*good_seen.lock().unwrap(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(*bad_seen.lock().unwrap(), vec![1, 3, 5, 6]);
        let snap = router.snapshot();
        assert_eq!(snap[0].stats.failed.load(Ordering::SeqCst), 2);
        assert_eq!(snap[0].stats.restarts.load(Ordering::SeqCst), 2);
        assert_eq!(bad_starts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn full_queue_drops_for_that_sink_only_without_blocking() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (slow, slow_seen, _) = probe(vec![], vec![], Some(gate.clone()));
        let (fast, fast_seen, _) = probe(vec![], vec![], None);
        let (router, tasks) = Router::new(vec![
            SinkSpec {
                kind: "test",
                name: "slow".into(),
                filter: Filter::default(),
                queue_capacity: 4,
                sink: Box::new(slow),
                stats: Default::default(),
            },
            SinkSpec {
                kind: "test",
                name: "fast".into(),
                filter: Filter::default(),
                queue_capacity: 1000,
                sink: Box::new(fast),
                stats: Default::default(),
            },
        ]);
        let (_tx, shutdown) = watch::channel(false);
        for t in tasks {
            tokio::spawn(supervise(t, shutdown.clone(), Duration::from_secs(1)));
        }
        let started = Instant::now();
        for id in 1..=100 {
            router.dispatch(&webhook(id, "ready", None));
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "dispatch blocked"
        );
        wait_for(&fast_seen, 100).await;
        let snap = router.snapshot();
        let dropped = snap[0].stats.dropped.load(Ordering::SeqCst);
        assert!(dropped >= 95, "dropped {dropped}");
        assert_eq!(snap[1].stats.dropped.load(Ordering::SeqCst), 0);
        gate.add_permits(1000);
        wait_for(&slow_seen, (100 - dropped) as usize).await;
    }

    /// Takes batches of up to 8; records each batch's ids.
    struct Batcher {
        batches: Arc<Mutex<Vec<Vec<u64>>>>,
        gate: Arc<tokio::sync::Semaphore>,
        linger: Duration,
    }

    #[async_trait]
    impl Sink for Batcher {
        async fn deliver(&mut self, event: &Arc<Event>) -> Result<(), SinkError> {
            self.deliver_batch(std::slice::from_ref(event)).await
        }
        fn max_batch(&self) -> usize {
            8
        }
        fn batch_linger(&self) -> Duration {
            self.linger
        }
        async fn deliver_batch(&mut self, events: &[Arc<Event>]) -> Result<(), SinkError> {
            self.gate.acquire().await.unwrap().forget();
            self.batches
                .lock()
                .unwrap()
                .push(events.iter().map(|e| e.id).collect());
            Ok(())
        }
    }

    #[tokio::test]
    async fn batching_sink_gets_what_is_queued_in_order_up_to_its_batch_size() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (router, mut tasks) = Router::new(vec![SinkSpec {
            kind: "test",
            name: "b".into(),
            filter: Filter::default(),
            queue_capacity: 100,
            sink: Box::new(Batcher {
                batches: batches.clone(),
                gate: gate.clone(),
                linger: Duration::ZERO,
            }),
            stats: Default::default(),
        }]);
        let (_tx, shutdown) = watch::channel(false);
        tokio::spawn(supervise(tasks.remove(0), shutdown, Duration::from_secs(1)));
        router.dispatch(&webhook(1, "ready", None));
        tokio::time::sleep(Duration::from_millis(50)).await; // 1 is taken alone, then blocks
        for id in 2..=20 {
            router.dispatch(&webhook(id, "ready", None));
        }
        gate.add_permits(100);
        for _ in 0..200 {
            if router.snapshot()[0].stats.delivered.load(Ordering::SeqCst) == 20 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = batches.lock().unwrap().clone();
        assert_eq!(got.concat(), (1..=20).collect::<Vec<u64>>());
        assert_eq!(got[0], vec![1]);
        assert!(got.iter().all(|b| b.len() <= 8), "{got:?}");
        assert_eq!(got[1].len(), 8, "{got:?}");
    }

    /// A router with one `Batcher` lingering `linger`, its task running, and the batches it
    /// takes.
    fn lingering_batcher(linger: Duration) -> (Router, Arc<Mutex<Vec<Vec<u64>>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let (router, mut tasks) = Router::new(vec![SinkSpec {
            kind: "test",
            name: "b".into(),
            filter: Filter::default(),
            queue_capacity: 100,
            sink: Box::new(Batcher {
                batches: batches.clone(),
                gate: Arc::new(tokio::sync::Semaphore::new(100)),
                linger,
            }),
            stats: Default::default(),
        }]);
        let (tx, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            supervise(tasks.remove(0), shutdown, Duration::from_secs(1)).await;
            drop(tx);
        });
        (router, batches)
    }

    // Paused clock: `sleep` advances virtual time only, so "before the linger" is exact.
    #[tokio::test(start_paused = true)]
    async fn a_lone_event_after_a_quiet_spell_goes_at_once() {
        let (router, batches) = lingering_batcher(Duration::from_millis(300));
        router.dispatch(&webhook(1, "ready", None));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(*batches.lock().unwrap(), vec![vec![1]]);
        // Quiet for longer than the linger: the next lone event goes at once too.
        tokio::time::sleep(Duration::from_millis(400)).await;
        router.dispatch(&webhook(2, "ready", None));
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(*batches.lock().unwrap(), vec![vec![1], vec![2]]);
    }

    #[tokio::test(start_paused = true)]
    async fn events_within_a_linger_of_the_last_batch_wait_for_it_and_go_together() {
        let (router, batches) = lingering_batcher(Duration::from_millis(300));
        router.dispatch(&webhook(1, "ready", None));
        tokio::time::sleep(Duration::from_millis(50)).await;
        router.dispatch(&webhook(2, "ready", None));
        tokio::time::sleep(Duration::from_millis(100)).await;
        router.dispatch(&webhook(3, "ready", None));
        // 150 ms after the first batch: 2 and 3 wait for the linger to pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*batches.lock().unwrap(), vec![vec![1]]);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(*batches.lock().unwrap(), vec![vec![1], vec![2, 3]]);
    }

    #[tokio::test]
    async fn shutdown_drains_what_is_queued() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (s, seen, _) = probe(vec![], vec![], Some(gate.clone()));
        let (router, mut tasks) = Router::new(vec![SinkSpec {
            kind: "test",
            name: "s".into(),
            filter: Filter::default(),
            queue_capacity: 100,
            sink: Box::new(s),
            stats: Default::default(),
        }]);
        let (tx, shutdown) = watch::channel(false);
        let handle = tokio::spawn(supervise(tasks.remove(0), shutdown, Duration::from_secs(2)));
        for id in 1..=10 {
            router.dispatch(&webhook(id, "ready", None));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        gate.add_permits(100);
        handle.await.unwrap();
        assert_eq!(seen.lock().unwrap().len(), 10);
    }
}
