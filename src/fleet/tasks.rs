//! Starting fleet mode's background tasks on the fleet runtime: the publisher (the outbox to
//! the stream), the routing recorder, the consumer (the stream into the local bus), the
//! outage corrections, the link probe and the presence refresh.

use std::sync::Arc;

use super::node::Fleet;
use crate::app::App;

/// Starts the publisher, the routing recorder, the consumer, the outage corrections, the link
/// probe and the presence refresh for `app`.
pub fn start(fleet: &Arc<Fleet>, app: Arc<App>) {
    let f = fleet.clone();
    fleet
        .handle()
        .spawn(async move { f.outbox.run(f.jetstream().clone(), f.sealer.clone()).await });
    let (f, a) = (fleet.clone(), app.clone());
    fleet
        .handle()
        .spawn(async move { super::routing::run(f, a).await });
    let (f, a) = (fleet.clone(), app.clone());
    fleet
        .handle()
        .spawn(async move { super::correct::run(f, a).await });
    let f = fleet.clone();
    fleet
        .handle()
        .spawn(async move { super::consume::run(f, app).await });
    let f = fleet.clone();
    fleet.handle().spawn(async move {
        let reachable = || f.kv().is_some() && f.client_state_connected();
        super::link::run(&f.link, f.jetstream(), &f.settings, reachable).await
    });
    let f = fleet.clone();
    fleet.handle().spawn(async move {
        let store = || f.kv().filter(|_| f.client_state_connected()).cloned();
        super::presence::run(&f.presence, f.node_id(), store).await
    });
}
