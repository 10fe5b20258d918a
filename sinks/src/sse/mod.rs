//! The SSE sink: a hub that keeps recent events for resume and fans each one out to connected
//! browsers, serialized once. The HTTP endpoint (`GET /api/stream`) that drives a client lives
//! in the service; this module owns the hub, the wire format, what each client is sent
//! (`client`), the shared and capped `initial` event (`initial`) and the config.

mod build;
mod client;
mod config;
mod hub;
mod initial;

pub use client::{
    batch, catch_up, envelope, last_event_id, opening_frames, LastEventId, Scope, MAX_BATCH_BYTES,
};
pub use config::SseConfig;
pub use hub::{
    comment, encode_frame, ClientGuard, Resume, SseHub, SseSink, SseStats, Subscription,
};
pub use initial::{initial_json, Initial, InitialCache, SHARE_FOR};
