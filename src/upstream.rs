//! The sidecar's own calls to wa-hub (not the proxy's): the readiness probe and the status
//! engine's polls. One small client that knows wa-hub's address, path prefix, `Host` and API
//! key, so no caller builds a request to wa-hub by hand.

use std::time::Duration;

use serde_json::Value;
use url::Url;

use crate::config::Config;

/// A client for wa-hub's REST API, with the key added to every request.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    base: String,
    authority: String,
    token: crate::config::Secret,
    read_timeout: Duration,
    health_timeout: Duration,
}

impl Upstream {
    /// A client for the validated config's upstream (`upstream.*`).
    ///
    /// # Errors
    /// reqwest's error when the HTTP client cannot be built.
    pub fn new(config: &Config) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: crate::tls::upstream_client(
                config.connect_timeout(),
                &config.upstream_host,
                config.upstream_addr,
                config.upstream_ca.as_deref(),
            )?,
            base: format!(
                "{}{}/",
                config.upstream_origin(),
                config.upstream_path_prefix
            ),
            authority: config.upstream_authority.clone(),
            token: config.raw.upstream.token.clone(),
            read_timeout: config.read_timeout(),
            health_timeout: config.health_timeout(),
        })
    }

    /// `<upstream origin><prefix>/<segments...>`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Option<Url> {
        let mut url = Url::parse(&self.base).ok()?;
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .extend(segments);
        Some(url)
    }

    /// `<upstream origin><prefix><path_and_query>` for a path that starts with `/` and is
    /// already percent-encoded.
    pub fn url_of(&self, path_and_query: &str) -> Option<Url> {
        Url::parse(&format!(
            "{}{path_and_query}",
            self.base.trim_end_matches('/')
        ))
        .ok()
    }

    /// A request to wa-hub with its `Host` and `Authorization: Bearer <key>`, timing out after
    /// `upstream.read_timeout_ms`.
    pub fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header("host", &self.authority)
            .bearer_auth(self.token.expose())
            .timeout(self.read_timeout)
    }

    /// `GET <segments>` and its JSON body, for a 2xx answer; `None` otherwise (logged at debug:
    /// polls retry on their next tick).
    pub async fn get_json(&self, segments: &[&str]) -> Option<Value> {
        let url = self.url(segments)?;
        let path = url.path().to_owned();
        match self.request(reqwest::Method::GET, url).send().await {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            Ok(r) => {
                tracing::debug!(%path, status = r.status().as_u16(), "wa-hub call: no data");
                None
            }
            Err(e) => {
                tracing::debug!(%path, error = %e, "wa-hub call failed");
                None
            }
        }
    }

    /// `GET /health` within `upstream.health_timeout_ms`.
    ///
    /// # Errors
    /// What went wrong, in words fit for a client (no addresses, no secrets).
    pub async fn health(&self) -> Result<(), String> {
        let Some(url) = self.url(&["health"]) else {
            return Err("wa-hub URL is unusable".to_owned());
        };
        let result = self
            .request(reqwest::Method::GET, url)
            .timeout(self.health_timeout)
            .send()
            .await;
        match result {
            Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
            Ok(r) => Err(format!("wa-hub /health answered {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Err("wa-hub /health timed out".to_owned()),
            Err(_) => Err("wa-hub is unreachable".to_owned()),
        }
    }
}
