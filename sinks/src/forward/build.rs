//! How a `type: forward` entry builds its sink: webhooks only (`kinds` defaults to
//! `[webhook]`), one outbox file per sink, dead letters exposed for the service's routes.

use crate::config::{BuildContext, BuildError, Built, Exclusive, SinkBuilder};
use crate::envelope::Kind;

use super::config::ForwardConfig;
use super::sink::ForwardSink;

impl SinkBuilder for ForwardConfig {
    fn default_kinds(&self) -> Vec<Kind> {
        vec![Kind::Webhook]
    }

    fn check(&self, _name: &str, kinds: &[Kind]) -> Result<(), BuildError> {
        Ok(ForwardConfig::check(self, kinds)?)
    }

    fn exclusive(&self, name: &str) -> Option<Exclusive> {
        Some(Exclusive {
            what: format!("outbox_path: {}", self.outbox_file(name).display()),
        })
    }

    fn build(&self, cx: BuildContext<'_>) -> Result<Built, BuildError> {
        let sink = ForwardSink::new(cx.name, self.clone(), cx.stats)?;
        let handle = sink.handle();
        let mut built = Built::sink(sink);
        built.dead_letters = Some(handle);
        Ok(built)
    }
}
