//! Configuration: the YAML file, the environment overrides users already have, and the one
//! `validate()` that turns both into a [`Config`] the rest of the process can trust.
//!
//! Order (DESIGN.md "Public interface"): defaults → YAML file → environment variables. Unknown
//! keys and bad values are errors that name the key (and, for YAML, the line); the process exits
//! with that message before binding any port.
//!
//! Secrets are held in [`Secret`], whose `Debug` and `Serialize` print a mask, so neither logs,
//! errors nor `check-config` output can reveal them.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;
pub use wa_hub_sinks::Secret;
use wa_hub_sinks::{SinkConfig, SinkKind};

/// Why the configuration was refused. Every variant names the key or variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// File that was tried.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML did not match the schema. serde_yaml's message names the key path and line.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// File that was parsed.
        path: PathBuf,
        /// The parser's error (key path, problem, line and column).
        source: serde_yaml::Error,
    },
    /// An environment variable override holds a bad value.
    #[error("environment variable {var} (config key {key}): {reason}")]
    Env {
        /// Variable name, e.g. `WA_HUB_BASE_URL`.
        var: &'static str,
        /// Config key it overrides.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A value parsed but is not acceptable.
    #[error("config key {key}: {reason}")]
    Invalid {
        /// Dotted key, e.g. `webhook.signature`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// How webhook signatures are enforced (`webhook.signature`; webhook issue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignaturePolicy {
    /// An invalid or missing signature is rejected with 401. Default when a secret is set.
    Required,
    /// Events with a bad signature are kept with `signatureValid: false` (the dashboard's way).
    Optional,
    /// No checking; allowed only without a secret. Default when no secret is set.
    Off,
}

/// Log output format (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The YAML document as written. Every field has a default, so an empty file is valid.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Address of the public HTTP listener. Default `127.0.0.1:3001` (loopback: an open sidecar
    /// is an open wa-hub).
    pub listen: SocketAddr,
    /// Extra listener serving only `/metrics` (no client token needed there). Default
    /// `127.0.0.1:9464`; `null` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// Worker threads of the proxy. Default: the number of CPU cores.
    pub threads: Option<NonZeroUsize>,
    /// The wa-hub REST API.
    pub upstream: UpstreamConfig,
    /// The webhook receiver.
    pub webhook: WebhookConfig,
    /// The display-status engine.
    pub status: StatusConfig,
    /// What clients may send through the proxy.
    pub proxy: ProxyConfig,
    /// The API-call log.
    pub api_log: ApiLogConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// Cross-origin browsers.
    pub cors: CorsConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// URLs the dashboard shows for the webhook.
    pub dashboard: DashboardConfig,
    /// Logging.
    pub log: LogConfig,
    /// Shutdown.
    pub shutdown: ShutdownConfig,
    /// Where events go (`sse`, `stdout`, ...), each with its own filter. Default: one `sse`.
    pub sinks: Vec<SinkConfig>,
    /// Fleet mode over NATS JetStream (issue 12). Absent (default): single node.
    pub fleet: Option<crate::fleet::FleetConfig>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            threads: None,
            upstream: UpstreamConfig::default(),
            webhook: WebhookConfig::default(),
            status: StatusConfig::default(),
            proxy: ProxyConfig::default(),
            api_log: ApiLogConfig::default(),
            auth: AuthConfig::default(),
            cors: CorsConfig::default(),
            metrics: MetricsConfig::default(),
            dashboard: DashboardConfig::default(),
            log: LogConfig::default(),
            shutdown: ShutdownConfig::default(),
            sinks: vec![SinkConfig {
                name: None,
                kinds: Vec::new(),
                events: Vec::new(),
                instances: Vec::new(),
                queue_capacity: wa_hub_sinks::config::DEFAULT_QUEUE_CAPACITY,
                kind: SinkKind::Sse(Default::default()),
            }],
            fleet: None,
        }
    }
}

