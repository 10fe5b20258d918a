//! `fleet:`: the settings of fleet mode (issue 12), and their checks.
//!
//! Absent → single node, nothing of fleet mode runs. Env `WA_HUB_FLEET_NATS_URL` sets
//! `fleet.nats_url` (and turns fleet mode on with the other defaults when the file has no
//! `fleet:`). Credentials (`token`, or `user` + `password`) are [`Secret`]s, masked in logs
//! and in `check-config`.

use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;
use wa_hub_sinks::Secret;

/// Default stream name (`fleet.stream`).
pub const DEFAULT_STREAM: &str = "WAHUB_EVENTS";
/// Default KV bucket of statuses and instance routes (`fleet.status_bucket`).
pub const DEFAULT_STATUS_BUCKET: &str = "WAHUB_STATUS";

/// `fleet.*` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// NATS server URL, `nats://host:port` (or `tls://`). Env `WA_HUB_FLEET_NATS_URL`.
    /// Default `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// NATS token, when the server wants one.
    pub token: Option<Secret>,
    /// NATS user name (with `password`).
    pub user: Option<String>,
    /// NATS password (with `user`).
    pub password: Option<Secret>,
    /// This node's id, unique in the fleet: one subject token. Default: the host name.
    pub node_id: Option<String>,
    /// This node's URL as other nodes reach it (for proxy routing). Optional.
    pub public_url: Option<Url>,
    /// Token a node sends when it forwards a proxied call to the node running the instance,
    /// and accepts on calls forwarded to it. The same on every node. Masked.
    pub fleet_token: Option<Secret>,
    /// How often this node records the instances its wa-hub reports, ms. Default 10000.
    pub route_interval_ms: NonZeroU64,
    /// JetStream stream holding the fleet's events. Default [`DEFAULT_STREAM`].
    pub stream: String,
    /// First token of the fleet's subjects (`<prefix>.<node>.<instance>.<kind>`). Default
    /// `wahub`; another one lets several fleets share one NATS (streams may not overlap).
    pub subject_prefix: String,
    /// Oldest event the stream keeps, seconds. Default 86400 (one day).
    pub max_age_secs: NonZeroU64,
    /// Most bytes the stream keeps. Default 1 GiB.
    pub max_bytes: NonZeroU64,
    /// KV bucket of the current status of every instance. Default [`DEFAULT_STATUS_BUCKET`].
    pub status_bucket: String,
    /// Also publish API logs to the fleet (default `false`: they stay on the node that
    /// proxied the call).
    pub share_api_log: bool,
    /// Events kept for publishing while NATS is unreachable; past it new events are counted
    /// as lost and logged. Default 10000.
    pub buffer_events: NonZeroUsize,
    /// How long start-up waits for NATS before running alone (and retrying), ms. Default 2000.
    pub connect_timeout_ms: NonZeroU64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            token: None,
            user: None,
            password: None,
            node_id: None,
            public_url: None,
            fleet_token: None,
            route_interval_ms: NonZeroU64::new(10_000).expect("non-zero"),
            stream: DEFAULT_STREAM.to_owned(),
            subject_prefix: super::subject::DEFAULT_PREFIX.to_owned(),
            max_age_secs: NonZeroU64::new(86_400).expect("non-zero"),
            max_bytes: NonZeroU64::new(1 << 30).expect("non-zero"),
            status_bucket: DEFAULT_STATUS_BUCKET.to_owned(),
            share_api_log: false,
            buffer_events: NonZeroUsize::new(10_000).expect("non-zero"),
            connect_timeout_ms: NonZeroU64::new(2000).expect("non-zero"),
        }
    }
}

/// The checked fleet settings.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    /// The settings as written.
    pub raw: FleetConfig,
    /// The effective node id (`node_id`, else the host name).
    pub node_id: String,
    /// The shortest duplicate window the stream may have: [`MIN_DUPLICATE_WINDOW`], or the
    /// webhook dedup window (`webhook.dedup_window_secs`) when longer, at most `max_age_secs`
    /// (JetStream refuses a window longer than the stream's age limit). A shorter window lets a
    /// webhook re-sent to another node, or a publish retried after an outage, be stored twice.
    pub duplicate_window: Duration,
}

/// The stream's duplicate window when the webhook dedup window is not longer: 2 minutes.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

impl FleetSettings {
    /// Raises [`FleetSettings::duplicate_window`] to the webhook dedup window `secs` (still at
    /// most `max_age_secs`).
    pub fn with_webhook_dedup(mut self, secs: u64) -> Self {
        let max_age = Duration::from_secs(self.raw.max_age_secs.get());
        self.duplicate_window = self
            .duplicate_window
            .max(Duration::from_secs(secs))
            .min(max_age);
        self
    }
}

