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
//!
//! Access lines are formatted here ([`access`]), not by `tracing`'s formatter, whenever
//! stderr takes no colour codes: the same bytes (`tracing-subscriber`'s `Full` text format or
//! its flattened JSON, checked by this module's tests), for about a tenth of the instructions
//! (issue 10: `tracing`'s formatter was 8 % of a proxied call's instructions, counted with
//! callgrind). On a terminal, `tracing` writes them, in colour.

use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{rust_log, LogConfig, LogFormat, RUST_LOG};

/// `tracing` target of the access log's lines (`log.access`), written by [`crate::proxy`].
pub const ACCESS_TARGET: &str = "wa_hub_sidecar::access";

/// The process's stderr log, once [`init`] ran: what [`flush`] writes out.
static STDERR_LOG: OnceLock<Arc<StderrLog>> = OnceLock::new();

/// Where [`access`] writes its lines itself, once [`init`] ran, when stderr takes no colour
/// codes (else `tracing` writes them).
static ACCESS_LOG: OnceLock<AccessLog> = OnceLock::new();

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
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
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
    if !ansi || cfg.format == LogFormat::Json {
        let _ = ACCESS_LOG.set(AccessLog {
            log: log.clone(),
            json: cfg.format == LogFormat::Json,
        });
    }
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

/// Logs one proxied call (`log.access`; called by [`crate::proxy`]): its `method`, the
/// upstream `path` with its query, the `status` the client got (0: none was written) and
/// `latency_ms`. The line is the one
/// `tracing::info!(target: ACCESS_TARGET, method = %method, path = %path, status, latency_ms, "proxied")`
/// gives, and that filter (`log.level`, `RUST_LOG`) decides whether it is written.
pub fn access(method: &str, path: &str, status: u16, latency_ms: u64) {
    if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(access) = ACCESS_LOG.get() else {
        tracing::info!(
            target: ACCESS_TARGET,
            method = %method,
            path = %path,
            status,
            latency_ms,
            "proxied"
        );
        return;
    };
    thread_local! {
        static LINE: RefCell<(Vec<u8>, SecondText)> = const { RefCell::new((Vec::new(), SecondText::NONE)) };
    }
    LINE.with(|line| {
        let (buf, second) = &mut *line.borrow_mut();
        buf.clear();
        let call = AccessCall {
            method,
            path,
            status,
            latency_ms,
        };
        call.write(buf, access.json, second.timestamp(SystemTime::now()));
        let _ = access.log.write_line(buf, true);
    });
}

/// Writes out the access lines still buffered. Call before the process exits (shutdown).
pub fn flush() {
    if let Some(log) = STDERR_LOG.get() {
        log.flush();
    }
}

/// [`access`]'s lines: the log they go to, and their format.
struct AccessLog {
    log: Arc<StderrLog>,
    json: bool,
}

/// The fields of one access line.
struct AccessCall<'a> {
    method: &'a str,
    path: &'a str,
    status: u16,
    latency_ms: u64,
}

impl AccessCall<'_> {
    /// Appends the line, with `timestamp` (RFC 3339, UTC, microseconds, as
    /// [`SecondText::timestamp`] gives), to `buf`: `tracing-subscriber`'s `Full` text format
    /// (`<timestamp>  INFO <target>: proxied method=GET path=/x status=200 latency_ms=1`) or
    /// its JSON with `flatten_event(true)`.
    fn write(&self, buf: &mut Vec<u8>, json: bool, timestamp: &[u8]) {
        let mut status = itoa::Buffer::new();
        let mut latency = itoa::Buffer::new();
        let status = status.format(self.status).as_bytes();
        let latency = latency.format(self.latency_ms).as_bytes();
        if json {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            buf.extend_from_slice(timestamp);
            buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"proxied\",\"method\":");
            // Writing to a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, self.method);
            buf.extend_from_slice(b",\"path\":");
            let _ = serde_json::to_writer(&mut *buf, self.path);
            buf.extend_from_slice(b",\"status\":");
            buf.extend_from_slice(status);
            buf.extend_from_slice(b",\"latency_ms\":");
            buf.extend_from_slice(latency);
            buf.extend_from_slice(b",\"target\":\"");
            buf.extend_from_slice(ACCESS_TARGET.as_bytes());
            buf.extend_from_slice(b"\"}\n");
        } else {
            buf.extend_from_slice(timestamp);
            buf.extend_from_slice(b"  INFO ");
            buf.extend_from_slice(ACCESS_TARGET.as_bytes());
            buf.extend_from_slice(b": proxied method=");
            buf.extend_from_slice(self.method.as_bytes());
            buf.extend_from_slice(b" path=");
            buf.extend_from_slice(self.path.as_bytes());
            buf.extend_from_slice(b" status=");
            buf.extend_from_slice(status);
            buf.extend_from_slice(b" latency_ms=");
            buf.extend_from_slice(latency);
            buf.push(b'\n');
        }
    }
}

