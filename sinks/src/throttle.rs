//! [`LogThrottle`]: at most one log line per interval for a failure that can repeat thousands
//! of times a second (a full queue, a full buffer, a full outbox). The failure is still counted
//! every time; only its log line is thinned.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Minimum time between two log lines of one throttled failure, for every sink.
pub const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Lets one caller log per interval; lock-free, shareable across threads.
#[derive(Debug)]
pub struct LogThrottle {
    epoch: Instant,
    interval_ms: u64,
    /// Milliseconds since `epoch` of the last allowed line, plus one (0 = never).
    last_ms: AtomicU64,
}

impl Default for LogThrottle {
    fn default() -> Self {
        Self::new(DROP_LOG_INTERVAL)
    }
}

impl LogThrottle {
    /// A throttle allowing one line per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Whether the caller may log now: true for the first call, then at most once per
    /// interval (exactly one of several racing callers wins).
    pub fn allow(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= self.interval_ms)
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_call_logs_then_quiet_until_the_interval_passes() {
        let t = LogThrottle::new(Duration::from_millis(30));
        assert!(t.allow());
        assert!(!t.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(t.allow());
        assert!(!t.allow());
    }
}