/// `upstream.*`: where wa-hub is and how to talk to it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// wa-hub base URL, `http://host:port[/prefix]`. Env `WA_HUB_BASE_URL`.
    /// Default `http://127.0.0.1:3000`.
    pub base_url: Url,
    /// wa-hub API key, sent as `Authorization: Bearer <token>`. Env `WA_HUB_TOKEN`.
    pub token: Secret,
    /// TCP connect timeout, ms. Default 2000.
    pub connect_timeout_ms: NonZeroU64,
    /// Longest wait for each read of the upstream response, ms; past it the client gets 504.
    /// Default 30000.
    pub read_timeout_ms: NonZeroU64,
    /// Longest wait for each write to the upstream, ms. Default 30000.
    pub write_timeout_ms: NonZeroU64,
    /// How long an idle keep-alive connection to wa-hub is kept, ms. Default 4000: below
    /// Node's default `keepAliveTimeout` (5000 ms), so wa-hub never closes a connection the
    /// sidecar is about to reuse.
    pub idle_timeout_ms: NonZeroU64,
    /// Timeout of the `/readyz` probe of `<base_url>/health`, ms. Default 2000.
    pub health_timeout_ms: NonZeroU64,
    /// Interval of the background `/health` probe behind `wa_hub_sidecar_upstream_up`, ms.
    /// 0 disables it. Default 10000.
    pub health_interval_ms: u64,
    /// Sent as `X-Admin-Debug-Secret` on the dashboard's system routes (`/api/system/*`) only,
    /// never logged. Env `ADMIN_DEBUG_SECRET`. Default: none (header not sent).
    pub admin_debug_secret: Option<Secret>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            base_url: Url::parse("http://127.0.0.1:3000").expect("static URL"),
            token: Secret::default(),
            connect_timeout_ms: nz(2000),
            read_timeout_ms: nz(30_000),
            write_timeout_ms: nz(30_000),
            idle_timeout_ms: nz(4000),
            health_timeout_ms: nz(2000),
            health_interval_ms: 10_000,
            admin_debug_secret: None,
        }
    }
}

/// `webhook.*`: the receiver of wa-hub's signed webhooks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// HMAC-SHA256 secret. Env `WA_HUB_WEBHOOK_SIGNATURE_SECRET`.
    pub secret: Option<Secret>,
    /// Signature policy. Default `required` with a secret, `off` without.
    pub signature: Option<SignaturePolicy>,
    /// Bearer token wa-hub must send. Env `WEBHOOK_AUTH_TOKEN`.
    pub auth_token: Option<Secret>,
    /// Largest accepted body, bytes; larger gets 413. Default 1 MiB.
    pub max_body_bytes: NonZeroUsize,
    /// Webhook records kept in the newest-first history. Default 5000.
    pub history: NonZeroUsize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secret: None,
            signature: None,
            auth_token: None,
            max_body_bytes: nzu(1024 * 1024),
            history: nzu(5000),
        }
    }
}

/// `status.*`: the display-status engine and its API fallbacks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Instances tracked by the engine; events for more are stored and routed but not tracked.
    /// Default 10000.
    pub max_instances: NonZeroUsize,
    /// QR fallback: while an instance needs a QR and no webhook brought one, fetch
    /// `GET /instances/<id>/client/qr` this often, ms. 0 disables. Default 5000.
    pub qr_poll_interval_ms: u64,
    /// Reconcile poll: fetch `GET /instances` and each known instance's client status this
    /// often, ms. 0 (default) disables.
    pub reconcile_interval_ms: u64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            max_instances: nzu(10_000),
            qr_poll_interval_ms: 5000,
            reconcile_interval_ms: 0,
        }
    }
}

/// `proxy.*`: limits on what clients send through `/api/wahub/*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Largest request body passed upstream, bytes; larger gets 413. Default 10 MiB.
    pub max_body_bytes: NonZeroUsize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: nzu(10 * 1024 * 1024),
        }
    }
}

/// `api_log.*`: the record of proxied calls.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiLogConfig {
    /// Entries kept in the newest-first history. Default 5000.
    pub history: NonZeroUsize,
    /// Bytes of each request and response body kept for the log. A body over this is logged
    /// as `{"raw": <first 500 chars>, "truncated": true}`. Default 64 KiB.
    pub max_body_bytes: NonZeroUsize,
}

impl Default for ApiLogConfig {
    fn default() -> Self {
        Self {
            history: nzu(5000),
            max_body_bytes: nzu(64 * 1024),
        }
    }
}

