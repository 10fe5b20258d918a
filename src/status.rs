//! The display-status engine: one trustworthy status per instance, decided server-side.
//!
//! Pure logic: no I/O, and no clock except the `now` each call is given. It encodes section 5 of
//! the wa-hub dashboard reference as DESIGN.md ("Display status") summarises it:
//!
//! - Rank 0 disconnected (`disconnected`, `auth_failure`, `restricted`), 1 needs_qr (`qr`, and
//!   the default), 2 syncing (`authenticated`), 3 active (`ready`, `change_state` with status
//!   `CONNECTED`, or API status ready).
//! - `ready_timeout` and `change_state` with another status keep the current rank;
//!   `ready_timeout` marks the status as timed out.
//! - Precedence of the status word: last lifecycle webhook → instance meta (the instance list,
//!   `GET /instances`) → API `instanceStatus` → API `state` → `unknown`.
//! - The QR is shown only while the instance needs one (rank 1) and is not authenticating or
//!   initializing.
//! - Beyond the dashboard: non-lifecycle events (`message`, `vote_update`, unknown names) never
//!   change status or rank.
//!
//! Every change of the decided status is returned once, to be published as a `status` event;
//! an unchanged status returns nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use wa_hub_sinks::envelope::iso_timestamp;
use wa_hub_sinks::{InstanceStatus, QrEvent, Rank};

/// Rank when nothing says otherwise (needs_qr).
pub const DEFAULT_RANK: Rank = Rank::NeedsQr;

/// What one webhook does to an instance's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Sets the rank; the string is the status word shown.
    SetRank(Rank, String),
    /// Rank 0 with a reason (the sidecar's own rules for whatsapp-web.js states the dashboard
    /// reference ignores): `change_state` `UNPAIRED`/`UNPAIRED_IDLE` → `logged_out`,
    /// `TOS_BLOCK`/`SMB_TOS_BLOCK` → `banned`. The string is the status word shown.
    Lost(String, &'static str),
    /// Keeps the rank, shows a new status word (`change_state` other than the states above).
    KeepRank(String),
    /// `change_state` `CONFLICT` (the session is open elsewhere): keeps the rank, sets
    /// `conflict: true` until the next lifecycle event.
    Conflict,
    /// `change_state` `DEPRECATED_VERSION`: keeps the rank, sets a warning until the next
    /// event that sets the rank.
    Deprecated,
    /// `ready_timeout`: keeps rank and word, marks the status timed out.
    TimedOut,
    /// Not a lifecycle event: `message`, `vote_update`, unknown names.
    None,
}

/// Classifies a webhook by its `event` name and `data` (dashboard reference §5).
pub fn lifecycle(event: &str, data: &Value) -> Lifecycle {
    match event {
        "disconnected" | "auth_failure" | "restricted" => {
            Lifecycle::SetRank(Rank::Disconnected, event.to_owned())
        }
        "qr" => Lifecycle::SetRank(Rank::NeedsQr, "qr".to_owned()),
        "authenticated" => Lifecycle::SetRank(Rank::Syncing, "authenticated".to_owned()),
        "ready" => Lifecycle::SetRank(Rank::Active, "ready".to_owned()),
        "change_state" => match data.get("status").and_then(Value::as_str) {
            Some("CONNECTED") => Lifecycle::SetRank(Rank::Active, "CONNECTED".to_owned()),
            Some(s @ ("UNPAIRED" | "UNPAIRED_IDLE")) => Lifecycle::Lost(s.to_owned(), "logged_out"),
            Some(s @ ("TOS_BLOCK" | "SMB_TOS_BLOCK")) => Lifecycle::Lost(s.to_owned(), "banned"),
            Some("CONFLICT") => Lifecycle::Conflict,
            Some("DEPRECATED_VERSION") => Lifecycle::Deprecated,
            Some(other) => Lifecycle::KeepRank(other.to_owned()),
            None => Lifecycle::KeepRank("change_state".to_owned()),
        },
        "ready_timeout" => Lifecycle::TimedOut,
        _ => Lifecycle::None,
    }
}

/// Rank of a status word reported by the API or the instance list.
pub fn rank_of_word(word: &str) -> Rank {
    match word.to_ascii_lowercase().as_str() {
        "ready" | "connected" | "active" => Rank::Active,
        "authenticated" | "syncing" | "authenticating" | "loading" => Rank::Syncing,
        "disconnected" | "auth_failure" | "restricted" | "error" | "failed" | "logged_out"
        | "stopped" => Rank::Disconnected,
        _ => DEFAULT_RANK,
    }
}

/// Status words during which no QR is shown.
fn is_busy(word: &str) -> bool {
    matches!(
        word.to_ascii_lowercase().as_str(),
        "authenticating" | "initializing" | "authenticated" | "syncing" | "loading"
    )
}

/// What `GET /instances/<id>/client/status` reported.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiStatus {
    /// `instanceStatus`.
    pub instance_status: Option<String>,
    /// `state`.
    pub state: Option<String>,
    /// `readySource`.
    pub ready_source: Option<Value>,
    /// `authenticatedToReadyMs`.
    pub authenticated_to_ready_ms: Option<Value>,
    /// `readyWatchdogStartAt`.
    pub ready_watchdog_start_at: Option<Value>,
    /// `readyWatchdogMs`.
    pub ready_watchdog_ms: Option<Value>,
}

