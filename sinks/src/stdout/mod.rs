//! The stdout sink: one JSON object per line (NDJSON) per event, flushed per line.

mod sink;

pub use sink::{ndjson_line, StdoutConfig, StdoutSink};
