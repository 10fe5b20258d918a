//! `sinks: [{type: sse, ...}]` settings.

use std::num::NonZeroU64;
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

/// Largest `client_backlog`, events. The hub allocates its broadcast ring of that many slots
/// (rounded up to a power of two) at start: a billion would take all memory.
pub const MAX_CLIENT_BACKLOG: usize = 100_000;

/// Settings of the SSE hub and its clients.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SseConfig {
    /// Interval of heartbeat comments on idle streams, ms. Default 15000.
    pub heartbeat_ms: NonZeroU64,
    /// `retry:` hint sent to clients, ms. Default 3000.
    pub retry_ms: NonZeroU64,
    /// Most concurrent clients; the next one gets 503. Default 10000.
    pub max_clients: NonZeroUsize,
    /// Events kept for `Last-Event-ID` resume. Default 1024.
    pub history: NonZeroUsize,
    /// Events a client may fall behind before it is dropped as slow. Default 256; at most
    /// [`MAX_CLIENT_BACKLOG`].
    pub client_backlog: NonZeroUsize,
    /// A write to a client that blocks this long drops the client, ms. Default 10000.
    pub write_timeout_ms: NonZeroU64,
    /// Webhook events and API logs each sent at most in the `initial` event. Default 500.
    pub initial_limit: usize,
    /// Most bytes of the encoded `initial` event: the newest entries that fit are sent, with
    /// `truncated: true` when older ones were left out. Default 2 MiB (2097152).
    pub initial_max_bytes: NonZeroUsize,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: NonZeroU64::new(15_000).expect("non-zero"),
            retry_ms: NonZeroU64::new(3000).expect("non-zero"),
            max_clients: NonZeroUsize::new(10_000).expect("non-zero"),
            history: NonZeroUsize::new(1024).expect("non-zero"),
            client_backlog: NonZeroUsize::new(256).expect("non-zero"),
            write_timeout_ms: NonZeroU64::new(10_000).expect("non-zero"),
            initial_limit: 500,
            initial_max_bytes: NonZeroUsize::new(2 * 1024 * 1024).expect("non-zero"),
        }
    }
}
