//! Process logs through `tracing`: human-readable by default, JSON with `log.format: json`.
//! `RUST_LOG`, when set and not empty, overrides `log.level`; an unusable `RUST_LOG` is a
//! configuration error naming the variable ([`check_rust_log`], called by
//! [`crate::config::load`]), so the process exits before binding. Colour codes are written
//! only when stderr is a terminal. Pingora's own `log` records are bridged in.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogConfig, LogFormat};

/// The variable that overrides `log.level`.
pub const RUST_LOG: &str = "RUST_LOG";

/// `RUST_LOG`'s value when set and not empty (an empty variable counts as unset).
///
/// # Errors
/// [`ConfigError::Env`] when the value is not UTF-8.
fn rust_log(value: Option<std::ffi::OsString>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v.into_string().map(Some).map_err(|_| ConfigError::Env {
            var: RUST_LOG,
            key: "log.level",
            reason: "is not UTF-8 text".into(),
        }),
    }
}

/// Checks a `RUST_LOG` value (`None`: unset) as a `tracing` filter.
///
/// # Errors
/// [`ConfigError::Env`] naming `RUST_LOG`, with the parser's reason, when it is not UTF-8 or
/// not a filter such as `info` or `wa_hub_sidecar=debug,pingora=warn`.
pub fn check_rust_log(value: Option<std::ffi::OsString>) -> Result<(), ConfigError> {
    if let Some(v) = rust_log(value)? {
        EnvFilter::try_new(&v).map_err(|e| ConfigError::Env {
            var: RUST_LOG,
            key: "log.level",
            reason: format!(
                "`{v}` is not a tracing filter ({e}); use e.g. `info` or `wa_hub_sidecar=debug`"
            ),
        })?;
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_empty_rust_log_is_fine_and_a_bad_one_names_the_variable() {
        assert!(check_rust_log(None).is_ok());
        assert!(check_rust_log(Some("".into())).is_ok());
        assert!(check_rust_log(Some("wa_hub_sidecar=debug,warn".into())).is_ok());
        for bad in ["=", "info,foo=notalevel", "[{"] {
            let e = check_rust_log(Some(bad.into())).unwrap_err().to_string();
            assert!(e.starts_with("environment variable RUST_LOG"), "{bad}: {e}");
        }
    }
}
