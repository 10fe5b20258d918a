//! The SSE hub: recent-event ring for resume, broadcast to clients, client limit.
//!
//! Wire format (DESIGN.md "Public interface"): unnamed events, each
//! `id: <bus id>\ndata: <{"type","data"} JSON>\n\n`; heartbeats are comment lines. The ring and
//! the broadcast carry the events themselves; each is serialized on first read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::broadcast;

use super::{InitialCache, LastEventId, SseConfig};
use crate::envelope::Event;
use crate::filter::Filter;
use crate::sink::{Sink, SinkError};

/// Counters of the hub, for logs and metrics.
#[derive(Debug, Default)]
pub struct SseStats {
    /// Events written to clients (one per client per event).
    pub events_sent: AtomicU64,
    /// Clients dropped because they fell behind or stopped reading.
    pub clients_dropped_slow: AtomicU64,
    /// Connections that resumed after a `Last-Event-ID`.
    pub resumes: AtomicU64,
    /// Connections whose `Last-Event-ID` was too old or unknown and got a `reset`.
    pub resets: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    frames: VecDeque<Arc<Event>>,
    /// Ids up to this one are not kept: evicted from `frames`, or from before this process
    /// ([`SseHub::begin_after`]).
    evicted_up_to: u64,
    /// Highest id published.
    last_id: u64,
}

/// The hub. Shared between the SSE sink (publishing) and the stream endpoint (clients).
#[derive(Debug)]
pub struct SseHub {
    config: SseConfig,
    filter: Filter,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<Event>>,
    clients: Arc<AtomicUsize>,
    initial: InitialCache,
    /// Counters.
    pub stats: SseStats,
}

/// How a new connection starts.
#[derive(Debug)]
pub enum Resume {
    /// No `Last-Event-ID`: send `connected`, `initial`, then live events.
    Fresh,
    /// A known `Last-Event-ID`: these kept events follow it, then live ones.
    Resumed(Vec<Arc<Event>>),
    /// A `Last-Event-ID` older than the kept history, from another process, from the future or
    /// unusable: the client must reload state (`reset`, then `initial`).
    Reset,
}

/// A client's view of the hub at the moment it connected.
#[derive(Debug)]
pub struct Subscription {
    /// The last event id the client's starting state covers: `initial` holds events up to it,
    /// live events come after it.
    pub snapshot_id: u64,
    /// How to start.
    pub resume: Resume,
    /// Live events after `snapshot_id`.
    pub rx: broadcast::Receiver<Arc<Event>>,
}

/// Holds one client slot until dropped.
#[derive(Debug)]
pub struct ClientGuard(Arc<AtomicUsize>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SseHub {
    /// A hub with `config`, whose sink receives what `filter` selects.
    pub fn new(config: SseConfig, filter: Filter) -> Self {
        let (tx, _) = broadcast::channel(config.client_backlog.get());
        Self {
            config,
            filter,
            ring: Mutex::new(Ring::default()),
            tx,
            clients: Arc::new(AtomicUsize::new(0)),
            initial: InitialCache::default(),
            stats: SseStats::default(),
        }
    }

    /// Tells a new hub the id its bus starts after (see `Bus`): ids up to it belong to an
    /// earlier process, so a client holding one gets a reset; the first `initial` carries it.
    /// Does nothing once an event was published.
    pub fn begin_after(&self, last_id: u64) {
        let mut ring = self.ring.lock();
        if ring.frames.is_empty() && ring.last_id == 0 {
            ring.last_id = last_id;
            ring.evicted_up_to = last_id;
        }
    }

    /// Starts the ids again after `last_id`, which may be lower than ids already published
    /// (fleet mode: the stream was re-created, so its sequence numbers started again): every
    /// kept frame and shared `initial` is dropped, and a client whose `Last-Event-ID` is above
    /// `last_id` then gets a reset. Clients already connected are not told; the caller ends
    /// their streams, and they come back with their old id.
    pub fn rebase(&self, last_id: u64) {
        let mut ring = self.ring.lock();
        ring.frames.clear();
        ring.last_id = last_id;
        ring.evicted_up_to = last_id;
        self.initial.clear();
    }

    /// The `initial` frames shared by clients connecting around the same time.
    pub fn initial_cache(&self) -> &InitialCache {
        &self.initial
    }

    /// The kept frames with ids in `after+1..=up_to`, in order; `None` when some of them are
    /// no longer kept.
    pub fn frames_between(&self, after: u64, up_to: u64) -> Option<Vec<Arc<Event>>> {
        let ring = self.ring.lock();
        if after < ring.evicted_up_to {
            return None;
        }
        Some(
            ring.frames
                .iter()
                .filter(|f| f.id > after && f.id <= up_to)
                .cloned()
                .collect(),
        )
    }

    /// The hub's settings.
    pub fn config(&self) -> &SseConfig {
        &self.config
    }

    /// Whether the SSE sink's filter selects `event` (used to filter `initial` the same way).
    pub fn selects(&self, event: &Event) -> bool {
        self.filter.matches(event)
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Acquire)
    }

    /// Takes a client slot, or `None` when `max_clients` are connected.
    pub fn join(&self) -> Option<ClientGuard> {
        let max = self.config.max_clients.get();
        self.clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ClientGuard(self.clients.clone()))
    }

    /// The id of the last event published to the hub (0 before the first).
    pub fn last_id(&self) -> u64 {
        self.ring.lock().last_id
    }

    /// Keeps `event` for resume and sends it to every client. It is serialized once, by the
    /// first client that writes it ([`Event::sse_frame`]): with nobody connected, never (issue
    /// 10: an API log nobody reads costs no JSON work).
    pub fn publish(&self, event: &Arc<Event>) {
        let frame = event.clone();
        let mut ring = self.ring.lock();
        ring.last_id = event.id;
        ring.frames.push_back(frame.clone());
        while ring.frames.len() > self.config.history.get() {
            if let Some(old) = ring.frames.pop_front() {
                ring.evicted_up_to = old.id;
            }
        }
        // Sent under the lock so a subscriber sees each frame exactly once: either in its
        // backlog or live.
        let _ = self.tx.send(frame);
    }

    /// Subscribes a client that last saw `last_event_id` (from `Last-Event-ID`): resumed
    /// when the id lies within the kept history, else reset (an unusable value, an id older
    /// than kept or from an earlier process, an id not yet published).
    pub fn subscribe(&self, last_event_id: LastEventId) -> Subscription {
        let ring = self.ring.lock();
        let rx = self.tx.subscribe();
        let resume = match last_event_id {
            LastEventId::Absent => Resume::Fresh,
            LastEventId::Unusable => Resume::Reset,
            LastEventId::Id(id) if id > ring.last_id || id < ring.evicted_up_to => Resume::Reset,
            LastEventId::Id(id) => {
                Resume::Resumed(ring.frames.iter().filter(|f| f.id > id).cloned().collect())
            }
        };
        match &resume {
            Resume::Resumed(_) => self.stats.resumes.fetch_add(1, Ordering::Relaxed),
            Resume::Reset => self.stats.resets.fetch_add(1, Ordering::Relaxed),
            Resume::Fresh => 0,
        };
        Subscription {
            snapshot_id: ring.last_id,
            resume,
            rx,
        }
    }
}

