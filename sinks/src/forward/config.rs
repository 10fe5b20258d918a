//! `sinks: [{type: forward, ...}]` settings, their defaults and their checks.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::envelope::Kind;
use crate::secret::Secret;

/// Directory of the default outbox files: `data/<sink name>.redb`, relative to the working
/// directory.
pub const DEFAULT_DATA_DIR: &str = "data";

/// A forward sink's setting is not acceptable. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ForwardConfigError {
    /// A key holds a value that cannot work.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, e.g. `url`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Settings of one forward sink: where webhooks go, how they are signed, how delivery is
/// retried and where undelivered ones are kept.
///
/// Only `url` is required. Times carry their unit in the key name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Receiver, `http://` or `https://` (rustls, webpki roots). Each webhook is POSTed here.
    /// Must not carry credentials (use `auth_token`).
    pub url: Url,
    /// HMAC-SHA256 key: when set, each request carries `x-wa-hub-signature` = lowercase hex
    /// HMAC of the body under this key. Default none (no signature header).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// Sent as `Authorization: Bearer <auth_token>` when set. Default none.
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// Longest time for one attempt (connect, send, response head and body), ms. Default 10000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: NonZeroU64,
    /// Delay before the first retry, ms; doubles per failed attempt (with jitter). Default 500.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: NonZeroU64,
    /// Largest delay between two attempts of one event, ms. Default 60000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: NonZeroU64,
    /// Attempts of one event before it moves to the dead letters. Default 20.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: NonZeroU32,
    /// An event older than this (since it entered the outbox) moves to the dead letters
    /// instead of being tried again, seconds; 0 = no age limit. Default 86400 (one day).
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// Most events kept undelivered in the outbox; further events are dropped (counted and
    /// logged) until it shrinks. Default 100000.
    #[serde(default = "default_max_pending")]
    pub max_pending: NonZeroU64,
    /// The outbox file (a redb database; parent directories are created). Default
    /// `data/<sink name>.redb` under the working directory.
    #[serde(default)]
    pub outbox_path: Option<PathBuf>,
}

fn default_timeout_ms() -> NonZeroU64 {
    NonZeroU64::new(10_000).expect("non-zero")
}
fn default_backoff_initial_ms() -> NonZeroU64 {
    NonZeroU64::new(500).expect("non-zero")
}
fn default_backoff_max_ms() -> NonZeroU64 {
    NonZeroU64::new(60_000).expect("non-zero")
}
fn default_max_attempts() -> NonZeroU32 {
    NonZeroU32::new(20).expect("non-zero")
}
fn default_max_age_secs() -> u64 {
    86_400
}
fn default_max_pending() -> NonZeroU64 {
    NonZeroU64::new(100_000).expect("non-zero")
}

