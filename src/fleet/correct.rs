//! Corrections after an outage. While NATS is unreachable a node decides alone and shows what
//! it decided. When it publishes those events later, the stream refuses as a duplicate any
//! whose message id was stored first by another node: the status decided from a webhook that
//! reached both (a re-send), under the id derived from the webhook's
//! ([`super::codec::derived_from`]). Such a status was this node's alone, so the node adopts
//! the fleet's status for that instance from the status bucket and shows it to its own sinks.
//!
//! A duplicate acknowledgement also answers a retry of this node's own earlier attempt (stored,
//! acknowledgement lost). Those come back from the stream, so the corrections wait until the
//! consumer has read everything stored so far: what it took back as this node's own is no
//! longer in the shown-alone set; what is still there was refused.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use wa_hub_sinks::Kind;

use super::consume::stream_state;
use super::kv;
use super::node::Fleet;
use crate::app::App;

/// Longest wait for the consumer to read what the stream held at a duplicate acknowledgement.
pub const CATCH_UP: Duration = Duration::from_secs(10);

/// Handles the outbox's duplicate acknowledgements forever.
pub async fn run(fleet: Arc<Fleet>, app: Arc<App>) {
    loop {
        let duplicates = fleet.outbox.take_duplicates().await;
        if let Ok(state) = stream_state(&fleet).await {
            let caught_up = async {
                while fleet.consumed_seq.load(Ordering::Acquire) < state.last_sequence {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            if tokio::time::timeout(CATCH_UP, caught_up).await.is_err() {
                tracing::warn!("fleet: consumer behind; outage corrections made without it");
            }
        }
        for dup in duplicates {
            // Still shown alone: the stream refused it, so it never comes back from there.
            if !fleet.take_shown_locally(&dup.msg_id) || dup.kind != Kind::Status {
                continue;
            }
            let (Some(instance), Some(store)) = (dup.instance, fleet.kv()) else {
                continue;
            };
            if let Some(status) = kv::get_status(store, &instance).await {
                tracing::info!(
                    instance,
                    status = status.display_status,
                    "fleet: a status decided alone was already decided by the fleet; adopted the fleet's"
                );
                app.show_adopted(status);
            }
        }
    }
}