/// `id: <id>\ndata: <json>\n\n` (no `id:` line when `id` is `None`). `json` must be one line,
/// as serde_json's compact output always is.
pub fn encode_frame(id: Option<u64>, json: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 32);
    if let Some(id) = id {
        b.put_slice(b"id: ");
        b.put_slice(id.to_string().as_bytes());
        b.put_u8(b'\n');
    }
    b.put_slice(b"data: ");
    b.put_slice(json);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// An SSE comment line (`: text\n\n`), used for heartbeats; ignored by `EventSource`.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {}\n\n", text.replace(['\n', '\r'], " ")))
}

/// The sink half: feeds routed events into the hub.
pub struct SseSink {
    hub: Arc<SseHub>,
}

impl SseSink {
    /// A sink publishing into `hub`.
    pub fn new(hub: Arc<SseHub>) -> Self {
        Self { hub }
    }
}

#[async_trait]
impl Sink for SseSink {
    async fn deliver(&mut self, event: &Arc<Event>) -> Result<(), SinkError> {
        self.hub.publish(event);
        Ok(())
    }

    fn max_batch(&self) -> usize {
        crate::sink::LIVE_MAX_BATCH
    }

    fn batch_linger(&self) -> std::time::Duration {
        crate::sink::LIVE_BATCH_LINGER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::webhook;
    use std::num::NonZeroUsize;

    fn hub(history: usize) -> SseHub {
        let config = SseConfig {
            history: NonZeroUsize::new(history).unwrap(),
            max_clients: NonZeroUsize::new(2).unwrap(),
            ..SseConfig::default()
        };
        SseHub::new(config, Filter::default())
    }

    fn ids(frames: &[Arc<Event>]) -> Vec<u64> {
        frames.iter().map(|f| f.id).collect()
    }

    #[test]
    fn frame_is_id_then_one_data_line() {
        let e = webhook(7, "message", Some("a"));
        let f = encode_frame(Some(7), e.envelope_json());
        let text = std::str::from_utf8(&f).unwrap();
        assert!(text.starts_with("id: 7\ndata: {\"type\":\"webhook\",\"data\":{"));
        assert!(text.ends_with("}\n\n"));
        assert_eq!(
            text.matches('\n').count(),
            3,
            "newlines in text are escaped"
        );
        assert_eq!(comment("hb\nx"), Bytes::from_static(b": hb x\n\n"));
    }

    #[test]
    fn a_published_event_is_serialized_only_when_a_client_first_reads_it() {
        let h = hub(10);
        let mut sub = h.subscribe(LastEventId::Absent);
        let e = webhook(1, "message", Some("a"));
        h.publish(&e);
        assert!(!e.is_encoded(), "publishing serializes nothing");
        let got = sub.rx.try_recv().unwrap();
        let bytes = got.sse_frame().clone();
        assert!(e.is_encoded());
        assert_eq!(bytes.as_ptr(), e.sse_frame().as_ptr(), "serialized once");
    }

    #[test]
    fn published_frame_shares_the_events_envelope_bytes() {
        let h = hub(10);
        let e = webhook(9, "message", Some("a"));
        h.publish(&e);
        let sub = h.subscribe(LastEventId::Id(8));
        let Resume::Resumed(frames) = sub.resume else {
            panic!("resumed");
        };
        let f = frames[0].sse_frame();
        assert_eq!(f, &encode_frame(Some(9), e.envelope_json()));
        let json = e.envelope_json();
        let inside = f.as_ptr_range();
        assert!(
            inside.contains(&json.as_ptr()),
            "the envelope is a slice of the frame"
        );
        assert_eq!(f.as_ptr(), e.sse_frame().as_ptr());
    }

    #[test]
    fn after_a_rebase_ids_above_it_reset_and_new_ids_resume() {
        let h = hub(10);
        for id in 1..=50 {
            h.publish(&webhook(id, "ready", None));
        }
        h.rebase(0);
        assert_eq!(h.last_id(), 0);
        assert!(matches!(
            h.subscribe(LastEventId::Id(50)).resume,
            Resume::Reset
        ));
        h.publish(&webhook(1, "ready", None));
        h.publish(&webhook(2, "ready", None));
        match h.subscribe(LastEventId::Id(1)).resume {
            Resume::Resumed(f) => assert_eq!(ids(&f), vec![2]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            h.subscribe(LastEventId::Id(50)).resume,
            Resume::Reset
        ));
    }

    #[test]
    fn resume_returns_exactly_the_events_after_the_id() {
        let h = hub(10);
        for id in 1..=5 {
            h.publish(&webhook(id, "ready", None));
        }
        let sub = h.subscribe(LastEventId::Id(2));
        assert_eq!(sub.snapshot_id, 5);
        match sub.resume {
            Resume::Resumed(f) => assert_eq!(ids(&f), vec![3, 4, 5]),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(h.subscribe(LastEventId::Id(5)).resume, Resume::Resumed(ref f) if f.is_empty())
        );
        assert!(matches!(
            h.subscribe(LastEventId::Absent).resume,
            Resume::Fresh
        ));
    }

    #[test]
    fn id_older_than_history_or_from_the_future_resets() {
        let h = hub(3);
        for id in 1..=6 {
            h.publish(&webhook(id, "ready", None));
        }
        assert!(matches!(
            h.subscribe(LastEventId::Id(1)).resume,
            Resume::Reset
        ));
        assert!(
            matches!(h.subscribe(LastEventId::Id(3)).resume, Resume::Resumed(ref f) if ids(f) == vec![4, 5, 6])
        );
        assert!(matches!(
            h.subscribe(LastEventId::Id(99)).resume,
            Resume::Reset
        ));
        assert_eq!(h.stats.resets.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn live_events_follow_the_snapshot_without_gap_or_duplicate() {
        let h = hub(10);
        h.publish(&webhook(1, "ready", None));
        let mut sub = h.subscribe(LastEventId::Id(0));
        h.publish(&webhook(2, "ready", None));
        let backlog = match sub.resume {
            Resume::Resumed(f) => ids(&f),
            other => panic!("{other:?}"),
        };
        assert_eq!(backlog, vec![1]);
        assert_eq!(sub.rx.try_recv().unwrap().id, 2);
        assert!(sub.rx.try_recv().is_err());
    }

    #[test]
    fn client_limit_is_enforced_and_released() {
        let h = hub(1);
        let a = h.join().unwrap();
        let _b = h.join().unwrap();
        assert!(h.join().is_none());
        drop(a);
        assert!(h.join().is_some());
    }

    #[test]
    fn ids_from_before_the_process_and_garbage_reset() {
        let h = hub(10);
        h.begin_after(1000);
        assert_eq!(h.subscribe(LastEventId::Absent).snapshot_id, 1000);
        // Before any event: the start id itself resumes with nothing; older ids reset.
        assert!(
            matches!(h.subscribe(LastEventId::Id(1000)).resume, Resume::Resumed(ref f) if f.is_empty())
        );
        assert!(matches!(
            h.subscribe(LastEventId::Id(999)).resume,
            Resume::Reset
        ));
        for id in 1001..=1003 {
            h.publish(&webhook(id, "ready", None));
        }
        assert!(matches!(
            h.subscribe(LastEventId::Id(5)).resume,
            Resume::Reset
        ));
        assert!(matches!(
            h.subscribe(LastEventId::Id(1004)).resume,
            Resume::Reset
        ));
        assert!(matches!(
            h.subscribe(LastEventId::Unusable).resume,
            Resume::Reset
        ));
        assert!(
            matches!(h.subscribe(LastEventId::Id(1001)).resume, Resume::Resumed(ref f) if ids(f) == vec![1002, 1003])
        );
        h.begin_after(50);
        assert_eq!(
            h.subscribe(LastEventId::Absent).snapshot_id,
            1003,
            "no effect once started"
        );
    }
}