/// What is wrong with `fleet:`: the dotted key and the reason.
pub type FleetConfigError = (&'static str, String);

impl FleetConfig {
    /// Checks the values and resolves the node id.
    ///
    /// # Errors
    /// The key and reason: a `nats_url` that is not `nats://`/`tls://` with a host, or carries
    /// credentials; `user` without `password` or the reverse; a node id, stream or bucket name
    /// that is empty or not made of `A-Z a-z 0-9 - _` (the node id is one subject token; names
    /// follow JetStream's rule); no `node_id` and no host name.
    pub fn validate(self) -> Result<FleetSettings, FleetConfigError> {
        let url = Url::parse(&self.nats_url)
            .map_err(|e| ("fleet.nats_url", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "nats" | "tls") || url.host_str().is_none() {
            return Err((
                "fleet.nats_url",
                "must be nats://host:port or tls://host:port".into(),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err((
                "fleet.nats_url",
                "must not carry credentials; set fleet.token or fleet.user/password".into(),
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(("fleet.user", "user and password go together".into()));
        }
        if self.fleet_token.as_ref().is_some_and(Secret::is_empty) {
            return Err(("fleet.fleet_token", "is empty; remove the key".into()));
        }
        if let Some(u) = &self.public_url {
            if u.scheme() != "http" || u.host_str().is_none() {
                return Err((
                    "fleet.public_url",
                    "must be http://host:port (the node's listener)".into(),
                ));
            }
        }
        if self.token.as_ref().is_some_and(Secret::is_empty) {
            return Err(("fleet.token", "is empty; remove the key".into()));
        }
        let node_id = match &self.node_id {
            Some(id) => id.clone(),
            None => host_name().ok_or_else(|| {
                (
                    "fleet.node_id",
                    "is not set and the host name cannot be read".to_owned(),
                )
            })?,
        };
        check_name("fleet.node_id", &node_id)?;
        check_name("fleet.stream", &self.stream)?;
        check_name("fleet.subject_prefix", &self.subject_prefix)?;
        check_name("fleet.status_bucket", &self.status_bucket)?;
        let duplicate_window =
            MIN_DUPLICATE_WINDOW.min(Duration::from_secs(self.max_age_secs.get()));
        Ok(FleetSettings {
            raw: self,
            node_id,
            duplicate_window,
        })
    }
}

fn check_name(key: &'static str, name: &str) -> Result<(), FleetConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err((
            key,
            format!("`{name}` must be 1-64 characters of A-Z a-z 0-9 - _"),
        ))
    }
}

/// The machine's host name (Linux: `/proc/sys/kernel/hostname`), cut at the first dot and
/// with characters other than `A-Z a-z 0-9 - _` replaced by `-`.
fn host_name() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let short = raw.trim().split('.').next()?.to_owned();
    let clean: String = short
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    (!clean.is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_with_the_host_name_as_node_id() {
        let s = FleetConfig::default().validate().unwrap();
        assert!(!s.node_id.is_empty());
        assert_eq!(s.raw.stream, "WAHUB_EVENTS");
        assert_eq!(s.raw.status_bucket, "WAHUB_STATUS");
    }

    #[test]
    fn fleet_is_off_without_the_section_and_the_env_var_turns_it_on() {
        use crate::config::RawConfig;
        let c = RawConfig::default().validate().unwrap();
        assert!(c.fleet.is_none());
        let mut raw = RawConfig::default();
        raw.apply_env(vec![(
            "WA_HUB_FLEET_NATS_URL".to_owned(),
            "nats://10.0.0.1:4222".to_owned(),
        )])
        .unwrap();
        let c = raw.validate().unwrap();
        assert_eq!(c.fleet.unwrap().raw.nats_url, "nats://10.0.0.1:4222");
    }

    #[test]
    fn fleet_credentials_are_masked() {
        use crate::config::RawConfig;
        let yaml = "fleet:\n  node_id: n1\n  token: nats-secret\n  fleet_token: fleet-secret\n  user: u\n  password: pw-secret\n";
        let c = RawConfig::from_yaml(yaml).unwrap().validate().unwrap();
        let text = format!("{}{:?}", c.to_masked_yaml(), c);
        for secret in ["nats-secret", "fleet-secret", "pw-secret"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
        assert_eq!(c.fleet.unwrap().node_id, "n1");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(FleetConfig, &str)> = vec![
            (
                FleetConfig {
                    nats_url: "http://x:1".into(),
                    ..Default::default()
                },
                "fleet.nats_url",
            ),
            (
                FleetConfig {
                    nats_url: "nats://u:p@x:1".into(),
                    ..Default::default()
                },
                "fleet.nats_url",
            ),
            (
                FleetConfig {
                    node_id: Some("a.b".into()),
                    ..Default::default()
                },
                "fleet.node_id",
            ),
            (
                FleetConfig {
                    stream: "has space".into(),
                    ..Default::default()
                },
                "fleet.stream",
            ),
            (
                FleetConfig {
                    user: Some("u".into()),
                    ..Default::default()
                },
                "fleet.user",
            ),
        ];
        for (c, key) in cases {
            assert_eq!(c.validate().unwrap_err().0, key);
        }
    }
}
