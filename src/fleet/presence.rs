//! One live process per `node_id`: each node keeps a presence key in the status bucket,
//! `presence.<node token>`, holding a random token of its own process, refreshed every
//! [`REFRESH_INTERVAL`] with a compare-and-set on the key's revision (KV `update` with the
//! revision it last wrote).
//!
//! The value is JSON: `{"token", "host", "boot", "pid", "at"}` (`boot`: the kernel's boot id,
//! `at`: milliseconds since the Unix epoch when written). nats-server 2.9's KV has no TTL per
//! key, so a presence is stale when its owner stopped refreshing it: when `at` is more than
//! [`STALE_AFTER`] old, when its revision does not change for [`STALE_AFTER`] while a starting
//! node watches it, or at once when it was written on this machine (same host and boot id) by a
//! process that is gone (or by a process with this very pid: an earlier life of a container).
//! A stale presence is taken over; a node restarted after SIGKILL therefore starts at once on
//! the same machine, and within [`STALE_AFTER`] elsewhere.
//!
//! - At start ([`Presence::claim`]): a presence of another live process refuses start-up
//!   ([`FleetError::NodeIdInUse`]).
//! - Later ([`run`]): a refresh that finds another process's token (two processes started
//!   while NATS was unreachable, or a claim missed) sets the conflict
//!   ([`Presence::conflict`]: `/readyz` answers 503, metric
//!   `wa_hub_sidecar_fleet_node_id_conflict`), logs an error and writes its own token back, so
//!   the other process finds the conflict too. The conflict clears once no other token was
//!   seen for twice [`STALE_AFTER`].
//! - On SIGTERM ([`Presence::release`]): the key is deleted (when it still holds this
//!   process's last write), so the next process with this node id starts at once anywhere.

use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{Operation, Store, UpdateErrorKind};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::config::FleetSettings;
use super::setup::FleetError;
use super::subject::encode_token;

/// How often a node refreshes its presence.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// A presence not refreshed for this long belongs to a process that is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// Key prefix of presences.
pub const PRESENCE_PREFIX: &str = "presence.";

/// The presence key of `node`.
pub fn presence_key(node: &str) -> String {
    format!("{PRESENCE_PREFIX}{}", encode_token(node))
}

/// The value of a presence key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    /// Random token of the process.
    pub token: String,
    /// Host name.
    pub host: String,
    /// The kernel's boot id (empty when unknown).
    pub boot: String,
    /// Process id.
    pub pid: u32,
    /// When written, ms since the Unix epoch.
    pub at: i64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on host {}", self.pid, self.host)
    }
}

