//! wa-hub-sidecar: a Pingora sidecar in front of wa-hub.
//!
//! One module per concept (DESIGN.md "Layout"):
//! - start-up: [`config`] loads and validates settings ([`config_yaml`] reads the YAML text with
//!   errors naming key path and line), [`tls`] checks certificates, [`logging`] sets up logs, [`server`]
//!   assembles the process, [`shutdown`] drains on SIGTERM;
//! - HTTP: [`proxy`] is the thin Pingora `ProxyHttp` ([`request_buffer`] holds proxied bodies
//!   back until complete), [`routes`] is the route table (methods and access of every route),
//!   [`rejection`] the typed refusals, [`response`] the answers the sidecar writes itself,
//!   [`exchange`] reads bodies and writes those answers, [`framing`] fits response framing to
//!   HTTP/1.0 clients, [`handlers`] serve the sidecar's own routes, [`dashboard`] the wa-hub
//!   dashboard's extra routes, [`auth`] decides client access (tokens, the dashboard's session
//!   cookie kept by [`session`]), [`cors`] answers cross-origin browsers, [`stream`] serves SSE
//!   clients, [`metrics_listener`] the `metrics_listen` port, [`console`] the embedded operator
//!   console, [`qr`] renders raw QR text as SVG, [`sink_health`] reports the sinks
//!   (`/api/sinks`);
//! - wa-hub: [`webhook`] receives its deliveries ([`signature`] checks their HMAC, [`dedup`]
//!   recognises re-sent ones),
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
pub mod config_yaml;
pub mod console;
pub mod cors;
pub mod dashboard;
pub mod dedup;
pub mod exchange;
pub mod fleet;
pub mod framing;
pub mod handlers;
pub mod logging;
pub mod metrics;
pub mod metrics_listener;
pub mod poll;
pub mod proxy;
pub mod qr;
pub mod rejection;
pub mod request_buffer;
pub mod response;
pub mod routes;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod sink_health;
pub mod status;
pub mod store;
pub mod stream;
pub mod tls;
pub mod upstream;
pub mod webhook;

pub use wa_hub_sinks::signature;
