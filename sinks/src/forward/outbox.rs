//! The durable outbox of a forward sink: undelivered events and dead letters in one embedded
//! [redb](https://docs.rs/redb) database file.
//!
//! Two tables keyed by a sequence number (`u64`, increasing in arrival order): `pending`
//! (events still to deliver, delivered oldest first) and `dead` (events given up on). A value
//! is `(meta JSON, body bytes)`: the body is the webhook's raw bytes, stored and sent
//! unchanged. An entry moves between the tables keeping its key, except that replaying a dead
//! letter appends it to `pending` under a new key.
//!
//! Durability: [`Outbox::push`], [`Outbox::push_many`], [`Outbox::bury`] and [`Outbox::replay`] commit with fsync
//! (`Durability::Immediate`) before they return. Removing a delivered event and recording a
//! failed attempt commit with `Durability::Eventual` (written, not fsynced): they survive a
//! killed process, and a power loss can at worst bring back an event that was delivered,
//! which at-least-once delivery allows (receivers deduplicate on `Idempotency-Key`).
//!
//! Damage: [`Outbox::open`] refuses a file it cannot trust (truncated, zeroed or overwritten
//! pages, another kind of file, an empty file, a directory) with [`OutboxError::Damaged`],
//! whose message names the file and the way out (move it aside). It never starts on such a
//! file with an empty queue, and a panic inside redb on a damaged file is caught there and
//! reported the same way (issue 14, item 4).
//!
//! Every method blocks on disk I/O: call it from `tokio::task::spawn_blocking`.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once};

use bytes::Bytes;
use redb::{
    Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

/// Key: sequence number. Value: (meta JSON, raw body).
type EntryTable = TableDefinition<'static, u64, (&'static str, &'static [u8])>;
const PENDING: EntryTable = TableDefinition::new("pending");
const DEAD: EntryTable = TableDefinition::new("dead");

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The parent directory of the outbox file could not be created.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database file could not be opened or created (unwritable, locked by another
    /// process, not a redb file).
    #[error("cannot open outbox {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// redb's error.
        source: Box<redb::DatabaseError>,
    },
    /// The file exists but is not an intact outbox: truncated, pages zeroed or overwritten,
    /// another kind of file, empty, or not a regular file. Its events cannot be trusted, so
    /// the sink refuses to start on it rather than start with an empty queue.
    #[error(
        "outbox {path} is damaged ({reason}); not starting on it, because its undelivered \
         events would be lost silently. Move it aside to start with an empty outbox \
         (mv {path} {path}.damaged), and keep the copy to inspect or recover it"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A read or write of the store failed.
    #[error("outbox store error: {0}")]
    Store(Box<redb::Error>),
    /// An entry's metadata did not parse (written by an incompatible version?).
    #[error("outbox entry {seq} is unreadable: {source}")]
    Corrupt {
        /// The entry's key.
        seq: u64,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The blocking task running the operation panicked or was cancelled.
    #[error("outbox task interrupted: {0}")]
    Interrupted(String),
    /// Replay of a dead letter that does not exist.
    #[error("no dead letter with id {0}")]
    UnknownDeadLetter(u64),
}

/// What the outbox keeps about an event beside its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryMeta {
    /// The webhook record's id (UUID): the `Idempotency-Key` of every attempt.
    pub event_id: String,
    /// The wa-hub instance, when the webhook named one.
    pub instance_id: Option<String>,
    /// The webhook's event name.
    pub event: String,
    /// `Content-Type` to send with the body.
    pub content_type: String,
    /// When the sidecar received the webhook (ISO 8601, from the record).
    pub received_at: String,
    /// When the event entered the outbox (or was replayed), Unix ms: the basis of
    /// `max_age_secs`.
    pub enqueued_at_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix ms of the first attempt.
    pub first_attempt_at_ms: Option<i64>,
    /// Unix ms of the latest attempt.
    pub last_attempt_at_ms: Option<i64>,
    /// What the latest attempt got.
    pub last_error: Option<String>,
    /// Unix ms when the event moved to the dead letters.
    pub dead_at_ms: Option<i64>,
}

