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

/// Every status in the bucket; unreadable entries are logged and skipped.
pub async fn load_statuses(store: &Store) -> Vec<InstanceStatus> {
    let mut out = Vec::new();
    let mut keys = match store.keys().await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "fleet: cannot list the status bucket");
            return out;
        }
    };
    let mut wanted = Vec::new();
    while let Some(key) = keys.next().await {
        match key {
            Ok(k) if k.starts_with(STATUS_PREFIX) => wanted.push(k),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "fleet: cannot list the status bucket");
                break;
            }
        }
    }
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
