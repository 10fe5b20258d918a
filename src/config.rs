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
    /// The YAML did not match the schema: the message names the key path and its line.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// File that was parsed.
        path: PathBuf,
        /// Key path, line and problem ([`crate::config_yaml`]).
        source: crate::config_yaml::YamlError,
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
    /// [`ConfigError::Invalid`] for a key written in the file, with its line ([`load`]).
    #[error("config key {key} (line {line}): {reason}")]
    InvalidAt {
        /// Key path, e.g. `webhook.signature` or `sinks[2].kinds`.
        key: String,
        /// 1-based line of that key in the file.
        line: usize,
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

/// The YAML document as written. Every field has a default, so an empty file is valid. Its keys
/// are public interface: a key changes only with a note in the README.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Address of the public HTTP listener. Default `127.0.0.1:3001` (loopback: an open sidecar
    /// is an open wa-hub).
    pub listen: SocketAddr,
    /// Extra listener serving only `/metrics` (no client token needed there). Default
    /// `127.0.0.1:9464`; `null` disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// Worker threads of the proxy. Default: the number of CPU cores; at most [`MAX_THREADS`].
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
    /// HTTPS on `listen` (off unless both files are set).
    pub tls: TlsConfig,
    /// The operator console at `/console/`.
    pub console: ConsoleConfig,
    /// Where events go (`sse`, `stdout`, ...), each with its own filter. Default: one `sse`.
    pub sinks: Vec<SinkConfig>,
    /// Fleet mode over NATS JetStream (issue 12). Absent (default): single node.
    pub fleet: Option<crate::fleet::FleetConfig>,
}

impl crate::config_yaml::WithSinks for RawConfig {
    fn set_sinks(&mut self, sinks: Vec<SinkConfig>) {
        self.sinks = sinks;
    }
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
            tls: TlsConfig::default(),
            console: ConsoleConfig::default(),
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
    /// For an `https://` base_url: PEM file of the CA certificates to trust instead of the
    /// system's. Default none (the system's CAs).
    pub ca_file: Option<PathBuf>,
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
            ca_file: None,
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
    /// A body whose SHA-256 was accepted within this many seconds is a duplicate (200
    /// `{"ok":true,"duplicate":true}`, not stored or routed). 0 disables. Default 60.
    pub dedup_window_secs: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            secret: None,
            signature: None,
            auth_token: None,
            max_body_bytes: nzu(1024 * 1024),
            history: nzu(5000),
            dedup_window_secs: 60,
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
    /// One `info` line per proxied call (method, path, status, latency): the access log.
    /// Default `true`; `false` saves its cost per request (the API log and the metrics still
    /// record every call).
    pub access: bool,
    /// Access lines gather up to this many bytes and are written to stderr together (one
    /// `write` instead of one per call), like nginx's `access_log ... buffer=`. Default 65536;
    /// 0 writes each line at once; at most [`MAX_ACCESS_BUFFER_BYTES`].
    pub access_buffer_bytes: usize,
    /// Longest time a gathered access line waits before it is written, ms (nginx's `flush=`).
    /// Default 1000; at least 1. Lines are also written before any other log line and at
    /// shutdown.
    pub access_flush_ms: NonZeroU64,
}

/// Largest `threads`. Pingora starts this many threads for each of its services at start
/// (the proxy, the sinks, the pollers): a million never finished starting.
pub const MAX_THREADS: usize = 1024;

/// Largest `log.access_buffer_bytes`.
pub const MAX_ACCESS_BUFFER_BYTES: usize = 16 << 20;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            access: true,
            access_buffer_bytes: 64 << 10,
            access_flush_ms: NonZeroU64::new(1000).expect("nonzero"),
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

/// `tls.*`: HTTPS on `listen` (src/tls.rs). With both files set, `listen` speaks HTTPS only,
/// offering HTTP/2 and HTTP/1.1 by ALPN; without them, plain HTTP/1.1.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (server certificate first). Default none.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate. Default none.
    pub key_file: Option<PathBuf>,
}