impl EntryMeta {
    /// Meta of a new event: no attempts yet.
    pub fn new(
        event_id: String,
        instance_id: Option<String>,
        event: String,
        content_type: String,
        received_at: String,
        enqueued_at_ms: i64,
    ) -> Self {
        Self {
            event_id,
            instance_id,
            event,
            content_type,
            received_at,
            enqueued_at_ms,
            attempts: 0,
            first_attempt_at_ms: None,
            last_attempt_at_ms: None,
            last_error: None,
            dead_at_ms: None,
        }
    }

    /// Records an attempt made at `at_ms` that got `error` (`None`: none yet).
    pub fn note_attempt(&mut self, at_ms: i64, error: Option<String>) {
        self.attempts = self.attempts.saturating_add(1);
        self.first_attempt_at_ms.get_or_insert(at_ms);
        self.last_attempt_at_ms = Some(at_ms);
        self.last_error = error;
    }
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its key: the id of a dead letter.
    pub seq: u64,
    /// Its metadata.
    pub meta: EntryMeta,
    /// The raw webhook body.
    pub body: Bytes,
}

/// The outbox of one forward sink. Shared (`Arc`) by the sink, its delivery worker and the
/// dead-letter routes; redb serializes the writers.
#[derive(Debug)]
pub struct Outbox {
    db: Database,
    path: PathBuf,
    next_seq: AtomicU64,
    pending: AtomicU64,
    dead: AtomicU64,
}