impl ApiStatus {
    /// Reads a client-status response body in either envelope: the documented
    /// `{"success":true,"data":{"clientStatus":{...}}}` or the real wa-hub's
    /// `{"clientStatus":{...},"status":"success"}` (fixtures README). `None` for anything else.
    pub fn from_response(body: &Value) -> Option<Self> {
        Self::from_json(&body.to_string())
    }

    /// [`ApiStatus::from_response`] on the body's text, as the proxy captured it. Only the
    /// `clientStatus` object's six fields are read into values; everything else is skipped
    /// without being built, so learning from a proxied status answer (every dashboard poll)
    /// costs a scan of the body, not a tree of it (issue 10's profile: the parse into a
    /// `Value` was 5 % of the status route's CPU).
    ///
    /// Rules: the body and `clientStatus` must be JSON objects (`clientStatus` at the top, or
    /// else under `data`); a text field that is not a string, and an extra that is `null`, is
    /// absent. A key given twice makes the body unreadable (`None`).
    pub fn from_json(body: &str) -> Option<Self> {
        let top: Envelope = object(body)?;
        let cs = match top.client_status.0 {
            Some(cs) => cs,
            None => object::<Envelope>(top.data.0?.get())?.client_status.0?,
        };
        let f: Fields = object(cs.get())?;
        let text = |raw: Raw| {
            raw.0
                .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        };
        let present = |raw: Raw| {
            raw.0
                .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
                .filter(|v| !v.is_null())
        };
        Some(Self {
            instance_status: text(f.instance_status),
            state: text(f.state),
            ready_source: present(f.ready_source),
            authenticated_to_ready_ms: present(f.authenticated_to_ready_ms),
            ready_watchdog_start_at: present(f.ready_watchdog_start_at),
            ready_watchdog_ms: present(f.ready_watchdog_ms),
        })
    }
}

/// `text` read as the JSON object `T`; `None` when it is not an object (a struct would also
/// take an array, field by position) or does not fit.
fn object<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Option<T> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// A JSON value left as text; `None` when the key is absent (a `null` value is kept as the text
/// `null`, unlike `Option`, so `"clientStatus": null` does not fall back to `data`).
#[derive(Clone, Copy, Default)]
struct Raw<'a>(Option<&'a serde_json::value::RawValue>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Raw<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a serde_json::value::RawValue>::deserialize(d).map(|r| Raw(Some(r)))
    }
}

/// Either status envelope's keys: `clientStatus`, or `data` holding it.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "clientStatus", default, borrow)]
    client_status: Raw<'a>,
    #[serde(default, borrow)]
    data: Raw<'a>,
}

/// The `clientStatus` keys the engine reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields<'a> {
    #[serde(default, borrow)]
    instance_status: Raw<'a>,
    #[serde(default, borrow)]
    state: Raw<'a>,
    #[serde(default, borrow)]
    ready_source: Raw<'a>,
    #[serde(default, borrow)]
    authenticated_to_ready_ms: Raw<'a>,
    #[serde(default, borrow)]
    ready_watchdog_start_at: Raw<'a>,
    #[serde(default, borrow)]
    ready_watchdog_ms: Raw<'a>,
}

/// Longest client-status answer whose text the engine remembers (bytes): wa-hub's are a few
/// hundred bytes, so every real one is remembered, and the memory stays bounded by
/// `max_instances` times this.
pub const MAX_REMEMBERED_TEXT: usize = 4096;

/// What the engine can learn from a successful proxied `GET` (dashboard reference §5: the API
/// and the instance list are status sources).
#[derive(Debug, Clone, PartialEq)]
pub enum ApiKnowledge {
    /// `GET /instances/<id>/client/status`: that instance's API status, and the answer's text
    /// when it is short enough to remember ([`StatusEngine::knows_api_text`]).
    ClientStatus(String, ApiStatus, Option<Box<str>>),
    /// `GET /instances`: the instance list.
    InstanceList(Value),
}

impl ApiKnowledge {
    /// Whether a proxied call to `path` (wa-hub path, query ignored) can carry a status: the
    /// two status routes. Lets the proxy skip parsing every other answer.
    pub fn route_carries_status(path: &str) -> bool {
        let path = path.split('?').next().unwrap_or_default();
        path == "/instances" || path == "/instances/" || client_status_id(path).is_some()
    }

    /// What a successful `GET` of wa-hub `path` (query ignored) answering `body` teaches, for
    /// instance `instance_id` (decoded from the path). `None` for other routes or bodies that
    /// are not a status.
    pub fn from_response(path: &str, instance_id: Option<&str>, body: &str) -> Option<Self> {
        let path = path.split('?').next().unwrap_or_default();
        if path == "/instances" || path == "/instances/" {
            return serde_json::from_str::<Value>(body)
                .ok()
                .map(ApiKnowledge::InstanceList);
        }
        client_status_id(path)?;
        let id = instance_id?.to_owned();
        let text = (body.len() <= MAX_REMEMBERED_TEXT).then(|| body.into());
        ApiStatus::from_json(body).map(|api| ApiKnowledge::ClientStatus(id, api, text))
    }
}

