//! How the `type: sse` entry builds its sink: one hub per process (it serves
//! `GET /api/stream`), fed by the sink and exposed to the service.

use std::sync::Arc;

use crate::config::{BuildContext, BuildError, Built, Exclusive, SinkBuilder};

use super::config::{SseConfig, MAX_CLIENT_BACKLOG};
use super::hub::{SseHub, SseSink};

impl SinkBuilder for SseConfig {
    fn check(&self, _name: &str, _kinds: &[crate::Kind]) -> Result<(), BuildError> {
        if self.client_backlog.get() > MAX_CLIENT_BACKLOG {
            return Err(BuildError::Invalid {
                key: "client_backlog",
                reason: format!(
                    "{} is over {MAX_CLIENT_BACKLOG} (events a client may fall behind)",
                    self.client_backlog
                ),
            });
        }
        Ok(())
    }

    fn exclusive(&self, _name: &str) -> Option<Exclusive> {
        Some(Exclusive {
            what: "the SSE endpoint GET /api/stream (only one sink of type sse is allowed)"
                .to_owned(),
        })
    }

    fn build(&self, cx: BuildContext<'_>) -> Result<Built, BuildError> {
        let hub = Arc::new(SseHub::new(self.clone(), cx.filter.clone()));
        let mut built = Built::sink(SseSink::new(hub.clone()));
        built.hub = Some(hub);
        Ok(built)
    }
}
