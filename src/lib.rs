//! wa-hub-sidecar: a Pingora sidecar in front of wa-hub.
//!
//! One module per concept (DESIGN.md "Layout"):
//! - start-up: [`config`] loads and validates settings, [`logging`] sets up logs, [`server`]
//!   assembles the process, [`shutdown`] drains on SIGTERM;
//! - HTTP: [`proxy`] is the thin Pingora `ProxyHttp`, [`routes`] is the route table (methods and
//!   access of every route), [`rejection`] the typed refusals, [`exchange`] reads bodies and
//!   writes local answers, [`handlers`] serve the sidecar's own routes, [`dashboard`] the wa-hub
//!   dashboard's extra routes, [`auth`] decides client access (tokens, the dashboard's session
//!   cookie kept by [`session`]), [`cors`] answers cross-origin browsers, [`stream`] serves SSE clients,
//!   [`metrics_listener`] the `metrics_listen` port;
//! - wa-hub: [`webhook`] receives its deliveries ([`signature`] checks their HMAC),
//!   [`apilog`] records proxied calls, [`upstream`] is the sidecar's own client for it,
//!   [`poll`] runs the status engine's API fallbacks;
//! - fleet mode: [`fleet`] joins many sidecars over NATS JetStream;
//! - state: [`app`] is the shared state and the one way onto the bus, [`status`] the pure
//!   display-status engine, [`store`] the histories, [`metrics`] the Prometheus metrics.
#![warn(missing_docs)]

pub mod apilog;
pub mod app;
pub mod auth;
pub mod config;
pub mod cors;
pub mod dashboard;
pub mod exchange;
pub mod fleet;
pub mod handlers;
pub mod logging;
pub mod metrics;
pub mod metrics_listener;
pub mod poll;
pub mod proxy;
pub mod rejection;
pub mod routes;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod stream;
pub mod upstream;
pub mod webhook;

pub use wa_hub_sinks::signature;
