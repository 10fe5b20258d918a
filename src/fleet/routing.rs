//! Proxy routing across the fleet: which node's wa-hub runs an instance, and the merged
//! instance list.
//!
//! Every `fleet.route_interval_ms` each node asks its own wa-hub for `GET /instances` and
//! records, in the status bucket: `route.<instance token>` = its node id for each instance,
//! `node.<node token>` = its `public_url`, and `instances.<node token>` = the list as wa-hub
//! gave it. A proxied call `/api/wahub/instances/<id>/...` for an instance this node's wa-hub
//! does not run, but another node's does, is forwarded to that node's `public_url` with
//! `Authorization: Bearer <fleet.fleet_token>` and [`HOP_HEADER`]; a forwarded call is never
//! forwarded again. An instance no node has recorded is looked up once more in this node's
//! wa-hub; one no node reports gets 404 `{"error":"Unknown instance", "message":...}`. `GET /api/wahub/instances` answers the merged list, each entry with `node`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::node::Fleet;
use super::subject::{decode_token, encode_token};
use crate::app::App;

/// Marks a call forwarded by another node (its node id): served here, never forwarded again.
pub const HOP_HEADER: &str = "x-wahub-fleet-hop";

/// Where a forwarded call goes.
#[derive(Debug, Clone)]
pub struct Forward {
    /// The node that runs the instance.
    pub node: String,
    /// Its address (resolved from its `public_url`).
    pub addr: SocketAddr,
    /// `Host` for it.
    pub authority: String,
    /// Path prefix of its `public_url`, without trailing slash.
    pub prefix: String,
}

