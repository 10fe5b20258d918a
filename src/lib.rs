//! wa-hub-sidecar: a Pingora sidecar in front of wa-hub.
//!
//! One module per concept (DESIGN.md "Layout"): [`config`] loads and validates settings,
//! [`server`] assembles the process, [`proxy`] is the thin Pingora `ProxyHttp`, [`routes`] maps
//! paths, [`local`] serves the sidecar's own routes, [`auth`] checks client tokens, [`cors`] answers cross-origin browsers, [`apilog`]
//! records proxied calls, [`store`] keeps histories, [`shutdown`] drains on SIGTERM,
//! [`webhook`] receives wa-hub's deliveries, [`signature`] checks their HMAC, [`status`] is the
//! pure display-status engine, [`poll`] runs its API fallbacks, [`metrics`] exposes Prometheus metrics, [`stream`] serves SSE clients,
//! [`console`] serves the embedded operator console, [`qr`] renders raw QR text as SVG,
//! [`sink_health`] reports the sinks as JSON.
#![warn(missing_docs)]

pub mod apilog;
pub mod app;
pub mod auth;
pub mod config;
pub mod console;
pub mod cors;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod poll;
pub mod proxy;
pub mod qr;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod signature;
pub mod sink_health;
pub mod status;
pub mod store;
pub mod stream;
pub mod webhook;