/// An RFC 3339 timestamp whose date and time of day are formatted once per second.
struct SecondText {
    /// The second since the Unix epoch `text` is for.
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`; the first 19 bytes are `second`'s.
    text: [u8; 27],
}

impl SecondText {
    const NONE: Self = Self {
        second: u64::MAX,
        text: *b"1970-01-01T00:00:00.000000Z",
    };

    /// `now` as `tracing-subscriber`'s default timer writes it: UTC, microseconds, `Z`
    /// (`2026-12-01T10:47:05.918504Z`); a clock before 1970 as the epoch.
    fn timestamp(&mut self, now: SystemTime) -> &[u8] {
        let since = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let second = since.as_secs();
        if second != self.second {
            let at = i64::try_from(second)
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .unwrap_or_default();
            let mut date = [0u8; 19];
            let mut out = &mut date[..];
            // 19 bytes for years 0 to 9999; a later clock keeps the last text.
            if write!(out, "{}", at.format("%Y-%m-%dT%H:%M:%S")).is_ok() && out.is_empty() {
                self.text[..19].copy_from_slice(&date);
                self.second = second;
            }
        }
        let mut micros = since.subsec_micros();
        for digit in self.text[20..26].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        &self.text
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

    /// A timestamp as [`SecondText::timestamp`] gives one.
    const AT: &str = "2026-12-01T10:47:05.918504Z";

    /// `tracing-subscriber`'s own line for the access event, at [`AT`].
    fn tracing_line(json: bool, call: &AccessCall) -> String {
        struct At;
        impl tracing_subscriber::fmt::time::FormatTime for At {
            fn format_time(
                &self,
                w: &mut tracing_subscriber::fmt::format::Writer<'_>,
            ) -> std::fmt::Result {
                w.write_str(AT)
            }
        }
        #[derive(Clone, Default)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Capture::default();
        let writer = out.clone();
        let builder = tracing_subscriber::fmt()
            .with_timer(At)
            .with_ansi(false)
            .with_writer(move || writer.clone());
        let event = || {
            tracing::info!(
                target: ACCESS_TARGET,
                method = %call.method,
                path = %call.path,
                status = call.status,
                latency_ms = call.latency_ms,
                "proxied"
            );
        };
        if json {
            tracing::subscriber::with_default(builder.json().flatten_event(true).finish(), event);
        } else {
            tracing::subscriber::with_default(builder.finish(), event);
        }
        let line = String::from_utf8(out.0.lock().clone()).unwrap();
        line
    }

    #[test]
    fn access_lines_are_the_bytes_tracing_writes_in_text_and_json() {
        let paths = [
            "/instances/WASP-test_shop/client/status",
            "/instances/a%20b/x?q=%221%22&%E2%80%A8=1",
            "/odd/\"quoted\"/back\\slash/\u{1}/\u{2028}/é",
            "",
        ];
        for path in paths {
            for (method, status, latency_ms) in [("GET", 200, 0), ("DELETE", 0, u64::MAX)] {
                let call = AccessCall {
                    method,
                    path,
                    status,
                    latency_ms,
                };
                for json in [false, true] {
                    let mut ours = Vec::new();
                    call.write(&mut ours, json, AT.as_bytes());
                    assert_eq!(
                        String::from_utf8(ours).unwrap(),
                        tracing_line(json, &call),
                        "json {json}, path {path:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc_microseconds_across_seconds() {
        let mut text = SecondText::NONE;
        for (secs, nanos) in [
            (1_764_586_025, 918_504_999),
            (1_764_586_025, 5_000),
            (1_764_586_026, 0),
            (1_764_586_026, 999_999_000),
            (0, 1_000),
            (253_402_300_799, 999_999_999),
        ] {
            let at = SystemTime::UNIX_EPOCH + Duration::new(secs, nanos);
            let want = chrono::DateTime::<chrono::Utc>::from(at)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(std::str::from_utf8(text.timestamp(at)).unwrap(), want);
        }
        let before_1970 = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(text.timestamp(before_1970), b"1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn a_zero_buffer_writes_each_access_line_at_once() {
        let log = StderrLog::new(0, record);
        log.write_line(b"GET /a 200\n", true).unwrap();
        assert_eq!(writes(), ["GET /a 200\n"]);
    }
}
