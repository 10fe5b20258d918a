//! How a `type: mqtt` entry builds its sink: settings validated into [`MqttSettings`] first
//! (every value checked before a rumqttc setter that asserts), nothing connects until the
//! router starts the sink.
//!
//! [`MqttSettings`]: super::MqttSettings

use crate::config::{BuildContext, BuildError, Built, SinkBuilder};
use crate::envelope::Kind;

use super::config::MqttConfig;
use super::sink::MqttSink;

impl SinkBuilder for MqttConfig {
    fn check(&self, _name: &str, _kinds: &[Kind]) -> Result<(), BuildError> {
        self.validate()?;
        Ok(())
    }

    fn build(&self, cx: BuildContext<'_>) -> Result<Built, BuildError> {
        let settings = self.validate()?;
        Ok(Built::sink(MqttSink::new(cx.name, settings, cx.stats)))
    }
}
