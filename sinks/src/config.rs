//! The `sinks:` config list and building the router from it. Adding a sink means one module
//! and one [`SinkKind`] arm.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::filter::{Filter, Kind, PatternError};
use crate::forward::{ForwardConfig, ForwardError, ForwardHandle, ForwardSink};
use crate::mqtt::{MqttConfig, MqttConfigError, MqttSink};
use crate::router::{Router, SinkSpec, SinkStats, SinkTask};
use crate::sse::{SseConfig, SseHub, SseSink};
use crate::stdout::{StdoutConfig, StdoutSink};

/// Default capacity of each sink's queue, events.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// One `sinks:` entry: the common keys, then the sink's own keys beside `type`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SinkConfig {
    /// Unique name; defaults to the type (`sse`, `stdout`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// Event kinds received (`webhook`, `apiLog`, `qr`, `status`); empty: all.
    #[serde(default)]
    pub kinds: Vec<Kind>,
    /// Webhook event-name globs (`*` allowed); empty: all. Other kinds ignore it.
    #[serde(default)]
    pub events: Vec<String>,
    /// Instance-id globs; empty: all.
    #[serde(default)]
    pub instances: Vec<String>,
    /// Events queued for the sink before further ones are dropped for it. Default 10000.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// The sink type and its settings.
    #[serde(flatten)]
    pub kind: SinkKind,
}

fn default_queue_capacity() -> usize {
    DEFAULT_QUEUE_CAPACITY
}

/// The sink types.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// Server-Sent Events for browsers at `GET /api/stream`.
    Sse(SseConfig),
    /// NDJSON on standard output.
    Stdout(StdoutConfig),
    /// Each webhook's raw bytes POSTed to a URL, through a durable outbox.
    Forward(ForwardConfig),
    /// Publishes to an MQTT broker (webhooks, retained statuses, availability).
    Mqtt(MqttConfig),
}

impl SinkKind {
    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::Sse(_) => "sse",
            SinkKind::Stdout(_) => "stdout",
            SinkKind::Forward(_) => "forward",
            SinkKind::Mqtt(_) => "mqtt",
        }
    }
}

impl SinkConfig {
    /// The sink's name: `name`, else the type.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| self.kind.type_name().to_owned())
    }
}

/// Why the sink list was refused. Each names the sink (`sinks[i]` and its name).
#[derive(Debug, thiserror::Error)]
pub enum SinksConfigError {
    /// Two sinks share a name.
    #[error("sinks[{index}]: name `{name}` is used twice; give each sink a unique `name`")]
    DuplicateName {
        /// Position in the list.
        index: usize,
        /// The name.
        name: String,
    },
    /// More than one SSE sink.
    #[error("sinks[{index}]: only one sink of type sse is allowed")]
    SecondSse {
        /// Position in the list.
        index: usize,
    },
    /// A filter glob is malformed.
    #[error("sinks[{index}] ({name}): {source}")]
    Pattern {
        /// Position in the list.
        index: usize,
        /// The sink's name.
        name: String,
        /// The glob error.
        source: PatternError,
    },
    /// An MQTT sink's settings are not acceptable.
    #[error("sinks[{index}] ({name}): {source}")]
    Mqtt {
        /// Position in the list.
        index: usize,
        /// The sink's name.
        name: String,
        /// What is wrong, naming the key.
        source: MqttConfigError,
    },
    /// A forward sink's settings are wrong (the reason names the key).
    #[error("sinks[{index}] ({name}): {reason}")]
    Forward {
        /// Position in the list.
        index: usize,
        /// The sink's name.
        name: String,
        /// What is wrong, starting with the key.
        reason: String,
    },
    /// A forward sink could not be set up: its outbox is unwritable, locked by another
    /// process or unreadable, or TLS could not be initialised.
    #[error("sinks[{index}] ({name}): {source}")]
    ForwardSetup {
        /// Position in the list.
        index: usize,
        /// The sink's name.
        name: String,
        /// What failed.
        source: ForwardError,
    },
    /// `queue_capacity` is 0.
    #[error("sinks[{index}] ({name}): queue_capacity must be at least 1")]
    ZeroQueue {
        /// Position in the list.
        index: usize,
        /// The sink's name.
        name: String,
    },
}

