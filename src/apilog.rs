//! The API-call log: turning a proxied exchange into the dashboard's ApiLog record.
//!
//! Bodies are captured chunk by chunk as they stream through the proxy, copying at most
//! `api_log.max_body_bytes` of each; the rest of a large body is counted, never copied.

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use wa_hub_sinks::envelope::{iso_timestamp, whole_text};
use wa_hub_sinks::{ApiLog, ApiLogBody};

/// One proxied call in flight: what its ApiLog needs, gathered while it streams through.
#[derive(Debug)]
pub struct ProxiedCall {
    /// wa-hub path and query as sent upstream.
    pub upstream_path: String,
    /// Instance id from `/instances/<id>/...`.
    pub instance_id: Option<String>,
    /// The request body, capped.
    pub request_body: BodyCapture,
    /// The response body, capped.
    pub response_body: BodyCapture,
    /// What went wrong, when the call failed.
    pub error: Option<String>,
    /// Bytes of each body the ApiLog shows (`api_log.max_body_bytes`).
    log_cap: usize,
    started_at: DateTime<Utc>,
    start: Instant,
}

impl ProxiedCall {
    /// A call to wa-hub path `path_and_query` starting now, copying at most `request_cap` bytes
    /// of the request body and `response_cap` of the response body, of which the ApiLog shows
    /// at most `log_cap` (the response may be copied further for status learning).
    pub fn new(
        path_and_query: String,
        request_cap: usize,
        response_cap: usize,
        log_cap: usize,
    ) -> Self {
        Self {
            instance_id: crate::routes::instance_id(&path_and_query),
            upstream_path: path_and_query,
            request_body: BodyCapture::new(request_cap),
            response_body: BodyCapture::new(response_cap),
            error: None,
            log_cap,
            started_at: Utc::now(),
            start: Instant::now(),
        }
    }

    /// Time since the call started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.start.elapsed()
    }

    /// The finished call's ApiLog record: `method` as the client sent it, `status_code` the
    /// status the client got (`None` when none was written).
    pub fn into_log(self, method: String, status_code: Option<u16>) -> ApiLog {
        ApiLog {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: iso_timestamp(self.started_at),
            method,
            path: self.upstream_path,
            status_code,
            latency_ms: u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            request_body: self.request_body.into_body(self.log_cap),
            response_body: self.response_body.into_body(self.log_cap),
            instance_id: self.instance_id,
            error: self.error,
        }
    }
}

/// A size-capped copy of a body seen in chunks.
#[derive(Debug, Default)]
pub struct BodyCapture {
    kept: Vec<u8>,
    total: usize,
    cap: usize,
}

impl BodyCapture {
    /// A capture keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            kept: Vec::new(),
            total: 0,
            cap,
        }
    }

    /// Counts `chunk` and copies what still fits under the cap.
    pub fn push(&mut self, chunk: &Bytes) {
        self.total += chunk.len();
        let room = self.cap.saturating_sub(self.kept.len());
        if room > 0 {
            self.kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }

    /// Bytes seen in total, kept or not.
    pub fn total(&self) -> usize {
        self.total
    }

    /// The whole body as text (white space around it trimmed), when all of it was copied and
    /// it is UTF-8.
    pub fn text(&self) -> Option<&str> {
        whole_text(&self.kept, self.total)
    }

    /// The captured body, for the ApiLog, of which at most `cap` bytes are kept: turned into
    /// JSON only if the ApiLog is serialized.
    pub fn into_body(mut self, cap: usize) -> ApiLogBody {
        self.kept.truncate(cap);
        // Kept for as long as the API-log history keeps the call: no spare capacity (a body
        // that came in several chunks grew the buffer by doubling).
        self.kept.shrink_to_fit();
        ApiLogBody::captured(self.kept, self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_over_the_cap_is_copied_only_up_to_the_cap_and_counted_whole() {
        let mut c = BodyCapture::new(8);
        c.push(&Bytes::from_static(b"{\"aaaa\":"));
        c.push(&Bytes::from_static(b"\"bbbbbbbb\"}"));
        assert_eq!((c.kept.len(), c.total()), (8, 19));
        assert_eq!(c.text(), None, "not whole");
        assert_eq!(
            c.into_body(8),
            ApiLogBody::captured(b"{\"aaaa\":".to_vec(), 19)
        );
    }

    #[test]
    fn a_body_copied_further_than_the_log_shows_is_cut_for_the_log() {
        let mut c = BodyCapture::new(100);
        c.push(&Bytes::from_static(b" [1, 2, 3] "));
        assert_eq!(c.text(), Some("[1, 2, 3]"));
        assert_eq!(c.into_body(4), ApiLogBody::captured(b" [1,".to_vec(), 11));
    }

    #[test]
    fn a_zero_cap_copies_nothing() {
        let mut c = BodyCapture::new(0);
        c.push(&Bytes::from_static(b"[1]"));
        assert!(c.kept.is_empty());
        assert_eq!(c.total(), 3);
    }
}
