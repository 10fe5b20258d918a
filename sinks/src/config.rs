//! The `sinks:` config list, and building the router and the sinks from it.
//!
//! Each sink's config implements [`SinkBuilder`]: it checks its own settings and builds its
//! sink (Vector's `SinkConfig::build`). This module only runs the common checks (unique names,
//! queue sizes, filters, resources only one sink may hold) and one loop over the list. Adding a
//! sink means its folder and one [`SinkKind`] arm.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::envelope::Kind;
use crate::filter::{Filter, PatternError};
use crate::forward::{ForwardConfig, ForwardConfigError, ForwardError, ForwardHandle};
use crate::mqtt::{MqttConfig, MqttConfigError};
use crate::router::{Router, SinkSpec, SinkStats, SinkTask};
use crate::sink::Sink;
use crate::sse::{SseConfig, SseHub};
use crate::stdout::StdoutConfig;

/// Default capacity of each sink's queue, events.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// One `sinks:` entry: the common keys, then the sink's own keys beside `type`. Public
/// interface (config keys): changes only with a note in the README.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SinkConfig {
    /// Unique name; defaults to the type (`sse`, `stdout`, ...).
    #[serde(default)]
    pub name: Option<String>,
    /// Event kinds received (`webhook`, `apiLog`, `qr`, `status`); empty: the sink's default
    /// ([`SinkBuilder::default_kinds`]), all kinds for most sinks.
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

/// Largest `queue_capacity`, events. A queue takes memory only for what it holds, but tokio's
/// bounded channel refuses (panics on) a capacity above `usize::MAX >> 3`, and a sink that far
/// behind is better dropping than holding gigabytes.
pub const MAX_QUEUE_CAPACITY: usize = 10_000_000;

fn default_queue_capacity() -> usize {
    DEFAULT_QUEUE_CAPACITY
}

/// The sink types: the `type` key of a `sinks:` entry.
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

    /// The sink's own config, as a builder.
    pub fn builder(&self) -> &dyn SinkBuilder {
        match self {
            SinkKind::Sse(c) => c,
            SinkKind::Stdout(c) => c,
            SinkKind::Forward(c) => c,
            SinkKind::Mqtt(c) => c,
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

    /// The kinds the sink receives: `kinds`, else its builder's default.
    pub fn effective_kinds(&self) -> Vec<Kind> {
        if self.kinds.is_empty() {
            self.kind.builder().default_kinds()
        } else {
            self.kinds.clone()
        }
    }
}

/// What a sink's config gets to build its sink.
pub struct BuildContext<'a> {
    /// The sink's unique name.
    pub name: &'a str,
    /// The sink's compiled filter (the router applies it; a sink may use it too).
    pub filter: &'a Filter,
    /// The sink's counters, shared with the router.
    pub stats: Arc<SinkStats>,
}

/// A sink, built, and what the service keeps of it besides.
pub struct Built {
    /// The sink the router runs.
    pub sink: Box<dyn Sink>,
    /// The SSE hub, for the sink that serves `GET /api/stream`.
    pub hub: Option<Arc<SseHub>>,
    /// Access to the sink's dead letters, for a sink that keeps them.
    pub dead_letters: Option<ForwardHandle>,
}

impl Built {
    /// A sink with nothing else to expose.
    pub fn sink(sink: impl Sink) -> Self {
        Self {
            sink: Box::new(sink),
            hub: None,
            dead_letters: None,
        }
    }
}

