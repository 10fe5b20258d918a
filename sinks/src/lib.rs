//! `wa-hub-sinks`: the event envelope every part of wa-hub-sidecar speaks, the bus that numbers
//! events, and the sinks that deliver them.
//!
//! Data flow (DESIGN.md "Data flow"): the proxy and the webhook receiver build a [`Payload`], the
//! [`Bus`] stamps it with a sequence id and a timestamp and turns it into an [`Event`], and the
//! router hands the event to each sink whose filter selects it.
#![warn(missing_docs)]

pub mod bus;
pub mod envelope;

pub use bus::Bus;
pub use envelope::{ApiLog, Event, InstanceStatus, Payload, QrEvent, WebhookRecord};
