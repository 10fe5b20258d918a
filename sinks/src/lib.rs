//! `wa-hub-sinks`: the event envelope every part of wa-hub-sidecar speaks, the bus that numbers
//! events, the router that hands them to sinks, and the sinks.
//!
//! Data flow (DESIGN.md "Data flow"): the proxy and the webhook receiver build a [`Payload`], the
//! [`Bus`] stamps it with a sequence id and a timestamp and turns it into an [`Event`], and the
//! [`Router`] queues the event for each sink whose [`Filter`] selects it. One module (folder)
//! per sink: [`sse`], [`stdout`], [`mqtt`], [`forward`].
#![warn(missing_docs)]

pub mod bus;
pub mod config;
pub mod envelope;
pub mod filter;
pub mod forward;
pub mod mqtt;
pub mod router;
pub mod secret;
pub mod sink;
pub mod sse;
pub mod stdout;

#[cfg(test)]
mod test_support;

pub use bus::Bus;
pub use config::{SinkConfig, SinkKind};
pub use envelope::{ApiLog, Event, InstanceStatus, Payload, QrEvent, WebhookRecord};
pub use filter::{Filter, Kind};
pub use router::{supervise, Router, SinkSnapshot, SinkSpec, SinkStats, SinkTask};
pub use secret::Secret;
pub use sink::{Sink, SinkError};
