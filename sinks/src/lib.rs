//! `wa-hub-sinks`: the event envelope every part of wa-hub-sidecar speaks, the bus that numbers
//! events, the router that hands them to sinks, and the sinks.
//!
//! Data flow (DESIGN.md "Data flow"): the proxy and the webhook receiver build a [`Payload`], the
//! [`Bus`] stamps it with a sequence id and a timestamp and turns it into an [`Event`], and the
//! [`Router`] queues the event for each sink whose [`Filter`] selects it.
//!
//! Modules: [`envelope`] (the event and its payloads), [`bus`] (numbering), [`router`] (queues
//! and the sink supervisor), [`filter`] (what a sink takes), [`sink`] (the trait), [`config`]
//! (the `sinks:` list; each sink's config builds the sink), [`signature`] (HMAC of webhook
//! bodies, checked on receipt and re-computed by the forward sink), [`secret`] (masked
//! strings), [`backoff`] and [`throttle`] (waiting between attempts, thinning repeated log
//! lines). One folder per sink: [`sse`], [`stdout`], [`mqtt`], [`forward`].
#![warn(missing_docs)]

pub mod backoff;
pub mod bus;
pub mod config;
pub mod envelope;
pub mod filter;
pub mod forward;
pub mod mqtt;
pub mod router;
pub mod secret;
pub mod signature;
pub mod sink;
pub mod sse;
pub mod stdout;
pub mod throttle;

#[cfg(test)]
mod test_support;

pub use bus::Bus;
pub use config::{SinkConfig, SinkKind};
pub use envelope::{
    ApiLog, ApiLogBody, Event, InstanceStatus, Kind, Payload, QrEvent, Rank, WebhookRecord,
};
pub use filter::Filter;
pub use router::{supervise, Router, SinkSnapshot, SinkSpec, SinkStats, SinkTask};
pub use secret::Secret;
pub use sink::{Sink, SinkError};
