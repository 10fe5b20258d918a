//! The stdout sink: one JSON object per line (NDJSON) per event, flushed as soon as the
//! sink's queue is empty.

mod build;
mod sink;

pub use sink::{ndjson_line, StdoutConfig, StdoutSink};
