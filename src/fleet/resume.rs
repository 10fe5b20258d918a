//! SSE resume in fleet mode: a `Last-Event-ID` is a stream sequence, valid on every node and
//! across restarts, so a client that moved here or outlived a restart resumes with exactly the
//! events it missed, read back from the stream when this node's SSE hub does not hold them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use wa_hub_sinks::sse::{LastEventId, Resume, SseHub, Subscription};

use super::consume::replay;
use super::node::Fleet;

/// Fleet mode: ids are stream sequences, so an id from another node or from before a restart
/// resumes here too. An id ahead of this node waits (up to [`FLEET_CATCH_UP`]) for the
/// consumer to reach it; an id the hub does not keep is answered from the stream: the events
/// after it up to the consumer's position `P` (at most the hub's `history` of them), and live
/// frames up to `P` are then skipped (returned as the second value). `reset` only when the
/// stream does not keep the id either, or cannot be read.
pub async fn subscribe(fleet: &Arc<Fleet>, hub: &SseHub, last: LastEventId) -> (Subscription, u64) {
    let last_id = last.id();
    let position = || {
        hub.last_id()
            .max(fleet.consumed_seq.load(Ordering::Acquire))
    };
    let start = || fleet.start_seq.load(Ordering::Acquire);
    if let Some(id) = last_id {
        let deadline = tokio::time::Instant::now() + FLEET_CATCH_UP;
        while (start() == 0 || position() < id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut sub = hub.subscribe(last);
    let up_to = position().max(sub.snapshot_id);
    let Some(after) = last_id else {
        return (sub, 0);
    };
    // The hub holds nothing from before this process consumed the stream.
    let hub_covers = matches!(sub.resume, Resume::Resumed(_)) && after + 1 >= start();
    if hub_covers || after > up_to {
        return (sub, 0);
    }
    let (f, max) = (fleet.clone(), hub.config().history.get() as u64);
    let replayed = fleet
        .handle()
        .spawn(async move { replay(&f, after, up_to, max).await })
        .await;
    match replayed {
        Ok(Ok(Some(events))) => {
            if matches!(sub.resume, Resume::Reset) {
                hub.stats.resets.fetch_sub(1, Ordering::Relaxed);
                hub.stats.resumes.fetch_add(1, Ordering::Relaxed);
            }
            let frames = events.into_iter().filter(|e| hub.selects(e)).collect();
            sub.resume = Resume::Resumed(frames);
            return (sub, up_to);
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "fleet: SSE resume not replayed; reset"),
        Err(e) => tracing::warn!(error = %e, "fleet: SSE replay task failed; reset"),
    }
    if !matches!(sub.resume, Resume::Reset) {
        hub.stats.resumes.fetch_sub(1, Ordering::Relaxed);
        hub.stats.resets.fetch_add(1, Ordering::Relaxed);
        sub.resume = Resume::Reset;
    }
    (sub, 0)
}

/// Longest wait for this node to catch up with a `Last-Event-ID` from a node ahead of it.
pub const FLEET_CATCH_UP: Duration = Duration::from_secs(2);
