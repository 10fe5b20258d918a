//! The API-call log: turning a proxied exchange into the dashboard's ApiLog record.
//!
//! Bodies are captured chunk by chunk as they stream through the proxy, copying at most
//! `api_log.max_body_bytes` of each; the rest of a large body is counted, never copied.

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use wa_hub_sinks::envelope::iso_timestamp;
use wa_hub_sinks::ApiLog;

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
    started_at: DateTime<Utc>,
    start: Instant,
}

impl ProxiedCall {
    /// A call to wa-hub path `path_and_query` starting now, keeping at most `cap` bytes of each
    /// body.
    pub fn new(path_and_query: String, cap: usize) -> Self {
        Self {
            instance_id: crate::routes::instance_id(&path_and_query),
            upstream_path: path_and_query,
            request_body: BodyCapture::new(cap),
            response_body: BodyCapture::new(cap),
            error: None,
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
            request_body: self.request_body.to_json(),
            response_body: self.response_body.to_json(),
            instance_id: self.instance_id,
            error: self.error,
        }
    }
}

/// Characters of a non-JSON body kept in `{"raw": ...}` (dashboard reference: first 500).
pub const RAW_PREVIEW_CHARS: usize = 500;

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

    /// The body as the ApiLog shows it, as validated JSON text:
    /// - `null` for an empty body;
    /// - the JSON as received when the whole body was kept and is JSON;
    /// - otherwise `{"raw": <first 500 chars>}`, plus `"truncated": true, "bytes": <total>` when
    ///   the body was over the cap.
    pub fn to_json(&self) -> Box<RawValue> {
        if self.total == 0 {
            return raw(&Value::Null);
        }
        let truncated = self.total > self.kept.len();
        if !truncated {
            if let Ok(text) = std::str::from_utf8(&self.kept) {
                if let Ok(v) = RawValue::from_string(text.trim().to_owned()) {
                    return v;
                }
            }
        }
        let preview: String = String::from_utf8_lossy(&self.kept)
            .chars()
            .take(RAW_PREVIEW_CHARS)
            .collect();
        if truncated {
            raw(&json!({ "raw": preview, "truncated": true, "bytes": self.total }))
        } else {
            raw(&json!({ "raw": preview }))
        }
    }
}

fn raw(v: &Value) -> Box<RawValue> {
    // Serializing a `Value` cannot fail.
    serde_json::value::to_raw_value(v).expect("a Value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    impl BodyCapture {
        fn to_json_value(&self) -> Value {
            serde_json::from_str(self.to_json().get()).unwrap()
        }
    }

    fn capture(cap: usize, chunks: &[&[u8]]) -> BodyCapture {
        let mut c = BodyCapture::new(cap);
        for ch in chunks {
            c.push(&Bytes::copy_from_slice(ch));
        }
        c
    }

    #[test]
    fn empty_body_is_null() {
        assert_eq!(capture(10, &[]).to_json_value(), Value::Null);
    }

    #[test]
    fn json_split_across_chunks_is_parsed() {
        let c = capture(100, &[b"{\"a\":", b"[1,2]}"]);
        assert_eq!(c.to_json_value(), json!({"a": [1, 2]}));
    }

    #[test]
    fn non_json_keeps_first_500_chars() {
        let text = "é".repeat(600);
        let v = capture(10_000, &[text.as_bytes()]).to_json_value();
        assert_eq!(v["raw"].as_str().unwrap().chars().count(), 500);
        assert!(v.get("truncated").is_none());
    }

    #[test]
    fn body_over_cap_copies_only_cap_and_reports_size() {
        let c = capture(8, &[b"{\"aaaa\":", b"\"bbbbbbbb\"}"]);
        assert_eq!(c.kept.len(), 8);
        assert_eq!(c.total(), 19);
        assert_eq!(
            c.to_json_value(),
            json!({"raw": "{\"aaaa\":", "truncated": true, "bytes": 19})
        );
    }
}
