//! The status bucket: the current status of every instance, so a node that starts knows every
//! status at once. Key `status.<instance token>` (the subject token rule), value the status
//! JSON with `node`, written by the node that decided it, in the order it consumed them.

use async_nats::jetstream::kv::{Operation, Store};
use bytes::Bytes;
use futures::StreamExt;
use wa_hub_sinks::InstanceStatus;

use super::codec::decode_status;
use super::subject::encode_token;

/// Key prefix of statuses.
pub const STATUS_PREFIX: &str = "status.";

/// The key of `instance`'s status.
pub fn status_key(instance: &str) -> String {
    format!("{STATUS_PREFIX}{}", encode_token(instance))
}

/// Writes `instance`'s status (`body`, its JSON). A failure is logged; the next status of the
/// instance writes it again.
pub async fn put_status(store: &Store, instance: &str, body: Bytes) {
    if let Err(e) = store.put(status_key(instance), body).await {
        tracing::warn!(instance, error = %e, "fleet: status not written to the bucket");
    }
}

/// Longest wait for the bucket's statuses; past it the read starts again (up to
/// [`LIST_ATTEMPTS`] times).
pub const LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Reads tried before giving up (see [`LIST_TIMEOUT`]).
pub const LIST_ATTEMPTS: u32 = 3;

/// The bucket's current `status.*` entries (bodies), read with a watch of `status.>` from the
/// last value of each key that ends once it has caught up. Only status keys are read: the
/// client's whole-bucket key listing (`keys()`) was seen never to end now and then while
/// other keys (presences, rewritten every second) changed.
async fn status_bodies(store: &Store) -> Result<Vec<(String, Bytes)>, String> {
    let mut watch = store
        .watch_with_history(format!("{STATUS_PREFIX}>"))
        .await
        .map_err(|e| e.to_string())?;
    let mut latest = std::collections::BTreeMap::new();
    while let Some(entry) = watch.next().await {
        let entry = entry.map_err(|e| e.to_string())?;
        let caught_up = entry.delta == 0;
        match entry.operation {
            Operation::Put => {
                latest.insert(entry.key, entry.value);
            }
            Operation::Delete | Operation::Purge => {
                latest.remove(&entry.key);
            }
        }
        if caught_up {
            break;
        }
    }
    Ok(latest.into_iter().collect())
}

/// Every status in the bucket; unreadable entries are logged and skipped. A read that fails or
/// does not end within [`LIST_TIMEOUT`] is tried again, [`LIST_ATTEMPTS`] times in all, then
/// logged and given up (no statuses).
pub async fn load_statuses(store: &Store) -> Vec<InstanceStatus> {
    let mut out = Vec::new();
    for attempt in 1..=LIST_ATTEMPTS {
        match tokio::time::timeout(LIST_TIMEOUT, status_bodies(store)).await {
            Ok(Ok(bodies)) => {
                for (key, body) in bodies {
                    match decode_status(&body) {
                        Ok(s) => out.push(s),
                        Err(e) => {
                            tracing::warn!(%key, error = %e, "fleet: bad status in the bucket")
                        }
                    }
                }
                return out;
            }
            Ok(Err(e)) => {
                tracing::warn!(attempt, error = %e, "fleet: cannot read the status bucket")
            }
            Err(_) => tracing::warn!(
                attempt,
                "fleet: reading the status bucket did not end within 5 s"
            ),
        }
    }
    tracing::error!("fleet: statuses not read from the bucket");
    out
}

/// `instance`'s status in the bucket; `None` when absent or unreadable (logged).
pub async fn get_status(store: &Store, instance: &str) -> Option<InstanceStatus> {
    match store.get(status_key(instance)).await {
        Ok(Some(body)) => decode_status(&body)
            .map_err(|e| tracing::warn!(instance, error = %e, "fleet: bad status in the bucket"))
            .ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(instance, error = %e, "fleet: status not read");
            None
        }
    }
}
