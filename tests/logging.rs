//! Logs through the real binary: `RUST_LOG` is checked like a config key, and no colour codes
//! reach a stderr that is not a terminal (issue 14, item 12).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// `yaml` written to `c.yaml` in `dir`.
fn config_file(dir: &tempfile::TempDir, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The sidecar with `--config config`, none of the environment variables that override config
/// keys inherited.
fn sidecar_command(config: &std::path::Path) -> Command {
    let mut cmd = Command::new(sidecar_bin());
    for v in OVERRIDE_VARS {
        cmd.env_remove(v);
    }
    cmd.arg("--config").arg(config);
    cmd
}

#[test]
fn an_invalid_rust_log_stops_start_up_with_exit_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_file(
        &dir,
        &format!("listen: 127.0.0.1:{port}\nmetrics_listen: null\n"),
    );
    for bad in ["info,wa_hub_sidecar=loud", "=", "[{"] {
        for sub in [None, Some("check-config")] {
            let mut cmd = sidecar_command(&config);
            cmd.args(sub).env("RUST_LOG", bad);
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

/// `/dev/full`, opened for writing: every write fails with ENOSPC, as on a full disk.
fn dev_full() -> std::fs::File {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
}

#[test]
fn an_unwritable_stderr_or_stdout_keeps_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let refused = config_file(&dir, "listen: 127.0.0.1:0\nlog:\n  access_flush_ms: 0\n");
    for sub in [None, Some("check-config")] {
        let out = sidecar_command(&refused)
            .args(sub)
            .stderr(dev_full())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{sub:?}: a refused config, not a panic"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let good = config_file(&dir, "metrics_listen: null\n");
    let out = sidecar_command(&good)
        .arg("check-config")
        .stdout(dev_full())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write the settings to stdout"), "{err}");
}

#[test]
fn a_fatal_start_up_error_in_a_json_log_is_one_json_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (format, level) in [("json", "info"), ("text", "info"), ("json", "off")] {
        let config = config_file(
            &dir,
            &format!("listen: {addr}\nmetrics_listen: null\nlog:\n  format: {format}\n  level: {level}\n"),
        );
        let out = sidecar_command(&config).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        let said = |l: &&str| l.contains(&format!("cannot listen on {addr}"));
        let plain = err
            .lines()
            .filter(said)
            .filter(|l| l.starts_with("wa-hub-sidecar: "))
            .count();
        if format == "json" && level == "info" {
            // Once, as JSON, and nothing else in the stream.
            assert_eq!(err.lines().filter(said).count(), 1, "{err}");
            assert_eq!(plain, 0, "{err}");
            for line in err.lines() {
                let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
                assert!(parsed.is_ok(), "not JSON: {line}");
            }
        } else {
            // The plain line that names the program, once.
            assert_eq!(plain, 1, "{format} {level}: {err}");
        }
    }
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

/// Log settings for the access-log tests: only access lines (and warnings) are written, so no
/// other line writes the gathered access lines out for them.
fn access_only(flush_ms: u64) -> String {
    format!("log:\n  level: warn,wa_hub_sidecar::access=info\n  access_flush_ms: {flush_ms}\n")
}

/// `count` proxied calls, `/echo/0` onwards, each answered 200 by the fake upstream.
fn echo_calls(sc: &Sidecar, count: usize) {
    for n in 0..count {
        let r = client()
            .get(sc.url(&format!("/api/wahub/echo/{n}")))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
}

fn access_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("wa_hub_sidecar::access"))
        .collect()
}

#[test]
fn gathered_access_lines_reach_stderr_within_the_flush_interval() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), &access_only(200));
    echo_calls(&sc, 3);
    let log = eventually(Duration::from_secs(10), || {
        let l = sc.log();
        (access_lines(&l).len() == 3).then_some(l)
    })
    .unwrap_or_else(|| panic!("three access lines within 10 s:\n{}", sc.log()));
    let lines = access_lines(&log);
    for (n, line) in lines.iter().enumerate() {
        assert!(
            line.contains(&format!("path=/echo/{n}")) && line.contains("status=200"),
            "in call order: {line}"
        );
    }
}

#[test]
fn access_lines_still_gathered_at_sigterm_are_written_before_exit() {
    let up = FakeUpstream::start();
    // A flush interval no test waits for: only the shutdown writes the lines out.
    let mut sc = Sidecar::start(&up.base_url(), &access_only(600_000));
    echo_calls(&sc, 5);
    sc.terminate();
    let status = sc.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(status.success(), "{status}");
    let log = sc.log();
    let lines = access_lines(&log);
    assert_eq!(lines.len(), 5, "every call's line:\n{log}");
    assert!(lines[4].contains("path=/echo/4"), "{log}");
}

#[test]
fn an_unwritable_stderr_loses_the_log_but_never_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = config_file(
        &dir,
        &format!(
            "listen: 127.0.0.1:{port}\nmetrics_listen: null\nupstream:\n  base_url: {}\n  token: x\n  health_interval_ms: 0\n",
            dead_upstream_url()
        ),
    );
    let full = dev_full();
    let mut child = KillOnDrop(
        sidecar_command(&config)
            .stdout(std::process::Stdio::null())
            .stderr(full)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let up_and_running = eventually(Duration::from_secs(20), || {
        let r = client().get(format!("{base}/healthz")).send().ok()?;
        (r.status().as_u16() == 200).then_some(())
    });
    assert!(
        up_and_running.is_some(),
        "never served /healthz: {:?}",
        child.0.try_wait()
    );
    // Each call to the dead upstream logs a warning and an access line.
    for _ in 0..20 {
        let r = client()
            .get(format!("{base}/api/wahub/echo"))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 502);
    }
    let r = client().get(format!("{base}/healthz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "still serving");
    let pid = libc::pid_t::try_from(child.0.id()).unwrap();
    // SAFETY: a plain signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = eventually(Duration::from_secs(20), || {
        child.0.try_wait().ok().flatten()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}

/// A child process killed when the test ends, also when it fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
