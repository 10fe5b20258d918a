//! Logs through the real binary: `RUST_LOG` is checked like a config key, and no colour codes
//! reach a stderr that is not a terminal (issue 14, item 12).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn an_invalid_rust_log_stops_start_up_with_exit_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!("listen: 127.0.0.1:{port}\nmetrics_listen: null\n"),
    )
    .unwrap();
    for bad in ["info,wa_hub_sidecar=loud", "=", "[{"] {
        for sub in [None, Some("check-config")] {
            let mut cmd = Command::new(sidecar_bin());
            for v in OVERRIDE_VARS {
                cmd.env_remove(v);
            }
            cmd.args(sub)
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", bad);
            let out = cmd.output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{bad} {sub:?}: {err}");
            assert!(
                err.contains("environment variable RUST_LOG") && err.contains(bad),
                "{bad}: {err}"
            );
            assert_eq!(err.lines().count(), 1, "one line: {err}");
        }
    }
    // Nothing was bound: the port is still free.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

#[test]
fn logs_to_a_file_carry_no_colour_codes_and_a_valid_rust_log_is_used() {
    let sc = Sidecar::start_with(&dead_upstream_url(), "", "", &[("RUST_LOG", "debug")]);
    // A proxied call to a dead upstream logs a warning at least.
    let _ = client().get(sc.url("/api/wahub/instances")).send();
    let log = eventually(Duration::from_secs(10), || {
        let l = sc.log();
        l.contains("DEBUG").then_some(l)
    })
    .unwrap_or_else(|| panic!("RUST_LOG=debug shows debug lines:\n{}", sc.log()));
    assert!(!log.contains('\u{1b}'), "escape codes in the log:\n{log}");
}