/// The raw id of exactly `/instances/<id>/client/status`, with or without a trailing `/`
/// (wa-hub's Express router answers both alike).
fn client_status_id(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/instances/")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let id = rest.strip_suffix("/client/status")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// Everything the engine knows of one instance.
#[derive(Debug, Clone, Default)]
struct Instance {
    /// Status word and rank from the last lifecycle webhook.
    webhook: Option<(String, Rank)>,
    /// `status` from the instance list.
    meta_status: Option<String>,
    api: Option<ApiStatus>,
    /// The proxied answer text `api` was learned from; `None` when `api` came from elsewhere
    /// (the QR poller) or the text was too long to keep.
    api_text: Option<Box<str>>,
    qr: Option<String>,
    qr_error: Option<String>,
    timed_out: bool,
    /// Why rank 0, by the sidecar's own rules (`logged_out`, `banned`).
    reason: Option<&'static str>,
    /// `change_state` CONFLICT seen since the last lifecycle event.
    conflict: bool,
    /// A warning to show (`DEPRECATED_VERSION`).
    warning: Option<&'static str>,
    last_event_at: Option<DateTime<Utc>>,
    /// The status last returned as a change.
    decided: Option<InstanceStatus>,
}

/// What the engine knows of one instance, borrowed: see [`StatusEngine::views`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceView<'a> {
    /// The instance id.
    pub id: &'a str,
    /// The decided rank; `None` before a status was decided.
    pub rank: Option<Rank>,
    /// Status word and rank of the last lifecycle webhook (the dashboard's `waStatus`,
    /// `lifecycleRank`).
    pub lifecycle: Option<(&'a str, Rank)>,
    /// When its last webhook arrived.
    pub last_event_at: Option<DateTime<Utc>>,
    /// The QR to show (base64 PNG, or raw QR text), when known.
    pub qr: Option<&'a str>,
    /// The last QR failure reported by wa-hub.
    pub qr_error: Option<&'a str>,
}

/// The warning a `change_state` `DEPRECATED_VERSION` sets.
pub const DEPRECATED_WARNING: &str =
    "whatsapp-web.js reports DEPRECATED_VERSION: WhatsApp Web may stop working; update wa-hub";

impl Instance {
    /// Keeps the QR (or the QR error) of a `qr` webhook; the `qr` event when it carried one.
    fn record_qr(&mut self, id: &str, data: &Value) -> Option<QrEvent> {
        let mut event = None;
        if let Some(qr) = data.get("qr").and_then(Value::as_str) {
            self.qr = Some(qr.to_owned());
            self.qr_error = None;
            event = Some(QrEvent {
                instance_id: id.to_owned(),
                qr: qr.to_owned(),
                classification: "READY",
            });
        }
        if let Some(err) = data.get("error") {
            self.qr_error = Some(match err.as_str() {
                Some(s) => s.to_owned(),
                None => err.to_string(),
            });
        }
        event
    }
}

/// What a webhook produced besides being stored.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// The new status, when it changed.
    pub status: Option<InstanceStatus>,
    /// A `qr` event, for a `qr` webhook carrying `data.qr`.
    pub qr: Option<QrEvent>,
}

/// The engine: per-instance knowledge, bounded to `max_instances` instances.
#[derive(Debug)]
pub struct StatusEngine {
    instances: BTreeMap<String, Instance>,
    max_instances: usize,
}

impl StatusEngine {
    /// An engine tracking at most `max_instances` instances; events for further instances are
    /// ignored by the engine (they are still stored and routed by the caller).
    pub fn new(max_instances: usize) -> Self {
        Self {
            instances: BTreeMap::new(),
            max_instances,
        }
    }

    fn entry(&mut self, id: &str) -> Option<&mut Instance> {
        if !self.instances.contains_key(id) && self.instances.len() >= self.max_instances {
            return None;
        }
        Some(self.instances.entry(id.to_owned()).or_default())
    }

    /// Applies one webhook `event` with its `data` for instance `id`, received at `now`.
    pub fn apply_webhook(
        &mut self,
        id: &str,
        event: &str,
        data: &Value,
        now: DateTime<Utc>,
    ) -> Outcome {
        let Some(inst) = self.entry(id) else {
            return Outcome::default();
        };
        inst.last_event_at = Some(now);
        let mut qr_event = None;
        let lifecycle = lifecycle(event, data);
        if !matches!(lifecycle, Lifecycle::None | Lifecycle::TimedOut) {
            inst.timed_out = false;
            inst.conflict = false;
        }
        match lifecycle {
            Lifecycle::None => return Outcome::default(),
            Lifecycle::TimedOut => inst.timed_out = true,
            Lifecycle::Conflict => {
                inst.conflict = true;
                inst.webhook = Some(("CONFLICT".to_owned(), current_rank(inst)));
            }
            Lifecycle::Deprecated => {
                inst.warning = Some(DEPRECATED_WARNING);
                inst.webhook = Some(("DEPRECATED_VERSION".to_owned(), current_rank(inst)));
            }
            Lifecycle::KeepRank(word) => {
                let rank = current_rank(inst);
                inst.webhook = Some((word, rank));
            }
            Lifecycle::Lost(word, reason) => {
                inst.webhook = Some((word, Rank::Disconnected));
                inst.reason = Some(reason);
                inst.warning = None;
            }
            Lifecycle::SetRank(rank, word) => {
                inst.webhook = Some((word, rank));
                inst.reason = None;
                inst.warning = None;
                if event == "qr" {
                    qr_event = inst.record_qr(id, data);
                } else if rank >= Rank::Syncing {
                    // A QR is single-use: once authenticated it is stale.
                    inst.qr = None;
                    inst.qr_error = None;
                }
            }
        }
        Outcome {
            status: self.decide(id, now),
            qr: qr_event,
        }
    }

