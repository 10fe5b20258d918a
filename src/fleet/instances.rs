//! [`LocalInstances`]: the instances this node's own wa-hub reported last, recorded by
//! [`super::routing`] and read when a proxied call decides where the instance lives.

use std::collections::HashSet;

use parking_lot::RwLock;

/// The instances this node's wa-hub reported last.
#[derive(Debug, Default)]
pub struct LocalInstances {
    ids: RwLock<HashSet<String>>,
}

impl LocalInstances {
    /// Whether this node's wa-hub reported `id`.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.read().contains(id)
    }

    /// Replaces the recorded set with `ids` (a fresh `GET /instances` answer).
    pub fn replace(&self, ids: impl IntoIterator<Item = String>) {
        *self.ids.write() = ids.into_iter().collect();
    }
}
