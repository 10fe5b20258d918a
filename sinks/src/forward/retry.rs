//! The retry policy: which answers are worth another attempt, how long to wait before it
//! (capped exponential backoff with jitter, or the receiver's `Retry-After`).

use std::time::{Duration, SystemTime};

/// Longest `Retry-After` honoured; a receiver asking for more waits this long.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(3600);

/// What one attempt's answer means for the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: delivered; the event leaves the outbox.
    Delivered,
    /// Worth another attempt (connection error, timeout, 408, 429, 5xx), after the receiver's
    /// `Retry-After` when it gave one.
    Retry {
        /// What went wrong, for logs and the dead-letter list.
        error: String,
        /// The receiver's `Retry-After`, parsed.
        retry_after: Option<Duration>,
    },
    /// Another attempt would get the same answer (other 4xx, 3xx, 1xx): dead letter at once.
    Reject {
        /// What went wrong.
        error: String,
    },
}

/// The verdict on an HTTP answer with `status`, `retry_after` the raw `Retry-After` value (if
/// any), `now` the time it arrived, `detail` a short excerpt of the response body.
pub fn judge_status(
    status: u16,
    retry_after: Option<&[u8]>,
    now: SystemTime,
    detail: &str,
) -> Verdict {
    let error = if detail.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {detail}")
    };
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry {
            error,
            retry_after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => Verdict::Reject { error },
    }
}

/// Parses a `Retry-After` value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, also the obsolete RFC 850 and asctime forms), relative
/// to `now`. A date in the past is a zero delay. The result is capped at
/// [`RETRY_AFTER_MAX`].
///
/// Returns `None` for anything else (empty, negative, not ASCII, not a date).
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    let delay = if text.bytes().all(|b| b.is_ascii_digit()) {
        // Long digit strings saturate rather than fail: they mean "a long time".
        Duration::from_secs(text.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(text).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(RETRY_AFTER_MAX))
}

/// The backoff before the attempt that follows failed attempt number `failures` (1 = the
/// first attempt failed): `initial * 2^(failures-1)` capped at `max`, then "equal jitter":
/// a uniformly random point in the upper half, `[base/2, base]`. So delays never shrink from
/// one failure to the next, and concurrent senders spread out.
///
/// `jitter` is a number in `[0, 1]` (normally random; fixed in tests).
pub fn backoff(failures: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(32);
    let base = initial
        .checked_mul(1u32 << exp.min(31))
        .unwrap_or(max)
        .min(max);
    let half = base / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_from_initial_and_stops_at_max() {
        let (i, m) = (100 * MS, 1000 * MS);
        let full: Vec<_> = (1..=6).map(|n| backoff(n, i, m, 1.0)).collect();
        assert_eq!(
            full,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        let low: Vec<_> = (1..=3).map(|n| backoff(n, i, m, 0.0)).collect();
        assert_eq!(low, [50 * MS, 100 * MS, 200 * MS]);
    }

    #[test]
    fn backoff_with_any_jitter_never_shrinks_and_never_passes_max() {
        let (i, m) = (10 * MS, 700 * MS);
        let mut last = Duration::ZERO;
        for n in 1..=40 {
            let lo = backoff(n, i, m, 0.0);
            let hi = backoff(n, i, m, 1.0);
            assert!(lo >= last / 2 && lo <= hi && hi <= m, "{n}: {lo:?}..{hi:?}");
            last = hi;
        }
        assert_eq!(backoff(u32::MAX, i, m, 1.0), m);
    }

    #[test]
    fn retry_after_seconds_and_http_dates_are_understood() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after(b"3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(b" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after(b"Sunday, 06-Nov-94 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored_and_huge_values_are_capped() {
        let now = SystemTime::now();
        for bad in [&b""[..], b"-1", b"1.5", b"soon", &[0xff, 0xfe]] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
        assert_eq!(
            parse_retry_after(b"99999999999999999999999", now),
            Some(RETRY_AFTER_MAX)
        );
    }

    #[test]
    fn transient_statuses_are_retried_and_other_client_errors_rejected() {
        let now = SystemTime::now();
        assert_eq!(judge_status(204, None, now, ""), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(judge_status(s, None, now, ""), Verdict::Retry { .. }),
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 410, 413, 422] {
            assert!(
                matches!(judge_status(s, None, now, ""), Verdict::Reject { .. }),
                "{s}"
            );
        }
        assert_eq!(
            judge_status(429, Some(b"2"), now, "slow down"),
            Verdict::Retry {
                error: "HTTP 429: slow down".into(),
                retry_after: Some(Duration::from_secs(2)),
            }
        );
    }
}