/// `console.*`: the operator console (issue 11).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console at `/console/` (and redirect `/` there). Default `true`; when `false`
    /// both answer 404.
    pub enabled: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self { enabled: true }
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
    /// The same, as the header value the proxy inserts (built once, not per request).
    pub upstream_host_header: http::HeaderValue,
    /// `Authorization: Bearer <upstream.token>` as the proxy inserts it (marked sensitive: it
    /// never shows in `Debug` output).
    pub upstream_authorization: http::HeaderValue,
    /// The base URL's host (without brackets): the TLS server name of an `https://` upstream.
    pub upstream_host: String,
    /// Whether the upstream is `https://`.
    pub upstream_tls: bool,
    /// The CAs of `upstream.ca_file`, loaded at validation; `None`: the system's.
    pub upstream_ca: Option<Vec<reqwest::Certificate>>,
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
    /// public one, else `http://<listen>/api/wahub/webhook` (`https://` with `tls`).
    pub fn webhook_url(&self) -> String {
        let d = &self.raw.dashboard;
        let scheme = if self.tls_listener().is_some() {
            "https"
        } else {
            "http"
        };
        d.webhook_internal_url
            .clone()
            .or_else(|| d.webhook_public_url.clone())
            .unwrap_or_else(|| format!("{scheme}://{}/api/wahub/webhook", self.raw.listen))
    }

    /// `(cert_file, key_file)` when `listen` speaks HTTPS.
    pub fn tls_listener(&self) -> Option<(&Path, &Path)> {
        match (&self.raw.tls.cert_file, &self.raw.tls.key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            _ => None,
        }
    }

    /// Where the sidecar's own requests to wa-hub go, without path: `http://<resolved addr>`,
    /// or `https://<host[:port]>` (the name is pinned to the resolved address by the client,
    /// [`crate::tls::upstream_client`]).
    pub fn upstream_origin(&self) -> String {
        if self.upstream_tls {
            format!("https://{}", self.upstream_authority)
        } else {
            format!("http://{}", self.upstream_addr)
        }
    }

    /// The effective configuration as YAML, secrets masked.
    pub fn to_masked_yaml(&self) -> String {
        let mut raw = self.raw.clone();
        raw.webhook.signature = Some(self.signature);
        raw.threads = NonZeroUsize::new(self.threads);
        serde_yaml::to_string(&raw).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// Environment variables that override config keys (names users already have). Public
/// interface: a name changes only with a note in the README.
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
    /// Parses YAML text. Blank or comment-only text gives the defaults.
    ///
    /// # Errors
    /// [`crate::config_yaml::YamlError`], which names the key path and its line.
    pub fn from_yaml(text: &str) -> Result<Self, crate::config_yaml::YamlError> {
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Self::default());
        }
        crate::config_yaml::parse::<RawConfig>(text)
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
    /// `upstream.token` that is not visible ASCII (white space, control or non-ASCII characters); an
    /// empty dashboard password or admin debug secret; a session secret under
    /// [`MIN_SESSION_SECRET_BYTES`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let upstream = resolve_upstream(&self.upstream.base_url)?;
        let upstream_ca = match &self.upstream.ca_file {
            Some(path) => Some(
                crate::tls::load_ca_file(path)
                    .map_err(|e| invalid("upstream.ca_file", e.to_string()))?,
            ),
            None => None,
        };
        self.check_tls_listener()?;
        let signature = self.webhook.policy()?;
        self.check_secrets()?;
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
        if self.log.access_buffer_bytes > MAX_ACCESS_BUFFER_BYTES {
            return Err(invalid(
                "log.access_buffer_bytes",
                format!("is over {MAX_ACCESS_BUFFER_BYTES} (16 MiB)"),
            ));
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
            Some(f) => Some(
                f.validate()
                    .map_err(|(key, reason)| invalid(key, reason))?
                    .with_webhook_dedup(self.webhook.dedup_window_secs),
            ),
            None => None,
        };
        if let Some(threads) = self.threads.filter(|t| t.get() > MAX_THREADS) {
            return Err(invalid(
                "threads",
                format!("{threads} is over {MAX_THREADS}"),
            ));
        }
        let threads = self.threads.map(NonZeroUsize::get).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(NonZeroUsize::get)
                .unwrap_or(1)
                .min(MAX_THREADS)
        });
        // Visible ASCII only: `HeaderValue` would also take tabs, spaces and bytes above 0x7f,
        // which wa-hub (Node) would read as other characters than the key's.
        let token = self.upstream.token.expose();
        let bad_token = || {
            invalid(
                "upstream.token",
                "holds characters other than visible ASCII (spaces, tabs, line breaks, \
                 control or non-ASCII characters)",
            )
        };
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad_token());
        }
        let mut upstream_authorization =
            http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| bad_token())?;
        upstream_authorization.set_sensitive(true);
        let upstream_host_header = http::HeaderValue::from_str(&upstream.authority)
            .map_err(|_| invalid("upstream.base_url", "the host cannot be sent as Host"))?;
        Ok(Config {
            raw: self,
            upstream_addr: upstream.addr,
            upstream_host_header,
            upstream_authorization,
            upstream_authority: upstream.authority,
            upstream_host: upstream.host,
            upstream_tls: upstream.tls,
            upstream_ca,
            upstream_path_prefix: upstream.path_prefix,
            signature,
            threads,
            fleet,
        })
    }

    /// `tls.cert_file` and `tls.key_file` come together and hold a usable certificate and key.
    fn check_tls_listener(&self) -> Result<(), ConfigError> {
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => crate::tls::check_listener_files(cert, key)
                .map_err(|e| invalid("tls", e.to_string())),
            (None, None) => Ok(()),
            (Some(_), None) => Err(invalid(
                "tls.key_file",
                "is missing: HTTPS needs both tls.cert_file and tls.key_file",
            )),
            (None, Some(_)) => Err(invalid(
                "tls.cert_file",
                "is missing: HTTPS needs both tls.cert_file and tls.key_file",
            )),
        }
    }

    /// Secrets that are set must be usable: no empty token, password or secret; a session
    /// secret long enough; an admin secret that fits in a header.
    fn check_secrets(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }
}