/// This process's presence and what its refreshes found.
#[derive(Debug)]
pub struct Presence {
    me: Holder,
    /// Revision of the key this process last wrote (0: none).
    revision: Mutex<u64>,
    /// Another process holding this node id, and when it was last seen.
    conflict: Mutex<Option<(Holder, Instant)>>,
    /// Set at shutdown: no more refreshes.
    released: std::sync::atomic::AtomicBool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl Presence {
    /// This process's presence (a new random token).
    pub fn new() -> Self {
        Self {
            me: Holder {
                token: uuid::Uuid::new_v4().to_string(),
                host: read_trimmed("/proc/sys/kernel/hostname"),
                boot: read_trimmed("/proc/sys/kernel/random/boot_id"),
                pid: std::process::id(),
                at: 0,
            },
            revision: Mutex::new(0),
            conflict: Mutex::new(None),
            released: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn value(&self) -> Bytes {
        let mut me = self.me.clone();
        me.at = now_ms();
        Bytes::from(serde_json::to_vec(&me).unwrap_or_default())
    }

    /// The other live process holding this node id, while a conflict stands.
    pub fn conflict(&self) -> Option<Holder> {
        let c = self.conflict.lock();
        c.as_ref()
            .filter(|(_, seen)| seen.elapsed() < 2 * STALE_AFTER)
            .map(|(h, _)| h.clone())
    }

    /// Whether `other` is certainly gone without waiting: older than [`STALE_AFTER`] by this
    /// clock, or written on this machine by a process that no longer runs (or by this pid).
    fn gone(&self, other: &Holder) -> bool {
        let old = now_ms().saturating_sub(other.at) > STALE_AFTER.as_millis() as i64;
        let here =
            !self.me.boot.is_empty() && other.host == self.me.host && other.boot == self.me.boot;
        let dead = other.pid == self.me.pid
            || !std::path::Path::new(&format!("/proc/{}", other.pid)).exists();
        old || (here && dead)
    }

    /// Takes this node's presence at start.
    ///
    /// # Errors
    /// [`FleetError::NodeIdInUse`] when another process holds it and refreshes it (seen within
    /// [`STALE_AFTER`]); [`FleetError::JetStream`] when the bucket cannot be written.
    pub async fn claim(&self, store: &Store, settings: &FleetSettings) -> Result<(), FleetError> {
        let key = presence_key(&settings.node_id);
        let js = |e: &dyn std::fmt::Display| FleetError::JetStream(format!("presence {key}: {e}"));
        // The other holder's revision when first seen, and since when.
        let mut watched: Option<(u64, Instant)> = None;
        loop {
            let entry = store.entry(key.as_str()).await.map_err(|e| js(&e))?;
            let expected = match &entry {
                None => 0,
                Some(e) if matches!(e.operation, Operation::Delete | Operation::Purge) => {
                    e.revision
                }
                Some(e) => match serde_json::from_slice::<Holder>(&e.value) {
                    Ok(h) if h.token != self.me.token && !self.gone(&h) => match watched {
                        None => {
                            watched = Some((e.revision, Instant::now()));
                            tokio::time::sleep(REFRESH_INTERVAL / 2).await;
                            continue;
                        }
                        // Its owner refreshed it: alive.
                        Some((rev, _)) if rev != e.revision => {
                            return Err(FleetError::NodeIdInUse {
                                node: settings.node_id.clone(),
                                holder: h.to_string(),
                                bucket: settings.raw.status_bucket.clone(),
                            });
                        }
                        Some((_, since)) if since.elapsed() < STALE_AFTER => {
                            tokio::time::sleep(REFRESH_INTERVAL / 2).await;
                            continue;
                        }
                        Some(_) => {
                            tracing::info!(node = %settings.node_id, holder = %h, "fleet: taking over a presence no longer refreshed");
                            e.revision
                        }
                    },
                    _ => e.revision,
                },
            };
            if self.take(store, &key, expected).await? {
                return Ok(());
            }
            // Another process wrote the key meanwhile: look again.
        }
    }

    /// Writes this process's presence over revision `expected`; `false` when the key moved on.
    async fn take(&self, store: &Store, key: &str, expected: u64) -> Result<bool, FleetError> {
        match store.update(key, self.value(), expected).await {
            Ok(rev) => {
                *self.revision.lock() = rev;
                Ok(true)
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(FleetError::JetStream(format!("presence {key}: {e}"))),
        }
    }

    /// Stops the refreshes and deletes the key when it still holds this process's last write.
    pub async fn release(&self, store: &Store, node: &str) {
        self.released
            .store(true, std::sync::atomic::Ordering::Release);
        let rev = *self.revision.lock();
        if rev == 0 {
            return;
        }
        match store
            .delete_expect_revision(presence_key(node), Some(rev))
            .await
        {
            Ok(()) => tracing::debug!(node, "fleet: presence released"),
            Err(e) => tracing::debug!(node, error = %e, "fleet: presence not released"),
        }
    }

    /// One refresh: see the module doc.
    async fn refresh(&self, store: &Store, node: &str) {
        if self.released.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let key = presence_key(node);
        let expected = *self.revision.lock();
        let err = match store.update(key.as_str(), self.value(), expected).await {
            Ok(rev) => {
                *self.revision.lock() = rev;
                return;
            }
            Err(e) => e,
        };
        if err.kind() != UpdateErrorKind::WrongLastRevision {
            // NATS unreachable or stalled: the next refresh tries again.
            tracing::debug!(error = %err, "fleet: presence not refreshed");
            return;
        }
        let entry = match store.entry(key.as_str()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "fleet: presence not read");
                return;
            }
        };
        let live = entry
            .as_ref()
            .filter(|e| !matches!(e.operation, Operation::Delete | Operation::Purge));
        let holder = live.and_then(|e| serde_json::from_slice::<Holder>(&e.value).ok());
        match holder {
            Some(h) if h.token == self.me.token => {
                // Our own earlier write, its acknowledgement lost.
                *self.revision.lock() = live.map_or(0, |e| e.revision);
                return;
            }
            Some(h) if !self.gone(&h) => {
                let mut c = self.conflict.lock();
                if c.is_none() {
                    tracing::error!(
                        node,
                        holder = %h,
                        "fleet: another live process uses this fleet.node_id; give every node its own (not ready until it is gone)"
                    );
                }
                *c = Some((h, Instant::now()));
            }
            _ => {}
        }
        // Missing (the bucket was created anew), stale, or another's: write ours over it.
        let rev = entry.map_or(0, |e| e.revision);
        if let Err(e) = self.take(store, &key, rev).await {
            tracing::debug!(error = %e, "fleet: presence not written");
        }
    }
}

impl Default for Presence {
    fn default() -> Self {
        Self::new()
    }
}

/// Refreshes the presence `p` of node `node_id` every [`REFRESH_INTERVAL`], forever, in the
/// bucket `store()` gives (`None`: not reachable now, the round is skipped); clears a
/// conflict that was not seen again for twice [`STALE_AFTER`].
pub async fn run(p: &Presence, node_id: &str, store: impl Fn() -> Option<Store>) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if p.conflict
            .lock()
            .as_ref()
            .is_some_and(|(_, seen)| seen.elapsed() >= 2 * STALE_AFTER)
        {
            *p.conflict.lock() = None;
            tracing::info!("fleet: no other process seen with this fleet.node_id any more");
        }
        if let Some(store) = store() {
            p.refresh(&store, node_id).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presence_is_gone_when_old_or_its_process_on_this_machine_is_gone() {
        let p = Presence::new();
        let mut other = p.me.clone();
        other.token = "other".into();
        other.at = now_ms();
        other.pid = std::process::id();
        assert!(p.gone(&other), "this very pid: an earlier life");
        other.pid = 1;
        assert!(!p.gone(&other) || p.me.boot.is_empty(), "pid 1 runs");
        other.host = "elsewhere".into();
        assert!(!p.gone(&other), "fresh, on another machine");
        other.at = now_ms() - 60_000;
        assert!(p.gone(&other), "not refreshed for a minute");
    }
}
