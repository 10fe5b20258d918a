//! The forward sink: POSTs each webhook's original bytes to another HTTP service, re-signed,
//! with at-least-once delivery through a durable on-disk outbox and a dead-letter list.
//!
//! - `config`: the `type: forward` keys ([`ForwardConfig`]) and their checks.
//! - `build`: how that config builds the sink (webhooks only, one outbox per sink).
//! - `outbox`: the redb-backed store of pending events and dead letters ([`Outbox`]).
//! - `retry`: which answers are retried and how long to wait ([`judge_status`], [`backoff`]).
//! - `sink`: the [`ForwardSink`] (persists in `deliver`), its delivery worker, and the
//!   [`ForwardHandle`] the service's dead-letter routes use.

mod build;
mod config;
mod outbox;
mod retry;
mod sink;

#[cfg(test)]
mod tests;

pub use config::{ForwardConfig, ForwardConfigError, DEFAULT_DATA_DIR};
pub use outbox::{Entry, EntryMeta, Outbox, OutboxError};
pub use retry::{backoff, judge_status, parse_retry_after, Verdict, RETRY_AFTER_MAX};
pub use sink::{
    DeadLetter, DeadLetterList, ForwardError, ForwardHandle, ForwardSink, BATCH_LINGER,
    IDEMPOTENCY_KEY_HEADER, MAX_BATCH,
};
