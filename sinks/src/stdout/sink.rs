//! Config and task of the stdout sink.
//!
//! Each line is `{"id":<bus id>,"timestamp":"<ISO 8601>","type":T,"data":{...}}`: the SSE
//! envelope with the bus id and time added. serde_json escapes control characters, so no text
//! a webhook carries can split a line.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use crate::envelope::{iso_timestamp, Event};
use crate::sink::{Sink, SinkError};

/// `sinks: [{type: stdout}]` settings (the filter keys are common to every sink).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

/// Writes NDJSON lines to standard output (or any writer, for tests), through a buffer that
/// is flushed whenever the sink's queue is empty ([`Sink::flush`]): each line is flushed at
/// once when events trickle in, and lines are written in batches under load.
pub struct StdoutSink {
    out: BufWriter<Box<dyn AsyncWrite + Send + Unpin>>,
}

impl StdoutSink {
    /// A sink writing to the process's standard output.
    pub fn new() -> Self {
        Self::with_writer(Box::new(tokio::io::stdout()))
    }

    /// A sink writing to `out`.
    pub fn with_writer(out: Box<dyn AsyncWrite + Send + Unpin>) -> Self {
        Self {
            out: BufWriter::with_capacity(64 * 1024, out),
        }
    }
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

/// The NDJSON line of `event`, newline included. Reuses the event's cached envelope JSON.
pub fn ndjson_line(event: &Event) -> Vec<u8> {
    let envelope = event.envelope_json();
    let mut line = Vec::with_capacity(envelope.len() + 64);
    line.extend_from_slice(b"{\"id\":");
    line.extend_from_slice(event.id.to_string().as_bytes());
    line.extend_from_slice(b",\"timestamp\":\"");
    line.extend_from_slice(iso_timestamp(event.timestamp).as_bytes());
    line.extend_from_slice(b"\",");
    // The envelope is `{"type":...,"data":...}`: splice its members in after ours.
    line.extend_from_slice(envelope.get(1..).unwrap_or_default());
    line.push(b'\n');
    line
}

#[async_trait]
impl Sink for StdoutSink {
    async fn deliver(&mut self, event: &Arc<Event>) -> Result<(), SinkError> {
        self.out.write_all(&ndjson_line(event)).await?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.out.flush().await?;
        Ok(())
    }

    fn max_batch(&self) -> usize {
        crate::sink::LIVE_MAX_BATCH
    }

    fn batch_linger(&self) -> std::time::Duration {
        crate::sink::LIVE_BATCH_LINGER
    }

    async fn stop(&mut self) {
        let _ = self.out.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{api_log, webhook};
    use serde_json::Value;

    #[tokio::test]
    async fn lines_parse_back_to_the_envelope_with_id_and_time() {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let mut sink = StdoutSink::with_writer(Box::new(client));
        let events = [webhook(1, "message", Some("WASP-é")), api_log(2, None)];
        for e in &events {
            sink.deliver(e).await.unwrap();
        }
        sink.flush().await.unwrap();
        drop(sink);
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut server, &mut text)
            .await
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, e) in lines.iter().zip(&events) {
            let v: Value = serde_json::from_str(line).unwrap();
            let envelope: Value = serde_json::from_slice(e.envelope_json()).unwrap();
            assert_eq!(v["id"], e.id);
            assert_eq!(v["type"], envelope["type"]);
            assert_eq!(v["data"], envelope["data"]);
            assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        }
        assert!(lines[0].contains("héllo\\nworld"));
    }
}