impl ForwardConfig {
    /// A config for `url` with every other key at its default.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            secret: None,
            auth_token: None,
            timeout_ms: default_timeout_ms(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            max_attempts: default_max_attempts(),
            max_age_secs: default_max_age_secs(),
            max_pending: default_max_pending(),
            outbox_path: None,
        }
    }

    /// Checks the values together, and the sink's `kinds` (as configured; empty means
    /// `[webhook]`): a forward sink sends webhooks' raw bytes, so it takes webhooks only.
    ///
    /// # Errors
    /// [`ForwardConfigError`] naming the key: a scheme other than `http`/`https`, a URL without
    /// host or with credentials, an empty `secret` or `auth_token`, `backoff_initial_ms` over
    /// `backoff_max_ms`, a kind other than `webhook`.
    pub fn check(&self, kinds: &[Kind]) -> Result<(), ForwardConfigError> {
        let bad = |key, reason: &str| {
            Err(ForwardConfigError::Invalid {
                key,
                reason: reason.to_owned(),
            })
        };
        if !matches!(self.url.scheme(), "http" | "https") {
            return bad(
                "url",
                &format!(
                    "scheme `{}` is not supported; use http:// or https://",
                    self.url.scheme()
                ),
            );
        }
        if self.url.host_str().is_none_or(str::is_empty) {
            return bad("url", "has no host");
        }
        if !self.url.username().is_empty() || self.url.password().is_some() {
            return bad("url", "must not carry credentials; set auth_token instead");
        }
        if self.secret.as_ref().is_some_and(|s| s.is_empty()) {
            return bad("secret", "is empty; remove the key to send no signature");
        }
        if self.auth_token.as_ref().is_some_and(|s| s.is_empty()) {
            return bad(
                "auth_token",
                "is empty; remove the key to send no bearer token",
            );
        }
        if self.backoff_initial_ms > self.backoff_max_ms {
            return bad("backoff_initial_ms", "must not exceed backoff_max_ms");
        }
        if kinds.iter().any(|k| *k != Kind::Webhook) {
            return bad(
                "kinds",
                "a forward sink sends webhooks only; list just `webhook` or nothing",
            );
        }
        Ok(())
    }

    /// The outbox file of the sink named `sink_name`: `outbox_path`, else
    /// `data/<sink name>.redb` (characters other than letters, digits, `.`, `_` and `-`
    /// replaced by `_`).
    pub fn outbox_file(&self, sink_name: &str) -> PathBuf {
        match &self.outbox_path {
            Some(p) => p.clone(),
            None => {
                let safe: String = sink_name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                Path::new(DEFAULT_DATA_DIR).join(format!("{safe}.redb"))
            }
        }
    }

    /// `timeout_ms` as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.get())
    }

    /// `max_age_secs` as a duration; `None` when 0 (no limit).
    pub fn max_age(&self) -> Option<Duration> {
        (self.max_age_secs > 0).then(|| Duration::from_secs(self.max_age_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> ForwardConfig {
        ForwardConfig::new(Url::parse(url).unwrap())
    }

    #[test]
    fn http_and_https_urls_are_accepted_others_refused() {
        assert!(cfg("http://127.0.0.1:9/hook").check(&[]).is_ok());
        assert!(cfg("https://hooks.example/x?y=1").check(&[]).is_ok());
        let err = cfg("ftp://x/").check(&[]).unwrap_err().to_string();
        assert!(err.starts_with("url:"), "{err}");
        assert!(cfg("http://user:pw@x/").check(&[]).is_err());
    }

    #[test]
    fn empty_secrets_and_inverted_backoff_are_refused() {
        let mut c = cfg("http://x/");
        c.secret = Some("".into());
        assert!(c.check(&[]).unwrap_err().to_string().starts_with("secret:"));
        let mut c = cfg("http://x/");
        c.auth_token = Some("".into());
        assert!(c
            .check(&[])
            .unwrap_err()
            .to_string()
            .starts_with("auth_token:"));
        let mut c = cfg("http://x/");
        c.backoff_initial_ms = NonZeroU64::new(2000).unwrap();
        c.backoff_max_ms = NonZeroU64::new(1000).unwrap();
        assert!(c
            .check(&[])
            .unwrap_err()
            .to_string()
            .starts_with("backoff_initial_ms:"));
    }

    #[test]
    fn default_outbox_file_is_under_data_named_after_the_sink() {
        let c = cfg("http://x/");
        assert_eq!(
            c.outbox_file("crm hook/1"),
            Path::new("data").join("crm_hook_1.redb")
        );
        let mut c = cfg("http://x/");
        c.outbox_path = Some("/var/lib/x.redb".into());
        assert_eq!(c.outbox_file("a"), Path::new("/var/lib/x.redb"));
    }

    #[test]
    fn secrets_never_appear_in_debug_or_serialized_output() {
        let mut c = cfg("http://x/");
        c.secret = Some("hmac-key-123".into());
        c.auth_token = Some("bearer-456".into());
        let text = format!("{c:?}{}", serde_json::to_string(&c).unwrap());
        assert!(
            !text.contains("hmac-key-123") && !text.contains("bearer-456"),
            "{text}"
        );
        assert!(text.contains("********"));
    }
}