/// What to do with a proxied call in fleet mode.
#[derive(Debug)]
pub enum Decision {
    /// Proxy to this node's wa-hub, as on a single node.
    Local,
    /// Forward to another node.
    Forward(Forward),
    /// Answer here: the merged list, or 404 for an instance on no known node.
    Answer(u16, Value),
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .or_else(|| list.get("instances").and_then(Value::as_array))
        .or_else(|| list.get("data").and_then(Value::as_array))
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Records this node's instances every `route_interval_ms` (first at once), forever.
pub async fn run(fleet: Arc<Fleet>, app: Arc<App>) {
    let every = Duration::from_millis(fleet.settings.raw.route_interval_ms.get());
    loop {
        record(&fleet, &app).await;
        tokio::time::sleep(every).await;
    }
}

/// Asks this node's wa-hub for its instances and records them (locally and in the bucket).
async fn record(fleet: &Fleet, app: &App) {
    let (Some(store), Some(list)) = (fleet.kv(), app.upstream.get_json(&["instances"]).await)
    else {
        return;
    };
    let ids = ids_of(&list);
    fleet.local_instances.replace(ids.iter().cloned());
    let node = encode_token(fleet.node_id());
    let url = fleet
        .settings
        .raw
        .public_url
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_default();
    let mut ok = store
        .put(format!("node.{node}"), Bytes::from(url))
        .await
        .is_ok();
    ok &= store
        .put(
            format!("instances.{node}"),
            Bytes::from(serde_json::to_vec(&list).unwrap_or_default()),
        )
        .await
        .is_ok();
    for id in &ids {
        let key = format!("route.{}", encode_token(id));
        let mine =
            matches!(store.get(key.as_str()).await, Ok(Some(v)) if v == fleet.node_id().as_bytes());
        if !mine {
            ok &= store
                .put(key, Bytes::from(fleet.node_id().to_owned()))
                .await
                .is_ok();
        }
    }
    if !ok {
        tracing::warn!("fleet: instance routes not all written; retrying");
    }
}

/// Whether `authorization` is `Bearer <fleet.fleet_token>` (constant-time).
pub fn is_fleet_token(fleet: &Fleet, authorization: Option<&[u8]>) -> bool {
    let (Some(token), Some(value)) = (&fleet.settings.raw.fleet_token, authorization) else {
        return false;
    };
    crate::auth::bearer_token(value).is_some_and(|t| bool::from(t.ct_eq(token.expose().as_bytes())))
}

/// Decides where a proxied call goes: `method` and `path` (the wa-hub path after
/// `/api/wahub`), `forwarded` when it carries [`HOP_HEADER`].
pub async fn decide(
    fleet: &Arc<Fleet>,
    app: &Arc<App>,
    method: &http::Method,
    path: &str,
    forwarded: bool,
) -> Decision {
    if forwarded {
        return Decision::Local;
    }
    let bare = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    if method == http::Method::GET && bare == "/instances" {
        let (f, a) = (fleet.clone(), app.clone());
        let merged = fleet
            .handle()
            .spawn(async move { merged_instances(&f, &a).await })
            .await
            .unwrap_or_else(|_| json!([]));
        return Decision::Answer(200, merged);
    }
    let Some(id) = crate::routes::instance_id(path) else {
        return Decision::Local;
    };
    if fleet.local_instances.contains(&id) {
        return Decision::Local;
    }
    let (f, a, id2) = (fleet.clone(), app.clone(), id.clone());
    let found = fleet
        .handle()
        .spawn(async move {
            match locate(&f, &id2).await {
                Some(found) => Some(found),
                // Not recorded yet (a new instance, or before the first round): ask this
                // node's wa-hub again before calling it unknown.
                None => {
                    record(&f, &a).await;
                    if f.local_instances.contains(&id2) {
                        Some(Located::Here)
                    } else {
                        locate(&f, &id2).await
                    }
                }
            }
        })
        .await
        .ok()
        .flatten();
    match found {
        Some(Located::Here) => Decision::Local,
        Some(Located::There(fwd)) => Decision::Forward(fwd),
        Some(Located::NoUrl(node)) => Decision::Answer(
            502,
            json!({"error": "Bad Gateway", "message": format!("instance {id} is on node {node}, which has no fleet.public_url")}),
        ),
        None => Decision::Answer(
            404,
            json!({"error": "Unknown instance", "message": format!("instance {id} is on no known fleet node")}),
        ),
    }
}

enum Located {
    Here,
    There(Forward),
    NoUrl(String),
}

async fn locate(fleet: &Fleet, id: &str) -> Option<Located> {
    let store = fleet.kv()?;
    let node = store
        .get(format!("route.{}", encode_token(id)))
        .await
        .ok()
        .flatten()?;
    let node = String::from_utf8(node.to_vec()).ok()?;
    if node == fleet.node_id() {
        return Some(Located::Here);
    }
    let url = store
        .get(format!("node.{}", encode_token(&node)))
        .await
        .ok()
        .flatten()
        .and_then(|u| url::Url::parse(std::str::from_utf8(&u).ok()?).ok());
    let Some(url) = url else {
        return Some(Located::NoUrl(node));
    };
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()?
        .next()?;
    Some(Located::There(Forward {
        authority: match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        },
        prefix: url.path().trim_end_matches('/').to_owned(),
        addr,
        node,
    }))
}

/// Every node's instance list, each entry with `node`: this node's from its wa-hub now, the
/// others' as they last recorded them.
async fn merged_instances(fleet: &Fleet, app: &App) -> Value {
    let mut lists: BTreeMap<String, Value> = BTreeMap::new();
    if let Some(store) = fleet.kv() {
        if let Ok(mut keys) = store.keys().await {
            let mut wanted = Vec::new();
            while let Some(Ok(k)) = keys.next().await {
                if let Some(node) = k.strip_prefix("instances.").and_then(decode_token) {
                    wanted.push((node, k));
                }
            }
            for (node, key) in wanted {
                if let Ok(Some(body)) = store.get(key.as_str()).await {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        lists.insert(node, v);
                    }
                }
            }
        }
    }
    if let Some(list) = app.upstream.get_json(&["instances"]).await {
        lists.insert(fleet.node_id().to_owned(), list);
    }
    let mut out = Vec::new();
    for (node, list) in lists {
        let items = list
            .as_array()
            .or_else(|| list.get("instances").and_then(Value::as_array))
            .or_else(|| list.get("data").and_then(Value::as_array))
            .cloned()
            .unwrap_or_default();
        for mut item in items {
            if let Some(obj) = item.as_object_mut() {
                obj.insert("node".into(), Value::String(node.clone()));
                out.push(item);
            }
        }
    }
    Value::Array(out)
}