/// Why a sink's own settings were refused or its sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A setting of a sink without a config error type of its own is out of range.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, e.g. `client_backlog`.
        key: &'static str,
        /// What is wrong, with the allowed range.
        reason: String,
    },
    /// An MQTT sink's settings are not acceptable (the message names the key).
    #[error(transparent)]
    Mqtt(#[from] MqttConfigError),
    /// A forward sink's settings are not acceptable (the message names the key).
    #[error(transparent)]
    Forward(#[from] ForwardConfigError),
    /// A forward sink could not be set up: its outbox is unwritable, locked by another
    /// process or unreadable, or TLS could not be initialised.
    #[error(transparent)]
    ForwardSetup(#[from] ForwardError),
}

/// A resource only one sink may hold (the SSE endpoint, an outbox file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Exclusive {
    /// What is held, e.g. `outbox_path: data/crm.redb`; identifies the resource.
    pub what: String,
}

/// Implemented by each sink's config: checks and builds that sink.
pub trait SinkBuilder {
    /// The kinds the sink receives when its `kinds` is empty. Default: every kind (empty list).
    fn default_kinds(&self) -> Vec<Kind> {
        Vec::new()
    }

    /// Checks the sink's own settings without side effects; `kinds` as configured.
    ///
    /// # Errors
    /// A [`BuildError`] naming the key.
    fn check(&self, _name: &str, _kinds: &[Kind]) -> Result<(), BuildError> {
        Ok(())
    }

    /// A resource this sink needs for itself, so two sinks cannot share it.
    fn exclusive(&self, _name: &str) -> Option<Exclusive> {
        None
    }

    /// Builds the sink. Called after [`SinkBuilder::check`] passed.
    ///
    /// # Errors
    /// A [`BuildError`] when the sink cannot be set up (e.g. its outbox cannot be opened).
    fn build(&self, cx: BuildContext<'_>) -> Result<Built, BuildError>;
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
    /// Two sinks need the same resource (a second SSE sink, a shared outbox file).
    #[error("sinks[{index}] ({name}): {what} is taken by another sink")]
    Shared {
        /// Position in the list.
        index: usize,
        /// The sink's name.
        name: String,
        /// The resource.
        what: String,
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
    /// The sink's own settings are wrong, or the sink could not be built.
    #[error("sinks[{index}] ({name}): {source}")]
    Sink {
        /// Position in the list.
        index: usize,
        /// The sink's name.
        name: String,
        /// What is wrong, naming the key.
        source: BuildError,
    },
    /// `queue_capacity` is 0 or above [`MAX_QUEUE_CAPACITY`].
    #[error(
        "sinks[{index}] ({name}): queue_capacity must be from 1 to {MAX_QUEUE_CAPACITY} (events)"
    )]
    QueueCapacity {
        /// Position in the list.
        index: usize,
        /// The sink's name.
        name: String,
    },
}

/// Checks the list without building anything; returns each sink's compiled filter.
///
/// # Errors
/// The first [`SinksConfigError`] found.
pub fn validate(configs: &[SinkConfig]) -> Result<Vec<Filter>, SinksConfigError> {
    let mut names = HashMap::new();
    let mut held = HashMap::new();
    let mut filters = Vec::with_capacity(configs.len());
    for (index, c) in configs.iter().enumerate() {
        let name = c.name();
        if names.insert(name.clone(), index).is_some() {
            return Err(SinksConfigError::DuplicateName { index, name });
        }
        if !(1..=MAX_QUEUE_CAPACITY).contains(&c.queue_capacity) {
            return Err(SinksConfigError::QueueCapacity { index, name });
        }
        let builder = c.kind.builder();
        if let Err(source) = builder.check(&name, &c.kinds) {
            return Err(SinksConfigError::Sink {
                index,
                name,
                source,
            });
        }
        if let Some(ex) = builder.exclusive(&name) {
            if held.insert(ex.clone(), index).is_some() {
                return Err(SinksConfigError::Shared {
                    index,
                    name,
                    what: ex.what,
                });
            }
        }
        let filter =
            Filter::new(&c.effective_kinds(), &c.events, &c.instances).map_err(|source| {
                SinksConfigError::Pattern {
                    index,
                    name,
                    source,
                }
            })?;
        filters.push(filter);
    }
    Ok(filters)
}

/// The sinks, built: the router the bus dispatches to, the tasks to run, the SSE hub when an
/// SSE sink is configured, and dead-letter access by sink name.
pub struct BuiltSinks {
    /// Dispatch side.
    pub router: Router,
    /// One task per sink, to run with [`crate::router::supervise`].
    pub tasks: Vec<SinkTask>,
    /// The SSE hub, for the stream endpoint.
    pub sse: Option<Arc<SseHub>>,
    /// Sinks that keep dead letters, by name, for the dead-letter routes.
    pub dead_letters: BTreeMap<String, ForwardHandle>,
}

/// Builds every configured sink, in order. Sinks with side effects at build time (a forward
/// sink opens its outbox, creating it and its directories) do them here, so a bad location
/// stops start-up before any port is bound.
///
/// # Errors
/// What [`validate`] reports, and [`SinksConfigError::Sink`] when a sink cannot be built.
pub fn build(configs: &[SinkConfig]) -> Result<BuiltSinks, SinksConfigError> {
    let filters = validate(configs)?;
    let mut specs = Vec::with_capacity(configs.len());
    let mut sse = None;
    let mut dead_letters = BTreeMap::new();
    for (index, (c, filter)) in configs.iter().zip(filters).enumerate() {
        let name = c.name();
        let stats = Arc::new(SinkStats::default());
        let built = c
            .kind
            .builder()
            .build(BuildContext {
                name: &name,
                filter: &filter,
                stats: stats.clone(),
            })
            .map_err(|source| SinksConfigError::Sink {
                index,
                name: name.clone(),
                source,
            })?;
        sse = sse.or(built.hub);
        if let Some(handle) = built.dead_letters {
            dead_letters.insert(name.clone(), handle);
        }
        specs.push(SinkSpec {
            name,
            kind: c.kind.type_name(),
            filter,
            queue_capacity: c.queue_capacity,
            sink: built.sink,
            stats,
        });
    }
    let (router, tasks) = Router::new(specs);
    Ok(BuiltSinks {
        router,
        tasks,
        sse,
        dead_letters,
    })
}