/// Checks the list without building anything.
///
/// # Errors
/// The first [`SinksConfigError`] found.
pub fn validate(configs: &[SinkConfig]) -> Result<(), SinksConfigError> {
    let mut names = HashSet::new();
    let mut outboxes = HashSet::new();
    let mut sse = false;
    for (index, c) in configs.iter().enumerate() {
        let name = c.name();
        if !names.insert(name.clone()) {
            return Err(SinksConfigError::DuplicateName { index, name });
        }
        if matches!(c.kind, SinkKind::Sse(_)) {
            if sse {
                return Err(SinksConfigError::SecondSse { index });
            }
            sse = true;
        }
        if c.queue_capacity == 0 {
            return Err(SinksConfigError::ZeroQueue { index, name });
        }
        if let SinkKind::Mqtt(cfg) = &c.kind {
            cfg.validate().map_err(|source| SinksConfigError::Mqtt {
                index,
                name: name.clone(),
                source,
            })?;
        }
        if let SinkKind::Forward(f) = &c.kind {
            let reason = if let Err(reason) = f.check() {
                Some(reason)
            } else if c.kinds.iter().any(|k| *k != Kind::Webhook) {
                Some(
                    "kinds: a forward sink sends webhooks only; list just `webhook` or nothing"
                        .into(),
                )
            } else if !outboxes.insert(f.outbox_file(&name)) {
                Some(format!(
                    "outbox_path: {} is used by another forward sink",
                    f.outbox_file(&name).display()
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(SinksConfigError::Forward {
                    index,
                    name,
                    reason,
                });
            }
        }
        Filter::new(&c.kinds, &c.events, &c.instances).map_err(|source| {
            SinksConfigError::Pattern {
                index,
                name,
                source,
            }
        })?;
    }
    Ok(())
}

/// The sinks, built: the router the bus dispatches to, the tasks to run, the SSE hub when an
/// SSE sink is configured, and a handle per forward sink.
pub struct BuiltSinks {
    /// Dispatch side.
    pub router: Router,
    /// One task per sink, to run with [`crate::router::supervise`].
    pub tasks: Vec<SinkTask>,
    /// The SSE hub, for the stream endpoint.
    pub sse: Option<Arc<SseHub>>,
    /// Forward sinks by name, for the dead-letter routes.
    pub forward: BTreeMap<String, ForwardHandle>,
}

/// Builds every configured sink. Forward sinks open their outbox here (creating it and its
/// directories), so a bad location stops start-up before any port is bound. A forward sink
/// whose `kinds` is empty gets `[webhook]`: it receives webhooks only.
///
/// # Errors
/// What [`validate`] reports, and [`SinksConfigError::ForwardSetup`].
pub fn build(configs: &[SinkConfig]) -> Result<BuiltSinks, SinksConfigError> {
    validate(configs)?;
    let mut specs = Vec::with_capacity(configs.len());
    let mut sse = None;
    let mut forward = BTreeMap::new();
    for (index, c) in configs.iter().enumerate() {
        let name = c.name();
        let kinds = match (&c.kind, c.kinds.is_empty()) {
            (SinkKind::Forward(_), true) => vec![Kind::Webhook],
            _ => c.kinds.clone(),
        };
        let filter = Filter::new(&kinds, &c.events, &c.instances).map_err(|source| {
            SinksConfigError::Pattern {
                index,
                name: name.clone(),
                source,
            }
        })?;
        let stats = Arc::new(SinkStats::default());
        let sink: Box<dyn crate::Sink> = match &c.kind {
            SinkKind::Sse(cfg) => {
                let hub = Arc::new(SseHub::new(cfg.clone(), filter.clone()));
                sse = Some(hub.clone());
                Box::new(SseSink::new(hub))
            }
            SinkKind::Stdout(_) => Box::new(StdoutSink::new()),
            SinkKind::Mqtt(cfg) => {
                let settings = cfg.validate().map_err(|source| SinksConfigError::Mqtt {
                    index,
                    name: name.clone(),
                    source,
                })?;
                Box::new(MqttSink::new(name.clone(), settings, stats.clone()))
            }
            SinkKind::Forward(cfg) => {
                let sink =
                    ForwardSink::new(&name, cfg.clone(), stats.clone()).map_err(|source| {
                        SinksConfigError::ForwardSetup {
                            index,
                            name: name.clone(),
                            source,
                        }
                    })?;
                forward.insert(name.clone(), sink.handle());
                Box::new(sink)
            }
        };
        specs.push(SinkSpec {
            name,
            kind: c.kind.type_name(),
            filter,
            queue_capacity: c.queue_capacity,
            sink,
            stats,
        });
    }
    let (router, tasks) = Router::new(specs);
    Ok(BuiltSinks {
        router,
        tasks,
        sse,
        forward,
    })
}