/// `auth.*`: who may use the sidecar.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accepted client tokens. Empty (default): no client authentication. When set, the proxy,
    /// the stream and the read routes need `Authorization: Bearer <token>` (or, for browsers'
    /// `EventSource`, an `access_token` query parameter on local routes).
    pub client_tokens: Vec<Secret>,
    /// Cookie sessions for the dashboard's browser code (issue 13); see [`DashboardAuthConfig`].
    pub dashboard: DashboardAuthConfig,
}

/// `auth.dashboard.*`: the dashboard's password login and its signed session cookie
/// (`crate::session`). Off while no password is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardAuthConfig {
    /// The login password. Env `DASHBOARD_PASSWORD`. Default: none (no login; `check`
    /// answers `authenticated: false`). When set, every route that needs a client token also
    /// accepts the session cookie, and needs one of the two even without `client_tokens`.
    pub password: Option<Secret>,
    /// HMAC-SHA256 key of the session cookie, at least 16 bytes. Env
    /// `DASHBOARD_SESSION_SECRET`. Default: none, in which case a random key is drawn at each
    /// start (a warning is logged; sessions end with the process).
    pub session_secret: Option<Secret>,
    /// Whether the cookie carries `Secure` (sent over HTTPS only). Env
    /// `DASHBOARD_SECURE_COOKIES` (`false`/`0`/`no` turn it off). Default `true`.
    pub secure_cookies: bool,
    /// Lifetime of a session, seconds (the cookie's `Max-Age` and the signed expiry).
    /// Default 86400 (24 h).
    pub session_ttl_secs: NonZeroU64,
}

impl Default for DashboardAuthConfig {
    fn default() -> Self {
        Self {
            password: None,
            session_secret: None,
            secure_cookies: true,
            session_ttl_secs: nz(86_400),
        }
    }
}

/// Shortest accepted `auth.dashboard.session_secret`, bytes.
pub const MIN_SESSION_SECRET_BYTES: usize = 16;

/// `metrics.*`: Prometheus metrics.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Instances with their own series (rank, time since last event); more are counted in
    /// `wa_hub_sidecar_instances` only. Default 1000.
    pub max_instances: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
        }
    }
}

/// `cors.*`: browsers on other origins.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins (`scheme://host[:port]`) allowed to call the sidecar from a browser, or `*`.
    /// Empty (default): no CORS headers.
    pub allowed_origins: Vec<String>,
}

/// `dashboard.*`: what `GET /api/config` reports as the webhook URL.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Env `DASHBOARD_WEBHOOK_INTERNAL_URL`; preferred when set.
    pub webhook_internal_url: Option<String>,
    /// Env `DASHBOARD_WEBHOOK_PUBLIC_URL`.
    pub webhook_public_url: Option<String>,
}

/// `log.*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `wa_hub_sidecar=debug`. `RUST_LOG` wins when set.
    /// Default `info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// `shutdown.*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// On SIGTERM, longest wait for in-flight requests to finish, ms. Default 5000.
    pub grace_period_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period_ms: 5000,
        }
    }
}

/// The validated configuration. Only [`RawConfig::validate`] builds one.
#[derive(Debug, Clone)]
pub struct Config {
    /// The configuration as given, with overrides applied (for `check-config`).
    pub raw: RawConfig,
    /// Resolved address of wa-hub, from `upstream.base_url` (resolved once, at start-up).
    pub upstream_addr: SocketAddr,
    /// `Host` header value sent upstream (`host[:port]` of the base URL).
    pub upstream_authority: String,
    /// Path prefix of the base URL without trailing slash (often empty).
    pub upstream_path_prefix: String,
    /// Effective signature policy.
    pub signature: SignaturePolicy,
    /// Effective worker threads.
    pub threads: usize,
    /// The checked `fleet:` settings; `None` on a single node.
    pub fleet: Option<crate::fleet::FleetSettings>,
}

