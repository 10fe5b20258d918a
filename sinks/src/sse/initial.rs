//! The `initial` event: what a client that starts fresh (or after a `reset`) is sent first,
//! capped in bytes and built once per scope for every client that connects around the same
//! time (issue 14, item 8).
//!
//! - Cap: [`initial_json`] keeps the newest webhook records and API-log entries, newest first
//!   across both lists by bus id, while the encoded event stays within `initial_max_bytes`
//!   (the `instanceMeta` map always goes in); `truncated: true` says that older entries were
//!   left out. Before this cap, 100 stalled clients with large webhooks held 1.4 GB.
//! - Sharing: [`InitialCache`] keeps each scope's last encoded `initial` for
//!   [`SHARE_FOR`]; a client connecting within that time gets the same bytes (one allocation
//!   for all) plus the events published since, taken from the hub's ring, so it misses
//!   nothing. A storm of connections builds one snapshot per scope instead of one per client,
//!   which is what starved ingest.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::client::Scope;
use crate::envelope::{ApiLog, WebhookRecord};

/// How long a built `initial` is reused for clients of the same scope.
pub const SHARE_FOR: Duration = Duration::from_secs(1);

/// Most snapshots kept at once (one per scope; instance scopes are many).
const MAX_ENTRIES: usize = 256;

/// The `initial` event's data: histories newest first, the dashboard's `instanceMeta`, and
/// whether the byte cap left older entries out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Initial {
    /// Webhook records, newest first, each already encoded.
    pub webhook_events: Vec<Box<RawValue>>,
    /// API-log entries, newest first, each already encoded.
    pub api_logs: Vec<Box<RawValue>>,
    /// Per instance `{waStatus, lifecycleRank, lastEventAt, lastQrBase64, qrError}`.
    pub instance_meta: Value,
    /// `true` when entries were left out to stay within `initial_max_bytes`.
    pub truncated: bool,
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: &'a T,
}

/// The `{"type":"initial","data":{...}}` JSON for newest-first `webhooks` and `api_logs` (each
/// with its bus id) and `instance_meta`, at most about `max_bytes` long: entries are taken
/// newest first across both lists until the next one would pass the cap. `instance_meta` is
/// always included, even when it alone passes the cap.
pub fn initial_json(
    webhooks: &[(u64, &WebhookRecord)],
    api_logs: &[(u64, &ApiLog)],
    instance_meta: Value,
    max_bytes: usize,
) -> Vec<u8> {
    let overhead = serde_json::to_string(&instance_meta).map_or(0, |m| m.len()) + 96;
    let mut budget = max_bytes.saturating_sub(overhead);
    let mut initial = Initial {
        webhook_events: Vec::new(),
        api_logs: Vec::new(),
        instance_meta,
        truncated: false,
    };
    let (mut w, mut a) = (webhooks.iter().peekable(), api_logs.iter().peekable());
    loop {
        let take_webhook = match (w.peek(), a.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((wi, _)), Some((ai, _))) => wi > ai,
        };
        let encoded = if take_webhook {
            w.peek()
                .and_then(|(_, r)| serde_json::value::to_raw_value(r).ok())
        } else {
            a.peek()
                .and_then(|(_, l)| serde_json::value::to_raw_value(l).ok())
        };
        let Some(encoded) = encoded else {
            // Our own records always encode; skip one that would not.
            if take_webhook {
                w.next();
            } else {
                a.next();
            }
            continue;
        };
        let cost = encoded.get().len() + 1;
        if cost > budget {
            initial.truncated = true;
            break;
        }
        budget -= cost;
        if take_webhook {
            w.next();
            initial.webhook_events.push(encoded);
        } else {
            a.next();
            initial.api_logs.push(encoded);
        }
    }
    serde_json::to_vec(&Envelope {
        kind: "initial",
        data: &initial,
    })
    .unwrap_or_default()
}

/// Recently built `initial` frames, by scope.
#[derive(Debug, Default)]
pub struct InitialCache {
    entries: Mutex<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    scope: Scope,
    /// The last event id the snapshot covers.
    covers: u64,
    built: Instant,
    frame: Arc<OnceLock<Bytes>>,
}

impl InitialCache {
    /// The `initial` frame for a client of `scope` whose live events start after
    /// `snapshot_id`, and the id that frame covers (at most `snapshot_id`; the caller sends
    /// the events between the two). A frame of the same scope built within [`SHARE_FOR`] is
    /// reused; otherwise `build` makes one covering `snapshot_id`. Clients arriving while it
    /// is built wait for it (a blocking wait of one build) rather than building their own.
    pub fn get(
        &self,
        scope: &Scope,
        snapshot_id: u64,
        now: Instant,
        build: impl FnOnce() -> Bytes,
    ) -> (u64, Bytes) {
        let (covers, cell) = {
            let mut entries = self.entries.lock();
            entries.retain(|e| now.saturating_duration_since(e.built) < SHARE_FOR);
            match entries
                .iter()
                .find(|e| &e.scope == scope && e.covers <= snapshot_id)
            {
                Some(e) => (e.covers, e.frame.clone()),
                None => {
                    if entries.len() >= MAX_ENTRIES {
                        entries.remove(0);
                    }
                    let frame = Arc::new(OnceLock::new());
                    entries.push(Entry {
                        scope: scope.clone(),
                        covers: snapshot_id,
                        built: now,
                        frame: frame.clone(),
                    });
                    (snapshot_id, frame)
                }
            }
        };
        (covers, cell.get_or_init(build).clone())
    }