impl Outbox {
    /// Opens the outbox at `path`, creating the file and its parent directories when
    /// missing. Pending entries left by an earlier run are kept and delivered first. The
    /// whole file is checked first (redb's page checksums), so this takes time proportional
    /// to its size. A file left by a killed process is recovered (logged as a warning).
    ///
    /// # Errors
    /// [`OutboxError::Damaged`] when the file is not an intact outbox (truncated, zeroed or
    /// overwritten pages, another kind of file, empty, a directory), including when redb
    /// panics on it; [`OutboxError::CreateDir`] or [`OutboxError::Open`] when the location is
    /// unwritable, unreadable, or the file is held by another process;
    /// [`OutboxError::Store`] when the tables cannot be read.
    ///
    /// # Panics
    /// Never on a damaged file: redb's panics are caught here.
    pub fn open(path: &Path) -> Result<Self, OutboxError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| OutboxError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let damaged = |reason: String| OutboxError::Damaged {
            path: path.to_owned(),
            reason,
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(damaged("a directory, not a file".into())),
            Ok(m) if !m.is_file() => return Err(damaged("not a regular file".into())),
            // redb would initialise an empty file as a new database: an outbox file is never
            // empty once created, so an empty one lost its contents.
            Ok(m) if m.len() == 0 => return Err(damaged("empty file".into())),
            _ => {}
        }
        let repaired = Arc::new(AtomicBool::new(false));
        let flag = repaired.clone();
        // redb asserts on some damaged layouts (a truncated file, a bad region header): such a
        // panic is the file's fault, not a bug of ours, so it becomes `Damaged`.
        let open_error = |source: redb::DatabaseError| OutboxError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let opened = quietly_catch_unwind(|| {
            let mut db = Database::builder()
                .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
                .create(path)
                .map_err(open_error)?;
            // Page checksums of every table: a zeroed or overwritten page shows here, not
            // only when the worker reaches that entry.
            let intact = db.check_integrity().map_err(open_error)?;
            let sizes = Self::init(&db)?;
            Ok::<_, OutboxError>((db, intact, sizes))
        });
        let (db, intact, (last, pending, dead)) = match opened {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(classify(path, e)),
            Err(panic) => {
                return Err(damaged(format!(
                    "the storage library failed on it: {}",
                    crate::router::panic_message(panic.as_ref())
                )))
            }
        };
        if !intact {
            // redb found bad checksums and rolled back to the last intact commit: the most
            // recent changes may be gone. Not silent: logged with what is left.
            tracing::error!(
                path = %path.display(),
                pending,
                dead,
                "outbox: damaged pages found and repaired by rolling back to the last intact \
                 commit; the most recent events may have been lost"
            );
        } else if repaired.load(Ordering::Relaxed) {
            tracing::warn!(
                path = %path.display(),
                pending,
                "outbox: not closed cleanly last time; recovered"
            );
        }
        Ok(Self {
            db,
            path: path.to_owned(),
            next_seq: AtomicU64::new(last + 1),
            pending: AtomicU64::new(pending),
            dead: AtomicU64::new(dead),
        })
    }

    /// Creates the tables; returns the largest key in use and the two table sizes.
    fn init(db: &Database) -> Result<(u64, u64, u64), OutboxError> {
        let txn = db.begin_write().map_err(store)?;
        let sizes = {
            let pending = txn.open_table(PENDING).map_err(store)?;
            let dead = txn.open_table(DEAD).map_err(store)?;
            let last_of = |t: &redb::Table<u64, (&str, &[u8])>| -> Result<u64, OutboxError> {
                Ok(t.last()
                    .map_err(store)?
                    .map(|(k, _)| k.value())
                    .unwrap_or(0))
            };
            (
                last_of(&pending)?.max(last_of(&dead)?),
                pending.len().map_err(store)?,
                dead.len().map_err(store)?,
            )
        };
        txn.commit().map_err(store)?;
        Ok(sizes)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Events waiting for delivery.
    pub fn pending_len(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Dead letters kept.
    pub fn dead_len(&self) -> u64 {
        self.dead.load(Ordering::Acquire)
    }

    fn write(&self, durability: Durability) -> Result<WriteTransaction, OutboxError> {
        let mut txn = self.db.begin_write().map_err(store)?;
        txn.set_durability(durability);
        Ok(txn)
    }

    /// Appends an event and commits with fsync; returns its key.
    ///
    /// # Errors
    /// [`OutboxError::Store`] when the write failed; the event is then not stored.
    pub fn push(&self, meta: &EntryMeta, body: &[u8]) -> Result<u64, OutboxError> {
        let keys = self.push_many(&[(meta.clone(), Bytes::copy_from_slice(body))])?;
        Ok(keys[0])
    }

    /// Appends events in order in one transaction committed with fsync (one disk sync for all
    /// of them); returns their keys.
    ///
    /// # Errors
    /// [`OutboxError::Store`] when the write failed; none of them is then stored.
    pub fn push_many(&self, items: &[(EntryMeta, Bytes)]) -> Result<Vec<u64>, OutboxError> {
        let txn = self.write(Durability::Immediate)?;
        let mut keys = Vec::with_capacity(items.len());
        let len = {
            let mut t = txn.open_table(PENDING).map_err(store)?;
            for (meta, body) in items {
                let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
                t.insert(seq, (to_json(meta).as_str(), &body[..]))
                    .map_err(store)?;
                keys.push(seq);
            }
            t.len().map_err(store)?
        };
        txn.commit().map_err(store)?;
        self.pending.store(len, Ordering::Release);
        Ok(keys)
    }

    /// The oldest pending event, if any.
    ///
    /// # Errors
    /// [`OutboxError::Store`], or [`OutboxError::Corrupt`] for unreadable metadata.
    pub fn front(&self) -> Result<Option<Entry>, OutboxError> {
        let txn = self.db.begin_read().map_err(store)?;
        let t = txn.open_table(PENDING).map_err(store)?;
        let first = t.first().map_err(store)?;
        first
            .map(|(k, v)| to_entry(k.value(), v.value()))
            .transpose()
    }

    /// Removes a delivered event.
    ///
    /// # Errors
    /// [`OutboxError::Store`] when the write failed (the event would be sent again).
    pub fn delivered(&self, seq: u64) -> Result<(), OutboxError> {
        let txn = self.write(Durability::Eventual)?;
        let len = {
            let mut t = txn.open_table(PENDING).map_err(store)?;
            t.remove(seq).map_err(store)?;
            t.len().map_err(store)?
        };
        txn.commit().map_err(store)?;
        self.pending.store(len, Ordering::Release);
        Ok(())
    }

    /// Stores the metadata of a pending event after a failed attempt.
    ///
    /// # Errors
    /// [`OutboxError::Store`] when the write failed.
    pub fn update(&self, entry: &Entry) -> Result<(), OutboxError> {
        let json = to_json(&entry.meta);
        let txn = self.write(Durability::Eventual)?;
        {
            let mut t = txn.open_table(PENDING).map_err(store)?;
            t.insert(entry.seq, (json.as_str(), &entry.body[..]))
                .map_err(store)?;
        }
        txn.commit().map_err(store)?;
        Ok(())
    }

    /// Moves a pending event to the dead letters (same key), with `entry.meta` as given, and
    /// commits with fsync.
    ///
    /// # Errors
    /// [`OutboxError::Store`] when the write failed; the event then stays pending.
    pub fn bury(&self, entry: &Entry) -> Result<(), OutboxError> {
        let json = to_json(&entry.meta);
        self.move_to_dead(|p, d| {
            p.remove(entry.seq).map_err(store)?;
            d.insert(entry.seq, (json.as_str(), &entry.body[..]))
                .map_err(store)?;
            Ok(())
        })
    }

    /// Runs `change` on the pending and dead tables in one transaction committed with fsync,
    /// then refreshes both counts.
    fn move_to_dead(
        &self,
        change: impl FnOnce(
            &mut redb::Table<'_, u64, (&'static str, &'static [u8])>,
            &mut redb::Table<'_, u64, (&'static str, &'static [u8])>,
        ) -> Result<(), OutboxError>,
    ) -> Result<(), OutboxError> {
        let txn = self.write(Durability::Immediate)?;
        let (pending, dead) = {
            let mut p = txn.open_table(PENDING).map_err(store)?;
            let mut d = txn.open_table(DEAD).map_err(store)?;
            change(&mut p, &mut d)?;
            (p.len().map_err(store)?, d.len().map_err(store)?)
        };
        txn.commit().map_err(store)?;
        self.pending.store(pending, Ordering::Release);
        self.dead.store(dead, Ordering::Release);
        Ok(())
    }

    /// Moves the pending entry `seq`, whose metadata does not parse, to the dead letters with
    /// metadata saying so (event id `unreadable-<seq>`), so it cannot block the queue. Commits
    /// with fsync.
    ///
    /// # Errors
    /// [`OutboxError::Store`] when the write failed.
    pub fn quarantine(&self, seq: u64, now_ms: i64) -> Result<(), OutboxError> {
        self.move_to_dead(|p, d| {
            if let Some(value) = p.remove(seq).map_err(store)? {
                let body = value.value().1.to_vec();
                drop(value);
                let mut meta = EntryMeta::new(
                    format!("unreadable-{seq}"),
                    None,
                    "unknown".into(),
                    "application/json".into(),
                    String::new(),
                    now_ms,
                );
                meta.last_error = Some("the stored metadata of this event is unreadable".into());
                meta.dead_at_ms = Some(now_ms);
                d.insert(seq, (to_json(&meta).as_str(), &body[..]))
                    .map_err(store)?;
            }
            Ok(())
        })
    }

    /// Up to `limit` dead letters, oldest first.
    ///
    /// # Errors
    /// [`OutboxError::Store`] or [`OutboxError::Corrupt`].
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<Entry>, OutboxError> {
        let txn = self.db.begin_read().map_err(store)?;
        let t = txn.open_table(DEAD).map_err(store)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(store)?.take(limit) {
            let (k, v) = item.map_err(store)?;
            out.push(to_entry(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Moves dead letters back to the end of the pending queue, oldest first: the one with
    /// key `id`, or all when `None`. Each starts afresh: no attempts, age counted from
    /// `now_ms`. Commits with fsync. Returns how many moved.
    ///
    /// # Errors
    /// [`OutboxError::UnknownDeadLetter`] when `id` names none; [`OutboxError::Store`] or
    /// [`OutboxError::Corrupt`] otherwise (nothing moved then).
    pub fn replay(&self, id: Option<u64>, now_ms: i64) -> Result<usize, OutboxError> {
        let txn = self.write(Durability::Immediate)?;
        let (moved, pending, dead) = {
            let mut p = txn.open_table(PENDING).map_err(store)?;
            let mut d = txn.open_table(DEAD).map_err(store)?;
            let keys: Vec<u64> = match id {
                Some(id) => {
                    if d.get(id).map_err(store)?.is_none() {
                        return Err(OutboxError::UnknownDeadLetter(id));
                    }
                    vec![id]
                }
                None => d
                    .iter()
                    .map_err(store)?
                    .map(|r| r.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()
                    .map_err(store)?,
            };
            for key in &keys {
                let Some(value) = d.remove(*key).map_err(store)? else {
                    continue;
                };
                let mut entry = to_entry(*key, value.value())?;
                drop(value);
                entry.meta = EntryMeta::new(
                    entry.meta.event_id,
                    entry.meta.instance_id,
                    entry.meta.event,
                    entry.meta.content_type,
                    entry.meta.received_at,
                    now_ms,
                );
                let json = to_json(&entry.meta);
                let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
                p.insert(seq, (json.as_str(), &entry.body[..]))
                    .map_err(store)?;
            }
            (keys.len(), p.len().map_err(store)?, d.len().map_err(store)?)
        };
        txn.commit().map_err(store)?;
        self.pending.store(pending, Ordering::Release);
        self.dead.store(dead, Ordering::Release);
        Ok(moved)
    }

    /// Makes every earlier commit durable (an empty fsynced commit). Called at shutdown.
    ///
    /// # Errors
    /// [`OutboxError::Store`].
    pub fn sync(&self) -> Result<(), OutboxError> {
        self.write(Durability::Immediate)?.commit().map_err(store)?;
        Ok(())
    }
}

/// Turns an error met while opening into [`OutboxError::Damaged`] when it says the file's
/// contents are wrong (redb reports "invalid data" or "corrupted"); other errors (permissions,
/// another process holding the lock) stay as they are.
fn classify(path: &Path, e: OutboxError) -> OutboxError {
    let reason = match &e {
        OutboxError::Open { source, .. } => match source.as_ref() {
            redb::DatabaseError::Storage(s) => storage_damage(s),
            redb::DatabaseError::UpgradeRequired(v) => Some(format!(
                "written in redb file format {v}, not readable by this version"
            )),
            _ => None,
        },
        OutboxError::Store(err) => match err.as_ref() {
            redb::Error::Corrupted(m) => Some(format!("corrupted: {m}")),
            redb::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                Some("not a redb database".into())
            }
            redb::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                Some("truncated".into())
            }
            redb::Error::TableTypeMismatch { .. } | redb::Error::TableIsMultimap(_) => {
                Some(format!("not an outbox: {err}"))
            }
            _ => None,
        },
        OutboxError::Corrupt { seq, .. } => Some(format!("entry {seq} is unreadable")),
        _ => None,
    };
    match reason {
        Some(reason) => OutboxError::Damaged {
            path: path.to_owned(),
            reason,
        },
        None => e,
    }
}

fn storage_damage(s: &redb::StorageError) -> Option<String> {
    match s {
        redb::StorageError::Corrupted(m) => Some(format!("corrupted: {m}")),
        redb::StorageError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            Some("not a redb database".into())
        }
        redb::StorageError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Some("truncated".into())
        }
        _ => None,
    }
}

thread_local! {
    /// Set while [`quietly_catch_unwind`] runs on this thread.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, catching a panic without the default hook's message on stderr (the caller
/// reports it as one error line). Other threads' panics are reported as before: the hook
/// installed once here only stays silent for the thread inside this function.
fn quietly_catch_unwind<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    result
}

/// Boxes any redb error as [`OutboxError::Store`].
fn store(e: impl Into<redb::Error>) -> OutboxError {
    OutboxError::Store(Box::new(e.into()))
}

fn to_json(meta: &EntryMeta) -> String {
    // Plain strings and integers: serializing cannot fail.
    serde_json::to_string(meta).unwrap_or_default()
}

fn to_entry(seq: u64, (json, body): (&str, &[u8])) -> Result<Entry, OutboxError> {
    Ok(Entry {
        seq,
        meta: serde_json::from_str(json).map_err(|source| OutboxError::Corrupt { seq, source })?,
        body: Bytes::copy_from_slice(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str) -> EntryMeta {
        EntryMeta::new(
            id.into(),
            Some("WASP-a".into()),
            "message".into(),
            "application/json".into(),
            "2026-11-29T00:00:00.000Z".into(),
            1_000,
        )
    }

    const BODY: &[u8] = b"{\"event\":\"message\",\"data\":{\"t\":\"h\xc3\xa9\"}}  \n";

    #[test]
    fn pushed_events_come_out_oldest_first_with_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.redb")).unwrap();
        assert!(ob.front().unwrap().is_none());
        let a = ob.push(&meta("a"), BODY).unwrap();
        let b = ob.push(&meta("b"), b"second").unwrap();
        assert!(b > a);
        assert_eq!(ob.pending_len(), 2);
        let front = ob.front().unwrap().unwrap();
        assert_eq!((front.seq, &front.body[..]), (a, BODY));
        assert_eq!(front.meta, meta("a"));
        ob.delivered(a).unwrap();
        assert_eq!(ob.front().unwrap().unwrap().meta.event_id, "b");
        assert_eq!(ob.pending_len(), 1);
    }

    #[test]
    fn a_batch_is_stored_in_order_under_increasing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.redb")).unwrap();
        let items: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|id| (meta(id), Bytes::from(id.to_string())))
            .collect();
        let keys = ob.push_many(&items).unwrap();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(ob.pending_len(), 3);
        let mut order = Vec::new();
        while let Some(e) = ob.front().unwrap() {
            order.push(e.body.clone());
            ob.delivered(e.seq).unwrap();
        }
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn pending_events_and_dead_letters_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/o.redb");
        {
            let ob = Outbox::open(&path).unwrap();
            ob.push(&meta("a"), b"1").unwrap();
            let b = ob.push(&meta("b"), b"2").unwrap();
            ob.push(&meta("c"), b"3").unwrap();
            let mut e = ob.front().unwrap().unwrap();
            e.meta.note_attempt(5, Some("HTTP 503".into()));
            ob.update(&e).unwrap();
            let mut dead = e.clone();
            dead.seq = b;
            dead.meta = meta("b");
            dead.body = Bytes::from_static(b"2");
            ob.bury(&dead).unwrap();
        }
        let ob = Outbox::open(&path).unwrap();
        assert_eq!((ob.pending_len(), ob.dead_len()), (2, 1));
        let front = ob.front().unwrap().unwrap();
        assert_eq!(front.meta.attempts, 1);
        assert_eq!(front.meta.last_error.as_deref(), Some("HTTP 503"));
        let dead = ob.dead_letters(10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].meta.event_id, "b");
        // New keys stay above every key in use, so replay cannot collide.
        let d = ob.push(&meta("d"), b"4").unwrap();
        assert!(d > dead[0].seq && d > front.seq);
    }

    #[test]
    fn bury_then_replay_requeues_at_the_end_with_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.redb")).unwrap();
        for id in ["a", "b", "c"] {
            ob.push(&meta(id), id.as_bytes()).unwrap();
        }
        for _ in 0..2 {
            let mut e = ob.front().unwrap().unwrap();
            e.meta.note_attempt(7, Some("HTTP 400".into()));
            e.meta.dead_at_ms = Some(7);
            ob.bury(&e).unwrap();
        }
        assert_eq!((ob.pending_len(), ob.dead_len()), (1, 2));
        let dead = ob.dead_letters(10).unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0].meta.attempts, 1);
        assert_eq!(ob.dead_letters(1).unwrap().len(), 1);

        assert!(matches!(
            ob.replay(Some(999), 50),
            Err(OutboxError::UnknownDeadLetter(999))
        ));
        assert_eq!(ob.replay(Some(dead[1].seq), 50).unwrap(), 1);
        assert_eq!(ob.replay(None, 60).unwrap(), 1);
        assert_eq!((ob.pending_len(), ob.dead_len()), (3, 0));
        let mut order = Vec::new();
        while let Some(e) = ob.front().unwrap() {
            order.push((
                e.meta.event_id.clone(),
                e.meta.attempts,
                e.meta.enqueued_at_ms,
            ));
            ob.delivered(e.seq).unwrap();
        }
        assert_eq!(
            order,
            [
                ("c".into(), 0, 1_000),
                ("b".into(), 0, 50),
                ("a".into(), 0, 60)
            ]
        );
    }

    #[test]
    fn an_entry_with_unreadable_metadata_is_quarantined_to_the_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("o.redb")).unwrap();
        let seq = ob.push(&meta("a"), b"raw").unwrap();
        {
            let txn = ob.write(Durability::Immediate).unwrap();
            txn.open_table(PENDING)
                .unwrap()
                .insert(seq, ("{not json", &b"raw"[..]))
                .unwrap();
            txn.commit().unwrap();
        }
        let err = ob.front().unwrap_err();
        assert!(
            matches!(err, OutboxError::Corrupt { seq: s, .. } if s == seq),
            "{err}"
        );
        ob.quarantine(seq, 9).unwrap();
        assert!(ob.front().unwrap().is_none());
        let dead = ob.dead_letters(10).unwrap();
        assert_eq!(dead[0].meta.event_id, format!("unreadable-{seq}"));
        assert_eq!(&dead[0].body[..], b"raw");
    }

    #[test]
    fn a_second_process_cannot_open_the_same_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.redb");
        let _first = Outbox::open(&path).unwrap();
        let err = Outbox::open(&path).unwrap_err().to_string();
        assert!(err.contains("cannot open outbox"), "{err}");
    }

    #[test]
    fn unwritable_location_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Outbox::open(&file.join("sub/o.redb"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot create directory"), "{err}");
        let err = Outbox::open(&file).unwrap_err().to_string();
        assert!(err.contains("is damaged (not a redb database)"), "{err}");
    }

    /// An outbox file with 50 pending events of 3000 bytes, closed cleanly; its bytes.
    fn filled_outbox(path: &Path) -> Vec<u8> {
        let ob = Outbox::open(path).unwrap();
        for i in 0..50 {
            ob.push(&meta(&format!("e{i}")), &[b'x'; 3000]).unwrap();
        }
        drop(ob);
        std::fs::read(path).unwrap()
    }

    /// Offsets of the 4 KiB pages holding event bodies (runs of `x`).
    fn body_pages(bytes: &[u8]) -> Vec<usize> {
        (0..bytes.len() / 4096)
            .map(|p| p * 4096)
            .filter(|&o| {
                bytes[o..o + 4096]
                    .windows(64)
                    .any(|w| w.iter().all(|&b| b == b'x'))
            })
            .collect()
    }

    /// Every kind of damage: the open is refused with `Damaged` naming the file and the way
    /// out, never a panic and never an outbox with 0 pending.
    #[test]
    fn every_kind_of_damaged_file_is_refused_by_name_without_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = filled_outbox(&dir.path().join("good.redb"));
        let pages = body_pages(&bytes);
        assert!(pages.len() >= 10, "{} body pages", pages.len());
        let garbage: Vec<u8> = (0..bytes.len()).map(|i| (i * 7919 % 251) as u8).collect();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated to 1000 bytes", bytes[..1000].to_vec()),
            ("truncated to one page", bytes[..4096].to_vec()),
            ("truncated to half", bytes[..bytes.len() / 2].to_vec()),
            ("header page zeroed", {
                let mut b = bytes.clone();
                b[..4096].fill(0);
                b
            }),
            ("body pages zeroed", {
                let mut b = bytes.clone();
                for &o in &pages[pages.len() / 2..] {
                    b[o..o + 4096].fill(0);
                }
                b
            }),
            ("all zero", vec![0; bytes.len()]),
            ("garbage", garbage.clone()),
            ("body pages overwritten with garbage", {
                let mut b = bytes.clone();
                for &o in &pages[..3] {
                    b[o..o + 4096].copy_from_slice(&garbage[..4096]);
                }
                b
            }),
            ("a text file", b"hello, not a database\n".to_vec()),
            ("a SQLite file", {
                let mut b = b"SQLite format 3\0".to_vec();
                b.resize(8192, 0);
                b
            }),
            ("empty", Vec::new()),
        ];
        for (what, data) in cases {
            let path = dir.path().join(format!("{}.redb", what.replace(' ', "-")));
            std::fs::write(&path, &data).unwrap();
            let result = std::panic::catch_unwind(|| Outbox::open(&path).map(|o| o.pending_len()));
            let result = result.unwrap_or_else(|_| panic!("{what}: Outbox::open panicked"));
            let err = match result {
                Ok(pending) => panic!("{what}: opened with {pending} pending"),
                Err(e) => e,
            };
            assert!(
                matches!(err, OutboxError::Damaged { .. }),
                "{what}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
            assert!(msg.contains("Move it aside"), "{what}: {msg}");
            assert!(!msg.contains('\n'), "{what}: one line: {msg}");
        }
    }

    #[test]
    fn a_directory_or_a_device_in_place_of_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("o.redb");
        std::fs::create_dir(&sub).unwrap();
        let err = Outbox::open(&sub).unwrap_err();
        assert!(err.to_string().contains("a directory, not a file"), "{err}");
        let err = Outbox::open(Path::new("/dev/null")).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn an_intact_file_reopens_with_every_event_after_the_damage_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.redb");
        filled_outbox(&path);
        let ob = Outbox::open(&path).unwrap();
        assert_eq!(ob.pending_len(), 50);
        assert_eq!(&ob.front().unwrap().unwrap().body[..], &[b'x'; 3000][..]);
    }
}