impl Config {
    /// Connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        ms(self.raw.upstream.connect_timeout_ms)
    }
    /// Per-read timeout.
    pub fn read_timeout(&self) -> Duration {
        ms(self.raw.upstream.read_timeout_ms)
    }
    /// Per-write timeout.
    pub fn write_timeout(&self) -> Duration {
        ms(self.raw.upstream.write_timeout_ms)
    }
    /// Pool idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        ms(self.raw.upstream.idle_timeout_ms)
    }
    /// `/readyz` probe timeout.
    pub fn health_timeout(&self) -> Duration {
        ms(self.raw.upstream.health_timeout_ms)
    }
    /// Shutdown grace period.
    pub fn grace_period(&self) -> Duration {
        Duration::from_millis(self.raw.shutdown.grace_period_ms)
    }

    /// The webhook URL `GET /api/config` reports: `dashboard.webhook_internal_url`, else the
    /// public one, else `http://<listen>/api/wahub/webhook`.
    pub fn webhook_url(&self) -> String {
        let d = &self.raw.dashboard;
        d.webhook_internal_url
            .clone()
            .or_else(|| d.webhook_public_url.clone())
            .unwrap_or_else(|| format!("http://{}/api/wahub/webhook", self.raw.listen))
    }

    /// The effective configuration as YAML, secrets masked.
    pub fn to_masked_yaml(&self) -> String {
        let mut raw = self.raw.clone();
        raw.webhook.signature = Some(self.signature);
        raw.threads = NonZeroUsize::new(self.threads);
        serde_yaml::to_string(&raw).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// Environment variables that override config keys (names users already have).
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("WA_HUB_BASE_URL", "upstream.base_url"),
    ("WA_HUB_TOKEN", "upstream.token"),
    ("WA_HUB_WEBHOOK_SIGNATURE_SECRET", "webhook.secret"),
    ("WEBHOOK_AUTH_TOKEN", "webhook.auth_token"),
    (
        "DASHBOARD_WEBHOOK_INTERNAL_URL",
        "dashboard.webhook_internal_url",
    ),
    (
        "DASHBOARD_WEBHOOK_PUBLIC_URL",
        "dashboard.webhook_public_url",
    ),
    ("ADMIN_DEBUG_SECRET", "upstream.admin_debug_secret"),
    ("DASHBOARD_PASSWORD", "auth.dashboard.password"),
    ("DASHBOARD_SESSION_SECRET", "auth.dashboard.session_secret"),
    ("DASHBOARD_SECURE_COOKIES", "auth.dashboard.secure_cookies"),
    ("WA_HUB_FLEET_NATS_URL", "fleet.nats_url"),
];

