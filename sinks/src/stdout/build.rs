//! How a `type: stdout` entry builds its sink: nothing to check beyond the common keys.

use crate::config::{BuildContext, BuildError, Built, SinkBuilder};

use super::sink::{StdoutConfig, StdoutSink};

impl SinkBuilder for StdoutConfig {
    fn build(&self, _cx: BuildContext<'_>) -> Result<Built, BuildError> {
        Ok(Built::sink(StdoutSink::new()))
    }
}
