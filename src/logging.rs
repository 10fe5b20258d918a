//! Process logs through `tracing`: human-readable by default, JSON with `log.format: json`.
//! `RUST_LOG`, when set and not empty, overrides `log.level`; an unusable `RUST_LOG` is a
//! configuration error naming the variable ([`crate::config::check_rust_log`], called by
//! [`crate::config::load`]), so the process exits before binding. Colour codes are written
//! only when stderr is a terminal. Pingora's own `log` records are bridged in.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{rust_log, LogConfig, LogFormat, RUST_LOG};

/// Installs the global subscriber. Call once, after the config is validated (which checked
/// `RUST_LOG` and `log.level`).
pub fn init(cfg: &LogConfig) {
    let from_env = rust_log(std::env::var_os(RUST_LOG)).ok().flatten();
    let filter = from_env
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}
