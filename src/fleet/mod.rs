//! Fleet mode (issue 12): many sidecars act as one over NATS JetStream.
//!
//! Every event a node accepts is published once to one stream ([`publish`], [`codec`],
//! subjects by [`subject`]); every node consumes the whole stream into its bus ([`consume`]),
//! so SSE ids are stream sequences and [`resume`] serves a `Last-Event-ID` from any node; statuses live in a KV bucket ([`kv`]). [`setup`] creates
//! and checks the stream and bucket, [`node`] holds the link, [`config`] the `fleet:` keys,
//! [`metrics`] the `wa_hub_sidecar_fleet_*` metrics, [`routing`] sends proxied calls to the
//! node whose wa-hub runs the instance ([`instances`] what this node's wa-hub runs), [`tasks`]
//! starts the background tasks, [`correct`] fixes what a node showed alone during an outage,
//! [`link`] probes JetStream (a stalled server, a lost store), [`presence`] keeps one live
//! process per `node_id`.
//! Without `fleet:` nothing here runs.

pub mod codec;
pub mod config;
pub mod consume;
pub mod correct;
pub mod instances;
pub mod kv;
pub mod link;
pub mod metrics;
pub mod node;
pub mod presence;
pub mod publish;
pub mod resume;
pub mod routing;
pub mod setup;
pub mod subject;
pub mod tasks;

pub use config::{FleetConfig, FleetSettings};
pub use node::Fleet;
pub use setup::FleetError;