impl WebhookConfig {
    /// The effective signature policy: `required` with a secret and `off` without, unless
    /// set; `off` with a secret, or `required`/`optional` without one, is refused.
    fn policy(&self) -> Result<SignaturePolicy, ConfigError> {
        let secret_set = self.secret.as_ref().is_some_and(|s| !s.is_empty());
        match (self.signature, secret_set) {
            (None, true) => Ok(SignaturePolicy::Required),
            (None, false) => Ok(SignaturePolicy::Off),
            (Some(SignaturePolicy::Off), true) => Err(invalid(
                "webhook.signature",
                "`off` is allowed only when no webhook.secret \
                 (WA_HUB_WEBHOOK_SIGNATURE_SECRET) is set",
            )),
            (Some(p @ (SignaturePolicy::Required | SignaturePolicy::Optional)), false) => {
                Err(invalid(
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
            (Some(p), _) => Ok(p),
        }
    }
}

/// Where wa-hub is, from `upstream.base_url`.
struct ResolvedUpstream {
    addr: SocketAddr,
    authority: String,
    host: String,
    tls: bool,
    path_prefix: String,
}

/// The upstream's socket address (resolved once, at start-up), `Host` value, TLS server name
/// and path prefix, from `upstream.base_url`: `http` or `https`, a host, no credentials, query
/// or fragment.
fn resolve_upstream(url: &Url) -> Result<ResolvedUpstream, ConfigError> {
    let bad = |reason: String| invalid("upstream.base_url", reason);
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad(format!(
            "scheme `{}` is not supported: use http:// or https://",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "must not carry credentials; set upstream.token (WA_HUB_TOKEN) instead".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment".into()));
    }
    let host = url.host_str().ok_or_else(|| bad("has no host".into()))?;
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (bare_host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve `{host}`: {e}")))?
        .next()
        .ok_or_else(|| bad(format!("`{host}` resolves to no address")))?;
    Ok(ResolvedUpstream {
        addr,
        authority: match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        },
        host: bare_host.to_owned(),
        tls: url.scheme() == "https",
        path_prefix: url.path().trim_end_matches('/').to_owned(),
    })
}

/// The variable that overrides `log.level`. Public interface.
pub const RUST_LOG: &str = "RUST_LOG";

/// `RUST_LOG`'s value when set and not empty (an empty variable counts as unset).
///
/// # Errors
/// [`ConfigError::Env`] when the value is not UTF-8.
pub fn rust_log(value: Option<std::ffi::OsString>) -> Result<Option<String>, ConfigError> {
    match value {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v.into_string().map(Some).map_err(|_| ConfigError::Env {
            var: RUST_LOG,
            key: "log.level",
            reason: "is not UTF-8 text".into(),
        }),
    }
}

/// Checks a `RUST_LOG` value (`None`: unset) as a `tracing` filter.
///
/// # Errors
/// [`ConfigError::Env`] naming `RUST_LOG`, with the parser's reason, when it is not UTF-8 or
/// not a filter such as `info` or `wa_hub_sidecar=debug,pingora=warn`.
pub fn check_rust_log(value: Option<std::ffi::OsString>) -> Result<(), ConfigError> {
    if let Some(v) = rust_log(value)? {
        tracing_subscriber::EnvFilter::try_new(&v).map_err(|e| ConfigError::Env {
            var: RUST_LOG,
            key: "log.level",
            reason: format!(
                "`{v}` is not a tracing filter ({e}); use e.g. `info` or `wa_hub_sidecar=debug`"
            ),
        })?;
    }
    Ok(())
}

/// Loads `path`, applies the process environment, checks `RUST_LOG` and validates: what
/// `main` calls.
///
/// # Errors
/// Any [`ConfigError`].
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut raw = RawConfig::from_yaml(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    check_rust_log(std::env::var_os(RUST_LOG))?;
    // `std::env::vars()` panics on a value that is not UTF-8: refuse such an override by name.
    let mut vars = Vec::new();
    for (k, v) in std::env::vars_os() {
        let Ok(k) = k.into_string() else { continue };
        match v.into_string() {
            Ok(v) => vars.push((k, v)),
            Err(_) => {
                if let Some((var, key)) = ENV_OVERRIDES.iter().find(|(n, _)| *n == k) {
                    return Err(ConfigError::Env {
                        var,
                        key,
                        reason: "is not UTF-8 text".into(),
                    });
                }
            }
        }
    }
    // A refused value that came from the environment is named by its variable, not by a line
    // of the file it overrode.
    let from_env: Vec<(&'static str, &'static str)> = ENV_OVERRIDES
        .iter()
        .filter(|(var, _)| vars.iter().any(|(k, v)| k == var && !v.is_empty()))
        .copied()
        .collect();
    raw.apply_env(vars)?;
    raw.validate().map_err(|e| match e {
        ConfigError::Invalid { key, reason } => match from_env.iter().find(|(_, k)| *k == key) {
            Some(&(var, key)) => ConfigError::Env { var, key, reason },
            None => with_line(ConfigError::Invalid { key, reason }, &text),
        },
        other => with_line(other, &text),
    })
}

/// Adds the line of the key at fault to a [`ConfigError::Invalid`] when the file has that key.
/// A sink's error (key `sinks`, reason `sinks[i] (name): <key>: …`) points at that sink's key,
/// else at the entry.
fn with_line(e: ConfigError, text: &str) -> ConfigError {
    let ConfigError::Invalid { key, reason } = e else {
        return e;
    };
    let mut candidates = Vec::new();
    if key == "sinks" {
        if let Some(entry) = reason
            .split_whitespace()
            .next()
            .filter(|w| w.starts_with("sinks["))
        {
            let entry = entry.trim_end_matches(':');
            if let Some((_, rest)) = reason.split_once("): ") {
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                candidates.push(format!("{entry}.{word}"));
            }
            candidates.push(entry.to_owned());
        }
    }
    candidates.push(key.to_owned());
    match candidates
        .iter()
        .find_map(|k| Some((k, crate::config_yaml::line_of(text, k)?)))
    {
        Some((k, line)) => ConfigError::InvalidAt {
            key: k.clone(),
            line,
            reason,
        },
        None => ConfigError::Invalid { key, reason },
    }
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
    fn unset_or_empty_rust_log_is_fine_and_a_bad_one_names_the_variable() {
        assert!(check_rust_log(None).is_ok());
        assert!(check_rust_log(Some("".into())).is_ok());
        assert!(check_rust_log(Some("wa_hub_sidecar=debug,warn".into())).is_ok());
        for bad in ["=", "info,foo=notalevel", "[{"] {
            let e = check_rust_log(Some(bad.into())).unwrap_err().to_string();
            assert!(e.starts_with("environment variable RUST_LOG"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_valid_file_gives_the_same_config_as_plain_serde() {
        let text = "listen: 127.0.0.1:4000\nupstream:\n  token: t\nsinks:\n  - type: sse\n    initial_limit: 10\n  - type: stdout\n    name: out\n    kinds: [webhook]\n    events: ['mess*']\n    queue_capacity: 5\n";
        let ours = RawConfig::from_yaml(text).unwrap();
        let plain: RawConfig = serde_yaml::from_str(text).unwrap();
        assert_eq!(
            serde_yaml::to_string(&ours).unwrap(),
            serde_yaml::to_string(&plain).unwrap()
        );
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
    fn an_upstream_token_a_header_cannot_carry_is_refused_and_never_printed() {
        for bad in ["abc\r\nX-Evil: 1", "abc\u{e9}", "ab\tc", "ab c"] {
            let mut raw = RawConfig::default();
            raw.upstream.token = Secret::from(bad);
            let err = raw.validate().unwrap_err().to_string();
            assert!(err.contains("upstream.token"), "{bad:?}: {err}");
            assert!(!err.contains("Evil") && !err.contains(bad), "{err}");
        }
        let mut raw = RawConfig::default();
        raw.upstream.token = Secret::from("tok-123");
        let c = raw.validate().unwrap();
        assert_eq!(c.upstream_authorization, "Bearer tok-123");
        assert!(
            !format!("{c:?}").contains("tok-123"),
            "Debug hides the token"
        );
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

    /// `yaml` parses but does not validate, and the error names `key`.
    fn assert_refused(yaml: &str, key: &str) {
        let err = RawConfig::from_yaml(yaml)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{yaml}: {err}");
    }

    #[test]
    fn sizes_that_would_exhaust_memory_or_threads_at_start_are_refused_by_key() {
        for (yaml, key) in [
            ("threads: 1025\n", "threads"),
            ("threads: 18446744073709551615\n", "threads"),
            (
                "sinks:\n  - type: sse\n    client_backlog: 100001\n",
                "client_backlog",
            ),
            (
                "sinks:\n  - type: stdout\n    queue_capacity: 10000001\n",
                "queue_capacity",
            ),
            (
                "sinks:\n  - type: stdout\n    queue_capacity: 0\n",
                "queue_capacity",
            ),
            (
                "sinks:\n  - type: mqtt\n    url: mqtt://127.0.0.1:1883\n    buffer_capacity: 4611686018427387904\n",
                "buffer_capacity",
            ),
        ] {
            assert_refused(yaml, key);
        }
        let ok = "threads: 1024\nsinks:\n  - type: sse\n    client_backlog: 100000\n  - type: stdout\n    queue_capacity: 10000000\n";
        assert!(RawConfig::from_yaml(ok).unwrap().validate().is_ok());
    }

    #[test]
    fn an_access_buffer_over_16_mib_or_a_zero_flush_interval_is_refused_by_key() {
        assert_refused(
            "log:\n  access_buffer_bytes: 16777217\n",
            "log.access_buffer_bytes",
        );
        for flush in ["0", "-5"] {
            let err = RawConfig::from_yaml(&format!("log:\n  access_flush_ms: {flush}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("log.access_flush_ms"), "{err}");
            assert!(err.contains("from 1"), "{err}");
        }
        let ok = "log:\n  access_buffer_bytes: 0\n  access_flush_ms: 1\n";
        assert!(RawConfig::from_yaml(ok).unwrap().validate().is_ok());
    }

    #[test]
    fn signature_off_with_secret_is_refused() {
        let raw = RawConfig::from_yaml("webhook:\n  secret: x\n  signature: off\n").unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("webhook.signature"), "{err}");
    }

    #[test]
    fn other_upstream_schemes_are_refused_clearly() {
        let raw = RawConfig::from_yaml("upstream:\n  base_url: ftp://127.0.0.1:3000\n").unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("upstream.base_url"), "{err}");
        let c = RawConfig::from_yaml("upstream:\n  base_url: https://127.0.0.1\n")
            .unwrap()
            .validate()
            .unwrap();
        assert!(c.upstream_tls);
        assert_eq!(c.upstream_addr.port(), 443);
        assert_eq!(c.upstream_origin(), "https://127.0.0.1");
    }

    #[test]
    fn half_a_tls_pair_or_unreadable_files_are_refused_by_key() {
        let err = RawConfig::from_yaml("tls:\n  cert_file: /nonexistent/c.pem\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.key_file"), "{err}");
        let err = RawConfig::from_yaml(
            "tls:\n  cert_file: /nonexistent/c.pem\n  key_file: /nonexistent/k.pem\n",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("config key tls") && err.contains("/nonexistent/c.pem"),
            "{err}"
        );
        let err = RawConfig::from_yaml("upstream:\n  ca_file: Cargo.toml\n")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("upstream.ca_file") && err.contains("no PEM certificate"),
            "{err}"
        );
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
            assert_refused(yaml, key);
        }
    }

    #[test]
    fn a_refused_value_carries_the_line_of_its_key() {
        let text = "listen: 127.0.0.1:1\nwebhook:\n  secret: x\n  signature: off\nsinks:\n  - type: sse\n  - type: stdout\n  - type: forward\n    url: http://127.0.0.1:9/\n    kinds: [apiLog]\n";
        let e = RawConfig::from_yaml(text).unwrap().validate().unwrap_err();
        let e = with_line(e, text).to_string();
        assert!(
            e.starts_with("config key webhook.signature (line 4):"),
            "{e}"
        );
        let text = text.replace("  signature: off\n", "");
        let e = RawConfig::from_yaml(&text).unwrap().validate().unwrap_err();
        let e = with_line(e, &text).to_string();
        assert!(e.starts_with("config key sinks[2].kinds (line 9):"), "{e}");
        let text = "sinks:\n  - type: sse\n  - type: sse\n";
        let e = RawConfig::from_yaml(text).unwrap().validate().unwrap_err();
        let e = with_line(e, text).to_string();
        assert!(e.starts_with("config key sinks[1] (line 3):"), "{e}");
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
