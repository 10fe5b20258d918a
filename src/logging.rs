//! Process logs through `tracing`: human-readable by default, JSON with `log.format: json`.
//! `RUST_LOG`, when set and not empty, overrides `log.level`; an unusable `RUST_LOG` is a
//! configuration error naming the variable ([`crate::config::check_rust_log`], called by
//! [`crate::config::load`]), so the process exits before binding. Colour codes are written
//! only when stderr is a terminal. Pingora's own `log` records are bridged in.
//!
//! Everything goes to stderr. The access log's lines (target [`ACCESS_TARGET`], one per
//! proxied call) gather in a buffer of `log.access_buffer_bytes` and are written together when
//! it fills, every `log.access_flush_ms`, before any other line, and at shutdown ([`flush`]),
//! like nginx's `access_log ... buffer= flush=`: one `write` per buffer instead of one per
//! call (issue 10: with a line per call, that `write` and the stderr lock the proxy threads
//! contended for were 1.4 of the 7 system calls of a proxied call). Every other line is
//! written at once. A line stderr does not take is lost;
//! logging never stops the process.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{rust_log, LogConfig, LogFormat, RUST_LOG};

/// `tracing` target of the access log's lines (`log.access`), written by [`crate::proxy`].
pub const ACCESS_TARGET: &str = "wa_hub_sidecar::access";

/// The process's stderr log, once [`init`] ran: what [`flush`] writes out.
static STDERR_LOG: OnceLock<Arc<StderrLog>> = OnceLock::new();

/// Installs the global subscriber and, when access lines are buffered, the thread that
/// writes them out every `log.access_flush_ms`. Call once, after the config is validated
/// (which checked `RUST_LOG` and `log.level`).
pub fn init(cfg: &LogConfig) {
    let from_env = rust_log(std::env::var_os(RUST_LOG)).ok().flatten();
    let filter = from_env
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let log = Arc::new(StderrLog::new(cfg.access_buffer_bytes, to_stderr));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(Shared(log.clone()));
    let result = match cfg.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
        return;
    }
    let _ = STDERR_LOG.set(log.clone());
    if cfg.access && cfg.access_buffer_bytes > 0 {
        let every = Duration::from_millis(cfg.access_flush_ms.get());
        let spawned = std::thread::Builder::new()
            .name("access log".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                log.flush();
            });
        if let Err(e) = spawned {
            // Lines are still written when the buffer fills, before other lines and at exit.
            tracing::warn!(error = %e, "cannot start the access log's flush thread");
        }
    }
}

/// Writes out the access lines still buffered. Call before the process exits (shutdown).
pub fn flush() {
    if let Some(log) = STDERR_LOG.get() {
        log.flush();
    }
}

/// stderr, with a buffer for access lines (see the module doc).
struct StderrLog {
    /// Access lines not written yet, in order.
    pending: Mutex<Vec<u8>>,
    /// Write the buffer once it holds this many bytes; 0: write each line at once.
    capacity: usize,
    /// Where lines go: [`to_stderr`] (tests: a recorder).
    out: fn(&[u8]) -> std::io::Result<()>,
}

/// One `write_all` to stderr.
fn to_stderr(bytes: &[u8]) -> std::io::Result<()> {
    std::io::stderr().lock().write_all(bytes)
}

impl StderrLog {
    fn new(capacity: usize, out: fn(&[u8]) -> std::io::Result<()>) -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            capacity,
            out,
        }
    }

    /// Writes `line` (one formatted event), or buffers it when it is an access line and the
    /// buffer has room. Buffered lines are written before any other line, so lines keep
    /// their order.
    fn write_line(&self, line: &[u8], access: bool) -> std::io::Result<()> {
        let mut pending = self.pending.lock();
        if access && self.capacity > 0 {
            pending.extend_from_slice(line);
            if pending.len() < self.capacity {
                return Ok(());
            }
            return self.write_out(&mut pending);
        }
        self.write_out(&mut pending)?;
        (self.out)(line)
    }

    fn flush(&self) {
        let _ = self.write_out(&mut self.pending.lock());
    }

    /// Writes the buffered lines and empties the buffer (also when the write failed: a broken
    /// stderr must not make the buffer grow).
    fn write_out(&self, pending: &mut Vec<u8>) -> std::io::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let written = (self.out)(pending);
        pending.clear();
        written
    }
}

/// One event's writer: `tracing`'s formatter writes each formatted event with one
/// `write_all`.
struct LineWriter<'a> {
    log: &'a StderrLog,
    access: bool,
}

impl Write for LineWriter<'_> {
    /// Never fails: a line stderr did not take (a full disk, a closed pipe) is lost, and the
    /// process goes on. Reporting the error would make `tracing-subscriber` print it with
    /// `eprintln!`, which panics when stderr itself is what fails (the sidecar then died at
    /// its first log line, or dropped the request that logged a warning).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.log.write_line(buf, self.access);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The subscriber's handle on the log (also held by [`STDERR_LOG`] and the flush thread).
struct Shared(Arc<StderrLog>);

impl<'a> MakeWriter<'a> for Shared {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            log: &self.0,
            access: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            log: &self.0,
            access: meta.target() == ACCESS_TARGET,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    thread_local! {
        /// What a test's log wrote, one entry per write.
        static WRITES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    fn record(bytes: &[u8]) -> std::io::Result<()> {
        WRITES.with(|w| {
            w.borrow_mut()
                .push(String::from_utf8_lossy(bytes).into_owned())
        });
        Ok(())
    }

    fn writes() -> Vec<String> {
        WRITES.with(|w| w.borrow().clone())
    }

    #[test]
    fn access_lines_are_written_together_once_the_buffer_fills() {
        let log = StderrLog::new(30, record);
        log.write_line(b"GET /a 200\n", true).unwrap();
        log.write_line(b"GET /b 200\n", true).unwrap();
        assert!(writes().is_empty());
        log.write_line(b"GET /c 200\n", true).unwrap();
        assert_eq!(writes(), ["GET /a 200\nGET /b 200\nGET /c 200\n"]);
        assert!(log.pending.lock().is_empty());
    }

    #[test]
    fn another_line_comes_after_the_buffered_access_lines() {
        let log = StderrLog::new(1024, record);
        log.write_line(b"GET /a 200\n", true).unwrap();
        log.write_line(b"WARN upstream down\n", false).unwrap();
        assert_eq!(writes(), ["GET /a 200\n", "WARN upstream down\n"]);
        log.write_line(b"GET /b 200\n", true).unwrap();
        log.flush();
        log.flush();
        assert_eq!(writes()[2..], ["GET /b 200\n"]);
    }

    #[test]
    fn a_zero_buffer_writes_each_access_line_at_once() {
        let log = StderrLog::new(0, record);
        log.write_line(b"GET /a 200\n", true).unwrap();
        assert_eq!(writes(), ["GET /a 200\n"]);
    }
}