    /// Learns from a client-status API response for instance `id`.
    pub fn apply_api_status(
        &mut self,
        id: &str,
        api: ApiStatus,
        now: DateTime<Utc>,
    ) -> Option<InstanceStatus> {
        let inst = self.entry(id)?;
        inst.api_text = None;
        if inst.api.as_ref() == Some(&api) {
            return None;
        }
        inst.api = Some(api);
        self.decide(id, now)
    }

    /// Whether `text` is the very answer instance `id`'s current API status was learned from
    /// by [`StatusEngine::learn`]: learning it again would change nothing, so the proxy skips
    /// reading it (issue 10: a dashboard polls each instance's status every few seconds, and
    /// the answer rarely changes).
    pub fn knows_api_text(&self, id: &str, text: &str) -> bool {
        self.instances
            .get(id)
            .and_then(|i| i.api_text.as_deref())
            .is_some_and(|known| known == text)
    }

    /// Learns from an instance-list response (`GET /instances`: `[{"id","status",...}]`).
    /// Returns the statuses that changed.
    pub fn apply_instance_list(&mut self, body: &Value, now: DateTime<Utc>) -> Vec<InstanceStatus> {
        let Some(list) = body
            .as_array()
            .or_else(|| body.get("instances").and_then(Value::as_array))
            .or_else(|| body.get("data").and_then(Value::as_array))
        else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for item in list {
            let (Some(id), Some(status)) = (
                item.get("id").and_then(Value::as_str),
                item.get("status").and_then(Value::as_str),
            ) else {
                continue;
            };
            let Some(inst) = self.entry(id) else { continue };
            if inst.meta_status.as_deref() == Some(status) {
                continue;
            }
            inst.meta_status = Some(status.to_owned());
            changed.extend(self.decide(id, now));
        }
        changed
    }

    /// Learns what a proxied answer carried; returns the statuses that changed.
    pub fn learn(&mut self, knowledge: ApiKnowledge, now: DateTime<Utc>) -> Vec<InstanceStatus> {
        match knowledge {
            ApiKnowledge::ClientStatus(id, api, text) => {
                let changed = self.apply_api_status(&id, api, now);
                if let Some(inst) = self.instances.get_mut(&id) {
                    inst.api_text = text;
                }
                changed.into_iter().collect()
            }
            ApiKnowledge::InstanceList(body) => self.apply_instance_list(&body, now),
        }
    }

    /// Records a QR fetched from the API (QR fallback). Returns the `qr` event and the status
    /// change it caused.
    pub fn apply_fetched_qr(&mut self, id: &str, qr: &str, now: DateTime<Utc>) -> Outcome {
        let Some(inst) = self.entry(id) else {
            return Outcome::default();
        };
        if inst.qr.as_deref() == Some(qr) {
            return Outcome::default();
        }
        inst.qr = Some(qr.to_owned());
        Outcome {
            status: self.decide(id, now),
            qr: Some(QrEvent {
                instance_id: id.to_owned(),
                qr: qr.to_owned(),
                classification: "READY",
            }),
        }
    }

    /// The decided status of `id`, if the instance is known.
    pub fn status(&self, id: &str) -> Option<&InstanceStatus> {
        self.instances.get(id)?.decided.as_ref()
    }

