//! The status bucket: the current status of every instance, so a node that starts knows every
//! status at once. Key `status.<instance token>` (the subject token rule), value the status
//! JSON with `node`, written by the node that decided it, in the order it consumed them.

use async_nats::jetstream::kv::Store;
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

/// Longest wait for the bucket's key list; past it the listing starts again (up to
/// [`LIST_ATTEMPTS`] times). The client's key listing (an ordered consumer that ends when it
/// has caught up) was seen to wait forever now and then while other keys of the bucket
/// (presences, routes) were being rewritten.
pub const LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Key listings tried before giving up (see [`LIST_TIMEOUT`]).
pub const LIST_ATTEMPTS: u32 = 3;

/// The keys of the bucket starting with [`STATUS_PREFIX`].
async fn status_keys(store: &Store) -> Result<Vec<String>, String> {
    let mut keys = store.keys().await.map_err(|e| e.to_string())?;
    let mut wanted = Vec::new();
    while let Some(key) = keys.next().await {
        match key {
            Ok(k) if k.starts_with(STATUS_PREFIX) => wanted.push(k),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(wanted)
}

/// Every status in the bucket; unreadable entries are logged and skipped. A listing that
/// fails or does not end within [`LIST_TIMEOUT`] is tried again, [`LIST_ATTEMPTS`] times in
/// all, then logged and given up (no statuses).
pub async fn load_statuses(store: &Store) -> Vec<InstanceStatus> {
    let mut out = Vec::new();
    let mut wanted = None;
    for attempt in 1..=LIST_ATTEMPTS {
        match tokio::time::timeout(LIST_TIMEOUT, status_keys(store)).await {
            Ok(Ok(keys)) => {
                wanted = Some(keys);
                break;
            }
            Ok(Err(e)) => {
                tracing::warn!(attempt, error = %e, "fleet: cannot list the status bucket")
            }
            Err(_) => tracing::warn!(
                attempt,
                "fleet: listing the status bucket did not end within 5 s"
            ),
        }
    }
    let Some(wanted) = wanted else {
        tracing::error!("fleet: statuses not read from the bucket");
        return out;
    };
    for key in wanted {
        match store.get(key.as_str()).await {
            Ok(Some(body)) => match decode_status(&body) {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!(%key, error = %e, "fleet: bad status in the bucket"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(%key, error = %e, "fleet: status not read"),
        }
    }
    out
}