impl RawConfig {
    /// Reads and parses a YAML file. An empty file gives the defaults.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Parse`] for unknown
    /// keys, wrong types or bad values (the message names the key and the line).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses YAML text. Blank or comment-only text gives the defaults.
    ///
    /// # Errors
    /// serde_yaml's error, which names the key path and line.
    pub fn from_yaml(text: &str) -> Result<Self, serde_yaml::Error> {
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text)
    }

    /// Applies the environment overrides in [`ENV_OVERRIDES`] from `vars` (normally
    /// `std::env::vars()`). An empty variable counts as unset, as `process.env.X || …` does
    /// in the dashboard.
    ///
    /// # Errors
    /// [`ConfigError::Env`] when `WA_HUB_BASE_URL` is not a URL or `DASHBOARD_SECURE_COOKIES`
    /// is not a boolean (`true`/`false`, `1`/`0`, `yes`/`no`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .filter(|(k, v)| !v.is_empty() && ENV_OVERRIDES.iter().any(|(n, _)| n == k))
            .collect();
        if let Some(v) = vars.get("WA_HUB_BASE_URL") {
            self.upstream.base_url = Url::parse(v).map_err(|e| ConfigError::Env {
                var: "WA_HUB_BASE_URL",
                key: "upstream.base_url",
                reason: format!("not a URL: {e}"),
            })?;
        }
        if let Some(v) = vars.get("WA_HUB_TOKEN") {
            self.upstream.token = Secret::from(v.as_str());
        }
        if let Some(v) = vars.get("WA_HUB_WEBHOOK_SIGNATURE_SECRET") {
            self.webhook.secret = Some(Secret::from(v.as_str()));
        }
        if let Some(v) = vars.get("WEBHOOK_AUTH_TOKEN") {
            self.webhook.auth_token = Some(Secret::from(v.as_str()));
        }
        if let Some(v) = vars.get("DASHBOARD_WEBHOOK_INTERNAL_URL") {
            self.dashboard.webhook_internal_url = Some(v.clone());
        }
        if let Some(v) = vars.get("DASHBOARD_WEBHOOK_PUBLIC_URL") {
            self.dashboard.webhook_public_url = Some(v.clone());
        }
        if let Some(v) = vars.get("ADMIN_DEBUG_SECRET") {
            self.upstream.admin_debug_secret = Some(Secret::from(v.as_str()));
        }
        if let Some(v) = vars.get("DASHBOARD_PASSWORD") {
            self.auth.dashboard.password = Some(Secret::from(v.as_str()));
        }
        if let Some(v) = vars.get("DASHBOARD_SESSION_SECRET") {
            self.auth.dashboard.session_secret = Some(Secret::from(v.as_str()));
        }
        if let Some(v) = vars.get("WA_HUB_FLEET_NATS_URL") {
            self.fleet.get_or_insert_with(Default::default).nats_url = v.clone();
        }
        if let Some(v) = vars.get("DASHBOARD_SECURE_COOKIES") {
            self.auth.dashboard.secure_cookies = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(ConfigError::Env {
                        var: "DASHBOARD_SECURE_COOKIES",
                        key: "auth.dashboard.secure_cookies",
                        reason: format!("`{v}` is not true or false"),
                    })
                }
            };
        }
        Ok(())
    }

    /// Checks the values together and resolves what start-up needs (the upstream address).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key: an upstream URL that is not plain `http` with a
    /// host, a host that does not resolve, `webhook.signature: off` with a secret set,
    /// `required`/`optional` without one, an empty token, or a zero-length client token; an
    /// empty dashboard password or admin debug secret; a session secret under
    /// [`MIN_SESSION_SECRET_BYTES`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let url = &self.upstream.base_url;
        if url.scheme() != "http" {
            return Err(invalid(
                "upstream.base_url",
                format!(
                    "scheme `{}` is not supported: use http:// (wa-hub runs beside the sidecar)",
                    url.scheme()
                ),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "upstream.base_url",
                "must not carry credentials; set upstream.token (WA_HUB_TOKEN) instead",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(
                "upstream.base_url",
                "must not have a query or fragment",
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| invalid("upstream.base_url", "has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let upstream_addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
            .to_socket_addrs()
            .map_err(|e| invalid("upstream.base_url", format!("cannot resolve `{host}`: {e}")))?
            .next()
            .ok_or_else(|| {
                invalid(
                    "upstream.base_url",
                    format!("`{host}` resolves to no address"),
                )
            })?;
        let upstream_authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let upstream_path_prefix = url.path().trim_end_matches('/').to_owned();

        let secret_set = self.webhook.secret.as_ref().is_some_and(|s| !s.is_empty());
        let signature = match (self.webhook.signature, secret_set) {
            (None, true) => SignaturePolicy::Required,
            (None, false) => SignaturePolicy::Off,
            (Some(SignaturePolicy::Off), true) => {
                return Err(invalid(
                    "webhook.signature",
                    "`off` is allowed only when no webhook.secret \
                     (WA_HUB_WEBHOOK_SIGNATURE_SECRET) is set",
                ))
            }
            (Some(p @ (SignaturePolicy::Required | SignaturePolicy::Optional)), false) => {
                return Err(invalid(
                    "webhook.signature",
                    format!(
                        "`{}` needs webhook.secret (WA_HUB_WEBHOOK_SIGNATURE_SECRET)",
                        if p == SignaturePolicy::Required {
                            "required"
                        } else {
                            "optional"
                        }
                    ),
                ))
            }
            (Some(p), _) => p,
        };
        if self
            .webhook
            .auth_token
            .as_ref()
            .is_some_and(Secret::is_empty)
        {
            return Err(invalid(
                "webhook.auth_token",
                "is empty; remove the key to disable bearer checking",
            ));
        }
        if self.auth.client_tokens.iter().any(Secret::is_empty) {
            return Err(invalid("auth.client_tokens", "contains an empty token"));
        }
        let dash = &self.auth.dashboard;
        if dash.password.as_ref().is_some_and(Secret::is_empty) {
            return Err(invalid(
                "auth.dashboard.password",
                "is empty; remove the key to disable the dashboard login",
            ));
        }
        if dash
            .session_secret
            .as_ref()
            .is_some_and(|s| s.expose().len() < MIN_SESSION_SECRET_BYTES)
        {
            return Err(invalid(
                "auth.dashboard.session_secret",
                format!("must be at least {MIN_SESSION_SECRET_BYTES} bytes"),
            ));
        }
        if let Some(s) = &self.upstream.admin_debug_secret {
            if s.is_empty() {
                return Err(invalid(
                    "upstream.admin_debug_secret",
                    "is empty; remove the key to send no X-Admin-Debug-Secret",
                ));
            }
            if http::HeaderValue::from_str(s.expose()).is_err() {
                return Err(invalid(
                    "upstream.admin_debug_secret",
                    "cannot be sent as a header value (control characters or non-ASCII)",
                ));
            }
        }
        if let Some(bad) = self.cors.allowed_origins.iter().find(|o| {
            o.as_str() != "*"
                && Url::parse(o)
                    .map(|u| u.origin().ascii_serialization() != o.trim_end_matches('/'))
                    .unwrap_or(true)
        }) {
            return Err(invalid(
                "cors.allowed_origins",
                format!("`{bad}` is not an origin like http://host:port (or `*`)"),
            ));
        }
        if self.log.level.trim().is_empty() {
            return Err(invalid("log.level", "is empty"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", format!("not a tracing filter: {e}")));
        }
        if self.metrics_listen.is_some_and(|m| m == self.listen) {
            return Err(invalid(
                "metrics_listen",
                "must differ from listen (/metrics is served on listen anyway)",
            ));
        }
        if let Err(e) = wa_hub_sinks::config::validate(&self.sinks) {
            return Err(invalid("sinks", e.to_string()));
        }
        let fleet = match self.fleet.clone() {
            Some(f) => Some(f.validate().map_err(|(key, reason)| invalid(key, reason))?),
            None => None,
        };
        let threads = self.threads.map(NonZeroUsize::get).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(NonZeroUsize::get)
                .unwrap_or(1)
        });
        Ok(Config {
            raw: self,
            upstream_addr,
            upstream_authority,
            upstream_path_prefix,
            signature,
            threads,
            fleet,
        })
    }
}

/// Loads `path`, applies the process environment and validates: what `main` calls.
///
/// # Errors
/// Any [`ConfigError`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let mut raw = RawConfig::from_file(path)?;
    raw.apply_env(std::env::vars())?;
    raw.validate()
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn nz(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).expect("non-zero default")
}

fn nzu(v: usize) -> NonZeroUsize {
    NonZeroUsize::new(v).expect("non-zero default")
}

fn ms(v: NonZeroU64) -> Duration {
    Duration::from_millis(v.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_file_gives_defaults_that_validate() {
        let c = RawConfig::from_yaml("# nothing\n")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(c.raw.listen.to_string(), "127.0.0.1:3001");
        assert_eq!(c.raw.metrics_listen.unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!(c.upstream_addr.to_string(), "127.0.0.1:3000");
        assert_eq!(c.signature, SignaturePolicy::Off);
        assert_eq!(c.raw.api_log.history.get(), 5000);
    }

    #[test]
    fn unknown_key_error_names_key_and_line() {
        let err = RawConfig::from_yaml("listen: 127.0.0.1:1\nupstream:\n  base_ur: http://x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("base_ur"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn zero_timeout_is_rejected_with_key_and_line() {
        let err = RawConfig::from_yaml("upstream:\n  read_timeout_ms: 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("upstream.read_timeout_ms"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn env_overrides_file_and_empty_env_is_ignored() {
        let mut raw = RawConfig::from_yaml("upstream:\n  token: file-token\n").unwrap();
        raw.apply_env(env(&[
            ("WA_HUB_BASE_URL", "http://127.0.0.1:4000/base/"),
            ("WA_HUB_TOKEN", ""),
            ("WA_HUB_WEBHOOK_SIGNATURE_SECRET", "s3cret"),
            ("UNRELATED", "x"),
        ]))
        .unwrap();
        let c = raw.validate().unwrap();
        assert_eq!(c.upstream_addr.port(), 4000);
        assert_eq!(c.upstream_path_prefix, "/base");
        assert_eq!(c.raw.upstream.token.expose(), "file-token");
        assert_eq!(c.signature, SignaturePolicy::Required);
    }

    #[test]
    fn bad_base_url_in_env_names_variable() {
        let mut raw = RawConfig::default();
        let err = raw
            .apply_env(env(&[("WA_HUB_BASE_URL", "not a url")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("WA_HUB_BASE_URL"), "{err}");
    }

    #[test]
    fn signature_off_with_secret_is_refused() {
        let raw = RawConfig::from_yaml("webhook:\n  secret: x\n  signature: off\n").unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("webhook.signature"), "{err}");
    }

    #[test]
    fn https_upstream_is_refused_clearly() {
        let raw = RawConfig::from_yaml("upstream:\n  base_url: https://127.0.0.1:3000\n").unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("upstream.base_url"), "{err}");
    }

    #[test]
    fn masked_yaml_never_shows_secrets() {
        let mut raw = RawConfig::from_yaml("auth:\n  client_tokens: [client-secret]\n").unwrap();
        raw.apply_env(env(&[
            ("WA_HUB_TOKEN", "api-secret"),
            ("WA_HUB_WEBHOOK_SIGNATURE_SECRET", "hmac-secret"),
            ("WEBHOOK_AUTH_TOKEN", "bearer-secret"),
        ]))
        .unwrap();
        let c = raw.validate().unwrap();
        let text = format!("{}{:?}", c.to_masked_yaml(), c);
        for s in [
            "client-secret",
            "api-secret",
            "hmac-secret",
            "bearer-secret",
        ] {
            assert!(!text.contains(s), "{s} leaked in {text}");
        }
        assert!(text.contains("********"));
    }

    #[test]
    fn dashboard_env_names_set_the_auth_dashboard_keys() {
        let mut raw = RawConfig::default();
        raw.apply_env(env(&[
            ("DASHBOARD_PASSWORD", "pw-secret"),
            ("DASHBOARD_SESSION_SECRET", "session-secret-0123456789"),
            ("DASHBOARD_SECURE_COOKIES", "False"),
            ("ADMIN_DEBUG_SECRET", "admin-secret"),
        ]))
        .unwrap();
        let c = raw.validate().unwrap();
        let d = &c.raw.auth.dashboard;
        assert_eq!(d.password.as_ref().unwrap().expose(), "pw-secret");
        assert!(!d.secure_cookies);
        assert_eq!(d.session_ttl_secs.get(), 86_400);
        let text = format!("{}{:?}", c.to_masked_yaml(), c);
        for s in ["pw-secret", "session-secret-0123456789", "admin-secret"] {
            assert!(!text.contains(s), "{s} leaked in {text}");
        }
        let mut raw = RawConfig::default();
        let err = raw
            .apply_env(env(&[("DASHBOARD_SECURE_COOKIES", "sometimes")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DASHBOARD_SECURE_COOKIES"), "{err}");
    }

    #[test]
    fn weak_or_empty_dashboard_secrets_are_refused() {
        for (yaml, key) in [
            (
                "auth:\n  dashboard:\n    password: ''\n",
                "auth.dashboard.password",
            ),
            (
                "auth:\n  dashboard:\n    password: x\n    session_secret: short\n",
                "auth.dashboard.session_secret",
            ),
            (
                "upstream:\n  admin_debug_secret: \"a\\nb\"\n",
                "upstream.admin_debug_secret",
            ),
        ] {
            let err = RawConfig::from_yaml(yaml)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn webhook_url_prefers_internal_then_public_then_listen() {
        let mut raw = RawConfig::default();
        assert_eq!(
            raw.clone().validate().unwrap().webhook_url(),
            "http://127.0.0.1:3001/api/wahub/webhook"
        );
        raw.dashboard.webhook_public_url = Some("https://pub/hook".into());
        assert_eq!(
            raw.clone().validate().unwrap().webhook_url(),
            "https://pub/hook"
        );
        raw.dashboard.webhook_internal_url = Some("http://int/hook".into());
        assert_eq!(raw.validate().unwrap().webhook_url(), "http://int/hook");
    }
}