    /// Forgets every snapshot (fleet mode: the ids they cover started again).
    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    /// Forgets the snapshot of `scope` that covers `covers` (its catch-up events are no
    /// longer kept), so the next client builds a new one.
    pub fn forget(&self, scope: &Scope, covers: u64) {
        self.entries
            .lock()
            .retain(|e| !(&e.scope == scope && e.covers == covers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Payload;
    use crate::test_support::{api_log, webhook};

    fn record(e: &crate::envelope::Event) -> &WebhookRecord {
        match &e.payload {
            Payload::Webhook(w) => w,
            _ => unreachable!(),
        }
    }

    fn log(e: &crate::envelope::Event) -> &ApiLog {
        match &e.payload {
            Payload::ApiLog(l) => l,
            _ => unreachable!(),
        }
    }

    #[test]
    fn entries_are_kept_newest_first_within_the_byte_cap() {
        let hooks: Vec<_> = (1..=20)
            .rev()
            .filter(|i| i % 2 == 0)
            .map(|i| webhook(i, "message", Some("a")))
            .collect();
        let logs: Vec<_> = (1..=20)
            .rev()
            .filter(|i| i % 2 == 1)
            .map(|i| api_log(i, Some("a")))
            .collect();
        let w: Vec<_> = hooks.iter().map(|e| (e.id, record(e))).collect();
        let l: Vec<_> = logs.iter().map(|e| (e.id, log(e))).collect();

        let all = initial_json(&w, &l, serde_json::json!({}), usize::MAX);
        let v: Value = serde_json::from_slice(&all).unwrap();
        assert_eq!(v["type"], "initial");
        assert_eq!(v["data"]["webhookEvents"].as_array().unwrap().len(), 10);
        assert_eq!(v["data"]["apiLogs"].as_array().unwrap().len(), 10);
        assert_eq!(v["data"]["truncated"], false);

        let cap = all.len() / 2;
        let half = initial_json(&w, &l, serde_json::json!({}), cap);
        assert!(half.len() <= cap, "{} > {cap}", half.len());
        let v: Value = serde_json::from_slice(&half).unwrap();
        assert_eq!(v["data"]["truncated"], true);
        let kept_hooks = v["data"]["webhookEvents"].as_array().unwrap();
        let kept_logs = v["data"]["apiLogs"].as_array().unwrap();
        // The newest of both lists: webhook 20, log 19, webhook 18, ...
        assert_eq!(kept_hooks[0]["id"], "w20");
        assert_eq!(kept_logs[0]["id"], "a19");
        assert!(kept_hooks.len().abs_diff(kept_logs.len()) <= 1);
        assert!(kept_hooks.len() < 10);

        let none = initial_json(&w, &l, serde_json::json!({"x": 1}), 10);
        let v: Value = serde_json::from_slice(&none).unwrap();
        assert_eq!(v["data"]["instanceMeta"]["x"], 1, "meta always goes in");
        assert!(v["data"]["webhookEvents"].as_array().unwrap().is_empty());
    }

    #[test]
    fn a_snapshot_is_built_once_and_shared_within_its_time() {
        let cache = InitialCache::default();
        let t = Instant::now();
        let builds = std::cell::Cell::new(0);
        let build = |b: &'static [u8]| {
            builds.set(builds.get() + 1);
            Bytes::from_static(b)
        };
        assert_eq!(
            cache.get(&Scope::Global, 10, t, || build(b"ten")),
            (10, Bytes::from_static(b"ten"))
        );
        // Later clients get the same bytes and the id they cover.
        assert_eq!(
            cache
                .get(
                    &Scope::Global,
                    12,
                    t + Duration::from_millis(500),
                    || build(b"x")
                )
                .0,
            10
        );
        assert_eq!(builds.get(), 1);
        // Another scope has its own; an older snapshot id cannot use a newer frame.
        let a = Scope::Instance("a".into());
        assert_eq!(cache.get(&a, 12, t, || build(b"a")).0, 12);
        assert_eq!(cache.get(&Scope::Global, 9, t, || build(b"nine")).0, 9);
        assert_eq!(builds.get(), 3);
        // After SHARE_FOR, or once forgotten, it is built again.
        assert_eq!(
            cache
                .get(&Scope::Global, 20, t + SHARE_FOR, || build(b"new"))
                .0,
            20
        );
        cache.forget(&Scope::Global, 20);
        assert_eq!(
            cache
                .get(&Scope::Global, 21, t + SHARE_FOR, || build(b"again"))
                .0,
            21
        );
        assert_eq!(builds.get(), 5);
    }
}