    /// Every decided status, ordered by instance id.
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        self.instances
            .values()
            .filter_map(|i| i.decided.clone())
            .collect()
    }

    /// Ids of known instances.
    pub fn instance_ids(&self) -> Vec<String> {
        self.instances.keys().cloned().collect()
    }

    /// What the engine knows of each instance, ordered by id, as plain views for the
    /// metrics (rank, time since the last event) and the stream (`instanceMeta`).
    pub fn views(&self) -> impl Iterator<Item = InstanceView<'_>> {
        self.instances.iter().map(|(id, i)| InstanceView {
            id,
            rank: i.decided.as_ref().map(|s| s.rank),
            lifecycle: i.webhook.as_ref().map(|(w, r)| (w.as_str(), *r)),
            last_event_at: i.last_event_at,
            qr: i.qr.as_deref(),
            qr_error: i.qr_error.as_deref(),
        })
    }

    /// The view of one instance, if known.
    pub fn view(&self, id: &str) -> Option<InstanceView<'_>> {
        self.views().find(|v| v.id == id)
    }

    /// Instances that need a QR and have none yet (the QR fallback's work list).
    pub fn waiting_for_qr(&self) -> Vec<String> {
        self.instances
            .iter()
            .filter(|(_, i)| {
                i.qr.is_none()
                    && i.decided
                        .as_ref()
                        .is_some_and(|s| s.rank == Rank::NeedsQr && !is_busy(&s.display_status))
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Fleet mode: takes `status` as the instance's decided status, as another node (or the
    /// fleet's status bucket) decided it, so every node reports the status last written to the
    /// fleet's log. Ignored when the instance is new and `max_instances` are tracked.
    pub fn adopt(&mut self, status: InstanceStatus) {
        if let Some(inst) = self.entry(&status.instance_id.clone()) {
            inst.decided = Some(status);
        }
    }

    /// Recomputes the status of `id`; returns it when it differs from the last decided one.
    fn decide(&mut self, id: &str, now: DateTime<Utc>) -> Option<InstanceStatus> {
        let inst = self.instances.get_mut(id)?;
        let mut next = compute(id, inst, now);
        match &inst.decided {
            Some(prev) if same_ignoring_time(prev, &next) => None,
            _ => {
                next.updated_at = iso_timestamp(now);
                inst.decided = Some(next.clone());
                Some(next)
            }
        }
    }
}

fn same_ignoring_time(a: &InstanceStatus, b: &InstanceStatus) -> bool {
    let mut b = b.clone();
    b.updated_at.clone_from(&a.updated_at);
    b.node.clone_from(&a.node);
    *a == b
}

/// Status word, rank and source by the precedence rule.
fn word_rank_source(inst: &Instance) -> (String, Rank, &'static str) {
    if let Some((word, rank)) = &inst.webhook {
        return (word.clone(), *rank, "webhook");
    }
    if let Some(word) = &inst.meta_status {
        return (word.clone(), rank_of_word(word), "meta");
    }
    if let Some(api) = &inst.api {
        if let Some(word) = api.instance_status.as_ref().or(api.state.as_ref()) {
            return (word.clone(), rank_of_word(word), "api");
        }
    }
    ("unknown".to_owned(), DEFAULT_RANK, "unknown")
}

fn current_rank(inst: &Instance) -> Rank {
    word_rank_source(inst).1
}

fn compute(id: &str, inst: &Instance, now: DateTime<Utc>) -> InstanceStatus {
    let (word, rank, source) = word_rank_source(inst);
    let api_busy = inst
        .api
        .as_ref()
        .and_then(|a| a.state.as_deref())
        .is_some_and(is_busy);
    let api = inst.api.clone().unwrap_or_default();
    InstanceStatus {
        instance_id: id.to_owned(),
        show_qr: rank == Rank::NeedsQr && inst.qr.is_some() && !is_busy(&word) && !api_busy,
        display_status: word,
        rank,
        label: rank.label(),
        qr: inst.qr.clone(),
        qr_error: inst.qr_error.clone(),
        timed_out: inst.timed_out,
        reason: if rank == Rank::Disconnected && source == "webhook" {
            inst.reason
        } else {
            None
        },
        conflict: inst.conflict,
        warning: inst.warning,
        source,
        updated_at: iso_timestamp(now),
        ready_source: api.ready_source,
        authenticated_to_ready_ms: api.authenticated_to_ready_ms,
        ready_watchdog_start_at: api.ready_watchdog_start_at,
        ready_watchdog_ms: api.ready_watchdog_ms,
        node: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_400_000 + s, 0).unwrap()
    }

    /// One row per rule of dashboard reference §5 plus the sidecar's extra rules: the events
    /// applied in order to a fresh instance, then the expected rank, word, source, timed-out.
    #[test]
    fn rules_table() {
        struct Row {
            rule: &'static str,
            events: &'static [(&'static str, &'static str)],
            rank: Rank,
            word: &'static str,
            timed_out: bool,
        }
        let rows = [
            Row {
                rule: "disconnected is rank 0",
                events: &[("ready", "{}"), ("disconnected", "{}")],
                rank: Rank::Disconnected,
                word: "disconnected",
                timed_out: false,
            },
            Row {
                rule: "auth_failure is rank 0",
                events: &[("auth_failure", "{}")],
                rank: Rank::Disconnected,
                word: "auth_failure",
                timed_out: false,
            },
            Row {
                rule: "restricted is rank 0",
                events: &[("ready", "{}"), ("restricted", "{}")],
                rank: Rank::Disconnected,
                word: "restricted",
                timed_out: false,
            },
            Row {
                rule: "qr is rank 1",
                events: &[("qr", r#"{"qr":"abc"}"#)],
                rank: Rank::NeedsQr,
                word: "qr",
                timed_out: false,
            },
            Row {
                rule: "qr error is still needs_qr",
                events: &[("qr", r#"{"error":"x"}"#)],
                rank: Rank::NeedsQr,
                word: "qr",
                timed_out: false,
            },
            Row {
                rule: "authenticated is rank 2",
                events: &[("qr", "{}"), ("authenticated", "{}")],
                rank: Rank::Syncing,
                word: "authenticated",
                timed_out: false,
            },
            Row {
                rule: "ready is rank 3",
                events: &[("ready", "{}")],
                rank: Rank::Active,
                word: "ready",
                timed_out: false,
            },
            Row {
                rule: "change_state CONNECTED is active",
                events: &[
                    ("disconnected", "{}"),
                    ("change_state", r#"{"status":"CONNECTED"}"#),
                ],
                rank: Rank::Active,
                word: "CONNECTED",
                timed_out: false,
            },
            Row {
                rule: "change_state other keeps rank",
                events: &[
                    ("authenticated", "{}"),
                    ("change_state", r#"{"status":"OPENING"}"#),
                ],
                rank: Rank::Syncing,
                word: "OPENING",
                timed_out: false,
            },
            Row {
                rule: "change_state without status keeps rank",
                events: &[("ready", "{}"), ("change_state", "{}")],
                rank: Rank::Active,
                word: "change_state",
                timed_out: false,
            },
            Row {
                rule: "ready_timeout keeps rank and marks timed out",
                events: &[("authenticated", "{}"), ("ready_timeout", "{}")],
                rank: Rank::Syncing,
                word: "authenticated",
                timed_out: true,
            },
            Row {
                rule: "next lifecycle event clears timed out",
                events: &[
                    ("authenticated", "{}"),
                    ("ready_timeout", "{}"),
                    ("ready", "{}"),
                ],
                rank: Rank::Active,
                word: "ready",
                timed_out: false,
            },
            Row {
                rule: "message after ready keeps instance active",
                events: &[("ready", "{}"), ("message", r#"{"message":{"body":"hi"}}"#)],
                rank: Rank::Active,
                word: "ready",
                timed_out: false,
            },
            Row {
                rule: "vote_update never changes status",
                events: &[("authenticated", "{}"), ("vote_update", "{}")],
                rank: Rank::Syncing,
                word: "authenticated",
                timed_out: false,
            },
            Row {
                rule: "unknown event names never change status",
                events: &[
                    ("disconnected", "{}"),
                    ("brand_new_event", r#"{"status":"CONNECTED"}"#),
                ],
                rank: Rank::Disconnected,
                word: "disconnected",
                timed_out: false,
            },
        ];
        for row in rows {
            let mut e = StatusEngine::new(100);
            for (i, (ev, data)) in row.events.iter().enumerate() {
                let data: Value = serde_json::from_str(data).unwrap();
                e.apply_webhook("i", ev, &data, t(i as i64));
            }
            let s = e
                .status("i")
                .unwrap_or_else(|| panic!("{}: no status", row.rule));
            assert_eq!(s.rank, row.rank, "{}", row.rule);
            assert_eq!(s.label, row.rank.label(), "{}", row.rule);
            assert_eq!(s.display_status, row.word, "{}", row.rule);
            assert_eq!(s.source, "webhook", "{}", row.rule);
            assert_eq!(s.timed_out, row.timed_out, "{}", row.rule);
        }
    }

    /// The sidecar's own rules for whatsapp-web.js states the dashboard reference ignores:
    /// each row is the events applied in order, then rank, word, reason, conflict, warning.
    #[test]
    fn whatsapp_web_states_table() {
        type Row = (
            &'static str,
            &'static [&'static str],
            Rank,
            &'static str,
            Option<&'static str>,
            bool,
            bool,
        );
        let rows: [Row; 8] = [
            (
                "phone-side logout: UNPAIRED",
                &["ready", "UNPAIRED"],
                Rank::Disconnected,
                "UNPAIRED",
                Some("logged_out"),
                false,
                false,
            ),
            (
                "UNPAIRED_IDLE",
                &["ready", "UNPAIRED_IDLE"],
                Rank::Disconnected,
                "UNPAIRED_IDLE",
                Some("logged_out"),
                false,
                false,
            ),
            (
                "TOS_BLOCK bans",
                &["ready", "TOS_BLOCK"],
                Rank::Disconnected,
                "TOS_BLOCK",
                Some("banned"),
                false,
                false,
            ),
            (
                "SMB_TOS_BLOCK bans",
                &["authenticated", "SMB_TOS_BLOCK"],
                Rank::Disconnected,
                "SMB_TOS_BLOCK",
                Some("banned"),
                false,
                false,
            ),
            (
                "CONFLICT keeps the rank",
                &["ready", "CONFLICT"],
                Rank::Active,
                "CONFLICT",
                None,
                true,
                false,
            ),
            (
                "next lifecycle event clears conflict",
                &["ready", "CONFLICT", "CONNECTED"],
                Rank::Active,
                "CONNECTED",
                None,
                false,
                false,
            ),
            (
                "DEPRECATED_VERSION warns and keeps the rank",
                &["ready", "DEPRECATED_VERSION"],
                Rank::Active,
                "DEPRECATED_VERSION",
                None,
                false,
                true,
            ),
            (
                "ready after logout clears the reason",
                &["UNPAIRED", "ready"],
                Rank::Active,
                "ready",
                None,
                false,
                false,
            ),
        ];
        for (rule, states, rank, word, reason, conflict, warning) in rows {
            let mut e = StatusEngine::new(10);
            for (i, st) in states.iter().enumerate() {
                let (event, data) = match *st {
                    "ready" | "authenticated" => (*st, json!({})),
                    other => ("change_state", json!({ "status": other })),
                };
                e.apply_webhook("i", event, &data, t(i as i64));
            }
            let s = e.status("i").unwrap_or_else(|| panic!("{rule}: no status"));
            assert_eq!(s.rank, rank, "{rule}");
            assert_eq!(s.display_status, word, "{rule}");
            assert_eq!(s.reason, reason, "{rule}");
            assert_eq!(s.conflict, conflict, "{rule}");
            assert_eq!(s.warning.is_some(), warning, "{rule}");
        }
    }

    #[test]
    fn non_lifecycle_event_for_new_instance_decides_nothing() {
        let mut e = StatusEngine::new(10);
        let out = e.apply_webhook("i", "message", &json!({}), t(0));
        assert_eq!(out, Outcome::default());
        assert!(e.status("i").is_none());
    }

    #[test]
    fn unchanged_status_emits_nothing() {
        let mut e = StatusEngine::new(10);
        assert!(e
            .apply_webhook("i", "ready", &json!({}), t(0))
            .status
            .is_some());
        assert!(e
            .apply_webhook("i", "ready", &json!({}), t(1))
            .status
            .is_none());
        assert!(e
            .apply_webhook("i", "change_state", &json!({"status": "CONNECTED"}), t(2))
            .status
            .is_some());
    }

    #[test]
    fn precedence_webhook_then_meta_then_api_instance_status_then_state() {
        let mut e = StatusEngine::new(10);
        let api = ApiStatus {
            state: Some("error".into()),
            ..Default::default()
        };
        let s = e.apply_api_status("i", api, t(0)).unwrap();
        assert_eq!(
            (s.source, s.display_status.as_str(), s.rank),
            ("api", "error", Rank::Disconnected)
        );
        let api = ApiStatus {
            instance_status: Some("ready".into()),
            state: Some("error".into()),
            ..Default::default()
        };
        let s = e.apply_api_status("i", api, t(1)).unwrap();
        assert_eq!(
            (s.source, s.display_status.as_str(), s.rank),
            ("api", "ready", Rank::Active)
        );
        let s = e
            .apply_instance_list(&json!([{"id": "i", "status": "disconnected"}]), t(2))
            .pop()
            .unwrap();
        assert_eq!((s.source, s.rank), ("meta", Rank::Disconnected));
        let s = e
            .apply_webhook("i", "qr", &json!({"qr": "q"}), t(3))
            .status
            .unwrap();
        assert_eq!((s.source, s.rank), ("webhook", Rank::NeedsQr));
        let s = e
            .apply_webhook("j", "ready_timeout", &json!({}), t(4))
            .status
            .unwrap();
        assert_eq!(
            (s.source, s.rank, s.timed_out),
            ("unknown", Rank::NeedsQr, true)
        );
    }

    #[test]
    fn status_routes_are_known_with_or_without_a_trailing_slash() {
        for path in [
            "/instances",
            "/instances/",
            "/instances/a/client/status",
            "/instances/a/client/status/",
            "/instances/a/client/status/?x=1",
        ] {
            assert!(ApiKnowledge::route_carries_status(path), "{path}");
        }
        for path in [
            "/instances/a/client/status//",
            "/instances//client/status",
            "/instances/a/b/client/status",
            "/instances/a/client",
        ] {
            assert!(!ApiKnowledge::route_carries_status(path), "{path}");
        }
        let ready = r#"{"clientStatus":{"instanceStatus":"ready"},"status":"success"}"#;
        assert!(matches!(
            ApiKnowledge::from_response("/instances/a/client/status/", Some("a"), ready),
            Some(ApiKnowledge::ClientStatus(..))
        ));
    }

    #[test]
    fn only_the_answer_the_current_api_status_came_from_is_known() {
        let path = "/instances/a/client/status";
        let ready = r#"{"clientStatus":{"instanceStatus":"ready"},"status":"success"}"#;
        let gone = r#"{"clientStatus":{"instanceStatus":"disconnected"},"status":"success"}"#;
        let learn = |e: &mut StatusEngine, text: &str, at: i64| {
            e.learn(
                ApiKnowledge::from_response(path, Some("a"), text).unwrap(),
                t(at),
            )
        };
        let mut e = StatusEngine::new(10);
        assert!(
            !e.knows_api_text("a", ready),
            "an unknown instance knows nothing"
        );
        assert_eq!(learn(&mut e, ready, 0)[0].rank, Rank::Active);
        assert!(e.knows_api_text("a", ready));
        assert!(!e.knows_api_text("a", gone));
        assert!(!e.knows_api_text("b", ready));
        // The same status in other text is learned (and changes nothing); it is remembered.
        let spaced = ready.replace(':', ": ");
        assert!(learn(&mut e, &spaced, 1).is_empty());
        assert!(e.knows_api_text("a", &spaced) && !e.knows_api_text("a", ready));
        // A status from elsewhere (the QR poller) forgets the text: the old answer teaches
        // again, and brings the status back.
        let api = ApiStatus::from_json(gone).unwrap();
        assert_eq!(
            e.apply_api_status("a", api, t(2)).unwrap().rank,
            Rank::Disconnected
        );
        assert!(!e.knows_api_text("a", &spaced));
        assert_eq!(learn(&mut e, &spaced, 3)[0].rank, Rank::Active);
        // A long answer is learned but not remembered.
        let long = format!(
            r#"{{"clientStatus":{{"instanceStatus":"disconnected"}},"pad":"{}"}}"#,
            "x".repeat(MAX_REMEMBERED_TEXT)
        );
        assert_eq!(learn(&mut e, &long, 4)[0].rank, Rank::Disconnected);
        assert!(!e.knows_api_text("a", &long));
    }

    #[test]
    fn api_status_accepts_both_envelopes_and_extras() {
        let real = json!({"clientStatus": {"instanceStatus": "disconnected", "state": "error",
            "readySource": null, "readyWatchdogMs": 600000}, "status": "success"});
        let documented = json!({"success": true, "data": {"clientStatus": {"instanceStatus": "ready",
            "readySource": "event", "authenticatedToReadyMs": 1234}}});
        let a = ApiStatus::from_response(&real).unwrap();
        assert_eq!(a.instance_status.as_deref(), Some("disconnected"));
        assert_eq!(a.ready_source, None);
        assert_eq!(a.ready_watchdog_ms, Some(json!(600000)));
        let b = ApiStatus::from_response(&documented).unwrap();
        assert_eq!(b.ready_source, Some(json!("event")));
        assert_eq!(b.authenticated_to_ready_ms, Some(json!(1234)));
        assert!(ApiStatus::from_response(&json!({"error": "x"})).is_none());
        assert!(ApiStatus::from_response(&json!("text")).is_none());
    }

    #[test]
    fn api_status_reads_only_objects_and_keeps_the_value_rules() {
        let read = |body: &str| ApiStatus::from_json(body);
        // Not objects: arrays (which a struct would take by position), scalars, garbage.
        assert!(read(r#"[{"instanceStatus":"ready"}]"#).is_none());
        assert!(read(r#"{"clientStatus":["ready","x"]}"#).is_none());
        assert!(read("null").is_none());
        assert!(read("{").is_none());
        // `clientStatus: null` is not a missing key: no fall-back to `data`.
        assert!(read(r#"{"clientStatus":null,"data":{"clientStatus":{"state":"x"}}}"#).is_none());
        // Non-strings are absent text; `null` extras are absent; other extras kept as they are.
        let a = read(
            r#" {"clientStatus":{"instanceStatus":7,"state":"CONNECTED","readySource":null,
                "readyWatchdogStartAt":{"a":[1,"é"]},"other":{"deep":[1,2,3]}}} "#,
        )
        .unwrap();
        assert_eq!(a.instance_status, None);
        assert_eq!(a.state.as_deref(), Some("CONNECTED"));
        assert_eq!(a.ready_source, None);
        assert_eq!(a.ready_watchdog_start_at, Some(json!({"a": [1, "é"]})));
        // Escapes in text are decoded.
        let b = read(r#"{"data":{"clientStatus":{"instanceStatus":"re\"ady"}}}"#).unwrap();
        assert_eq!(b.instance_status.as_deref(), Some("re\"ady"));
    }

    #[test]
    fn qr_is_shown_only_while_needing_one() {
        let mut e = StatusEngine::new(10);
        let out = e.apply_webhook("i", "qr", &json!({"qr": "QRDATA"}), t(0));
        assert_eq!(out.qr.unwrap().qr, "QRDATA");
        let s = out.status.unwrap();
        assert!(s.show_qr);
        assert_eq!(s.qr.as_deref(), Some("QRDATA"));
        let s = e
            .apply_webhook("i", "authenticated", &json!({}), t(1))
            .status
            .unwrap();
        assert!(!s.show_qr);
        assert_eq!(s.qr, None);
        // Initializing according to the API: no QR even at rank 1.
        let mut e = StatusEngine::new(10);
        e.apply_api_status(
            "k",
            ApiStatus {
                state: Some("initializing".into()),
                ..Default::default()
            },
            t(0),
        );
        let out = e.apply_fetched_qr("k", "Q", t(1));
        assert!(!out.status.unwrap().show_qr);
    }

    #[test]
    fn qr_error_is_kept_in_meta_and_status() {
        let mut e = StatusEngine::new(10);
        let s = e
            .apply_webhook(
                "b",
                "qr",
                &json!({"error": "Failed to generate QR: timeout"}),
                t(0),
            )
            .status
            .unwrap();
        assert_eq!(
            s.qr_error.as_deref(),
            Some("Failed to generate QR: timeout")
        );
        assert_eq!(
            e.view("b").unwrap().qr_error,
            Some("Failed to generate QR: timeout")
        );
    }

    #[test]
    fn instances_beyond_the_cap_are_not_tracked() {
        let mut e = StatusEngine::new(1);
        assert!(e
            .apply_webhook("a", "ready", &json!({}), t(0))
            .status
            .is_some());
        assert!(e
            .apply_webhook("b", "ready", &json!({}), t(0))
            .status
            .is_none());
        assert_eq!(e.instance_ids(), vec!["a".to_owned()]);
    }

    #[test]
    fn waiting_for_qr_lists_needs_qr_instances_without_one() {
        let mut e = StatusEngine::new(10);
        e.apply_webhook("a", "qr", &json!({"error": "x"}), t(0));
        e.apply_webhook("b", "qr", &json!({"qr": "q"}), t(0));
        e.apply_webhook("c", "ready", &json!({}), t(0));
        assert_eq!(e.waiting_for_qr(), vec!["a".to_owned()]);
    }
}
