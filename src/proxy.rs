//! The thin Pingora `ProxyHttp`: routes each request, serves local routes from
//! `request_filter`, and proxies `/api/wahub/*` to wa-hub with the API key injected, recording
//! every proxied call as an ApiLog (DESIGN.md "Engineering notes on Pingora 0.9").

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::Utc;
use http::header::{self, HeaderName};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use pingora::{Error, ErrorSource, ErrorType, Result};
use wa_hub_sinks::envelope::iso_timestamp;
use wa_hub_sinks::{ApiLog, Payload};

use crate::apilog::BodyCapture;
use crate::app::{App, InflightGuard};
use crate::auth;
use crate::console;
use crate::cors;
use crate::local::{self, LocalResponse};
use crate::routes::{self, Route};
use crate::signature::SIGNATURE_HEADER;
use crate::status::ApiStatus;
use crate::stream;
use crate::webhook::{self, WebhookHeaders};

/// Headers an upstream response's `Connection` list may not remove: message framing.
const PROTECTED: &[&str] = &["content-length", "transfer-encoding"];

/// The Pingora service: one instance serves every request.
pub struct SidecarProxy {
    app: Arc<App>,
    metrics_only: bool,
}

impl SidecarProxy {
    /// The main listener's service over the shared state.
    pub fn new(app: Arc<App>) -> Self {
        Self {
            app,
            metrics_only: false,
        }
    }

    /// The `metrics_listen` service: serves `GET /metrics` (no client token) and 404 otherwise.
    pub fn metrics_only(app: Arc<App>) -> Self {
        Self {
            app,
            metrics_only: true,
        }
    }
}

/// Per-request state (Pingora's `CTX`).
pub struct Ctx {
    _inflight: InflightGuard,
    start: Instant,
    started_at: chrono::DateTime<Utc>,
    /// Set for proxied calls once the request passed every check.
    call: Option<ProxiedCall>,
}

/// What the ApiLog needs of a proxied call.
struct ProxiedCall {
    upstream_path: String,
    instance_id: Option<String>,
    request_body: BodyCapture,
    response_body: BodyCapture,
    error: Option<String>,
}

#[async_trait]
impl ProxyHttp for SidecarProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            _inflight: self.app.inflight_guard(),
            start: Instant::now(),
            started_at: Utc::now(),
            call: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let origins = &self.app.config.raw.cors.allowed_origins;
        if self.app.is_shutting_down() {
            session.set_keepalive(None);
            let resp = LocalResponse::error(503, "Shutting down", "the sidecar is draining");
            return write_local(session, resp, origins).await;
        }
        let req = session.req_header();
        let method = req.method.clone();
        let raw_path = req.uri.path().to_owned();
        let query = req.uri.query().map(str::to_owned);
        if self.metrics_only {
            let resp = match (raw_path.as_str(), method == http::Method::GET) {
                ("/metrics", true) => local::metrics(&self.app),
                ("/metrics", false) => local::method_not_allowed("GET"),
                _ => local::not_found(),
            };
            return write_local(session, resp, &[]).await;
        }
        let cors_origin =
            cors::allow_origin(&self.app.config.raw.cors.allowed_origins, &req.headers);
        if let Some(origin) = &cors_origin {
            if cors::is_preflight(&method, &req.headers) {
                let mut resp = LocalResponse::empty(204);
                resp.headers = cors::preflight_headers(origin, &req.headers);
                return write_local(session, resp, origins).await;
            }
        }

        let route = match routes::route(&raw_path) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(path = %raw_path, "refused: {e}");
                session.set_keepalive(None);
                return write_local(
                    session,
                    LocalResponse::error(400, "Bad request", e.to_string()),
                    origins,
                )
                .await;
            }
        };
        let resp = match route {
            Route::Healthz if method == http::Method::GET => local::healthz(),
            Route::Readyz if method == http::Method::GET => local::readyz(&self.app).await,
            Route::Config if method == http::Method::GET => local::config(&self.app),
            Route::Healthz | Route::Readyz | Route::Config => local::method_not_allowed("GET"),
            Route::Webhook if method == http::Method::POST => self.webhook(session).await,
            Route::Webhook => local::method_not_allowed("POST"),
            Route::Instances | Route::InstanceStatus(_) | Route::Events | Route::Stream
                if method != http::Method::GET =>
            {
                local::method_not_allowed("GET")
            }
            Route::Instances | Route::InstanceStatus(_) | Route::Events | Route::Stream
                if !self.client_allowed(session, query.as_deref()) =>
            {
                unauthorized()
            }
            Route::Stream => match &self.app.sse {
                None => LocalResponse::error(404, "Not found", "no sink of type sse is configured"),
                Some(hub) => {
                    match stream::serve(
                        &self.app,
                        hub,
                        session,
                        query.as_deref(),
                        cors_origin.as_deref(),
                    )
                    .await?
                    {
                        Some(refusal) => refusal,
                        None => return Ok(true),
                    }
                }
            },
            Route::DeadLetters(_) if method != http::Method::GET => {
                local::method_not_allowed("GET")
            }
            Route::DeadLetterReplay(_) if method != http::Method::POST => {
                local::method_not_allowed("POST")
            }
            Route::DeadLetters(_) | Route::DeadLetterReplay(_)
                if !self.client_allowed(session, query.as_deref()) =>
            {
                unauthorized()
            }
            Route::DeadLetters(name) => {
                local::dead_letters(
                    &self.app,
                    &name,
                    routes::query_param(query.as_deref(), "limit").as_deref(),
                )
                .await
            }
            Route::DeadLetterReplay(name) => match read_small_body(session).await {
                Ok(body) => {
                    local::replay_dead_letters(
                        &self.app,
                        &name,
                        routes::query_param(query.as_deref(), "id").as_deref(),
                        &body,
                    )
                    .await
                }
                Err(refusal) => {
                    session.set_keepalive(None);
                    refusal
                }
            },
            Route::Instances => local::instances(&self.app),
            Route::InstanceStatus(id) => local::instance_status(&self.app, &id),
            Route::Events => local::events(
                &self.app,
                routes::query_param(query.as_deref(), "instanceId").as_deref(),
                routes::query_param(query.as_deref(), "limit").as_deref(),
            ),
            Route::Metrics if method != http::Method::GET => local::method_not_allowed("GET"),
            Route::Metrics if !self.client_allowed(session, query.as_deref()) => unauthorized(),
            Route::Metrics => local::metrics(&self.app),
            Route::ConsoleRedirect | Route::Console(_) if !self.app.config.raw.console.enabled => {
                local::not_found()
            }
            Route::ConsoleRedirect | Route::Console(_)
                if method != http::Method::GET && method != http::Method::HEAD =>
            {
                local::method_not_allowed("GET, HEAD")
            }
            Route::ConsoleRedirect => console::redirect(),
            Route::Console(path) => console::serve(
                &path,
                session
                    .req_header()
                    .headers
                    .get(header::IF_NONE_MATCH)
                    .and_then(|v| v.to_str().ok()),
            ),
            Route::InstanceQr(_) | Route::Sinks if method != http::Method::GET => {
                local::method_not_allowed("GET")
            }
            Route::InstanceQr(_) | Route::Sinks
                if !self.client_allowed(session, query.as_deref()) =>
            {
                unauthorized()
            }
            Route::InstanceQr(id) => crate::qr::handle(&self.app, &id),
            Route::Sinks => crate::sink_health::handle(&self.app),
            Route::NotFound => local::not_found(),
            Route::Proxy(upstream_path) => {
                if let Some(resp) = self.admit_proxied(session) {
                    resp
                } else {
                    let path_and_query = match &query {
                        Some(q) => format!("{upstream_path}?{q}"),
                        None => upstream_path,
                    };
                    let cap = self.app.config.raw.api_log.max_body_bytes.get();
                    ctx.call = Some(ProxiedCall {
                        instance_id: routes::instance_id(&path_and_query),
                        upstream_path: path_and_query,
                        request_body: BodyCapture::new(cap),
                        response_body: BodyCapture::new(cap),
                        error: None,
                    });
                    return Ok(false);
                }
            }
        };
        write_local(session, resp, origins).await
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(call), Some(chunk)) = (ctx.call.as_mut(), body.as_ref()) {
            call.request_body.push(chunk);
            let limit = self.app.config.raw.proxy.max_body_bytes.get();
            if call.request_body.total() > limit {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body over proxy.max_body_bytes",
                );
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let cfg = &self.app.config;
        let mut peer = HttpPeer::new(cfg.upstream_addr, false, String::new());
        peer.options.connection_timeout = Some(cfg.connect_timeout());
        peer.options.read_timeout = Some(cfg.read_timeout());
        peer.options.write_timeout = Some(cfg.write_timeout());
        peer.options.idle_timeout = Some(cfg.idle_timeout());
        // Pingora strips hop-by-hop request headers (and those `Connection` names); wa-hub has
        // no WebSocket routes, so no upgrade is forwarded either.
        peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::deny_upgrades();
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let cfg = &self.app.config;
        let Some(call) = ctx.call.as_ref() else {
            return Error::e_explain(ErrorType::InternalError, "proxying without a route");
        };
        let uri: http::Uri = format!("{}{}", cfg.upstream_path_prefix, call.upstream_path)
            .parse()
            .map_err(|_| Error::explain(ErrorType::HTTPStatus(400), "unparsable path"))?;
        upstream.set_uri(uri);
        // `insert_header` replaces every existing value, whatever its letter case.
        upstream.insert_header(
            header::AUTHORIZATION,
            format!("Bearer {}", cfg.raw.upstream.token.expose()),
        )?;
        upstream.insert_header(header::HOST, cfg.upstream_authority.as_str())?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        strip_hop_by_hop_response(upstream_response);
        if let Some(origin) = cors::allow_origin(
            &self.app.config.raw.cors.allowed_origins,
            &session.req_header().headers,
        ) {
            upstream_response.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
            upstream_response.append_header(header::VARY, "Origin")?;
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let (Some(call), Some(chunk)) = (ctx.call.as_mut(), body.as_ref()) {
            call.response_body.push(chunk);
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let failure = classify_failure(e, self.app.config.read_timeout());
        if let Some(call) = ctx.call.as_mut() {
            call.error = Some(failure.message.clone());
        }
        if let Some(kind) = failure.upstream_kind {
            self.app
                .metrics
                .upstream_errors
                .with_label_values(&[kind])
                .inc();
        }
        tracing::warn!(
            status = failure.status,
            error = %failure.message,
            path = %ctx.call.as_ref().map(|c| c.upstream_path.as_str()).unwrap_or("-"),
            "proxy request failed"
        );
        // Once wa-hub's status line went to the client, an error body would be read as part of
        // that answer: end the connection instead, so the client sees a truncated response.
        let headers_sent = session.response_written().is_some();
        if headers_sent {
            session.set_keepalive(None);
        }
        if failure.status > 0 && !headers_sent {
            let resp = LocalResponse::error(failure.status, failure.error, failure.message);
            let origins = &self.app.config.raw.cors.allowed_origins;
            if let Err(we) = write_response(session, resp, origins).await {
                tracing::debug!("could not write error response: {we}");
            }
        }
        FailToProxy {
            error_code: failure.status,
            can_reuse_downstream: false,
        }
    }

    /// `fail_to_proxy` logs every failure once, with what the client got; Pingora's own error
    /// line would log it a second time (DESIGN.md style rule 7).
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let Some(call) = ctx.call.take() else {
            return;
        };
        let status_code = session.response_written().map(|h| h.status.as_u16());
        let log = ApiLog {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: iso_timestamp(ctx.started_at),
            method: session.req_header().method.to_string(),
            path: call.upstream_path,
            status_code,
            latency_ms: u64::try_from(ctx.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            request_body: call.request_body.to_json(),
            response_body: call.response_body.to_json(),
            instance_id: call.instance_id,
            error: call.error,
        };
        tracing::info!(
            method = %log.method,
            path = %log.path,
            status = log.status_code.unwrap_or(0),
            latency_ms = log.latency_ms,
            "proxied"
        );
        let route = self.app.metrics.route_label(&log.path);
        self.app
            .metrics
            .observe_proxy(&log.method, &route, log.status_code, ctx.start.elapsed());
        let learned = (log.method == "GET" && log.status_code == Some(200))
            .then(|| api_knowledge(&log))
            .flatten();
        let mut engine = self.app.engine();
        let event = self.app.bus.publish(Payload::ApiLog(log));
        self.app.api_logs.push(event);
        let now = Utc::now();
        let changed = match learned {
            Some(ApiKnowledge::ClientStatus(id, api)) => {
                engine.apply_api_status(&id, api, now).into_iter().collect()
            }
            Some(ApiKnowledge::InstanceList(body)) => engine.apply_instance_list(&body, now),
            None => Vec::new(),
        };
        for status in changed {
            self.app.bus.publish(Payload::Status(status));
        }
    }
}

/// What the status engine can learn from a successful proxied GET (webhook issue §5).
enum ApiKnowledge {
    /// `GET /instances/<id>/client/status`.
    ClientStatus(String, ApiStatus),
    /// `GET /instances`.
    InstanceList(serde_json::Value),
}

fn api_knowledge(log: &ApiLog) -> Option<ApiKnowledge> {
    let path = log.path.split('?').next().unwrap_or_default();
    let body = || serde_json::from_str::<serde_json::Value>(log.response_body.get()).ok();
    if path == "/instances" || path == "/instances/" {
        return body().map(ApiKnowledge::InstanceList);
    }
    if path.ends_with("/client/status") {
        let id = log.instance_id.clone()?;
        let rest = path.strip_prefix("/instances/")?;
        // Exactly /instances/<id>/client/status.
        if rest.split('/').count() != 3 {
            return None;
        }
        return ApiStatus::from_response(&body()?).map(|api| ApiKnowledge::ClientStatus(id, api));
    }
    None
}

impl SidecarProxy {
    /// Whether the request carries a valid client token (header, or `access_token` query
    /// parameter on local routes).
    fn client_allowed(&self, session: &Session, query: Option<&str>) -> bool {
        let authz = session
            .req_header()
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let query_token = routes::query_param(query, "access_token");
        auth::client_allowed(
            &self.app.config.raw.auth.client_tokens,
            authz,
            query_token.as_deref(),
        )
    }

    /// `POST /api/wahub/webhook`: prechecks, bounded body read, then [`webhook::ingest`].
    async fn webhook(&self, session: &mut Session) -> LocalResponse {
        let req = session.req_header();
        let all = |name: &str| -> Vec<Vec<u8>> {
            req.headers
                .get_all(name)
                .iter()
                .map(|v| v.as_bytes().to_vec())
                .collect()
        };
        let headers = WebhookHeaders {
            authorization: all("authorization"),
            signatures: all(SIGNATURE_HEADER),
            content_type: req
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            content_length: req
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        };
        if let Some(rejection) = webhook::precheck(&self.app, &headers) {
            session.set_keepalive(None);
            return rejection;
        }
        let limit = self.app.config.raw.webhook.max_body_bytes.get();
        let mut body = BytesMut::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        session.set_keepalive(None);
                        return webhook::too_large(&self.app);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(reason = "read_error", error = %e, "webhook rejected");
                    self.app.metrics.webhook_rejected("read_error");
                    session.set_keepalive(None);
                    return LocalResponse::error(400, "Bad request", "could not read the body");
                }
            }
        }
        webhook::ingest(&self.app, &headers, body.freeze())
    }

    /// Checks a proxied request before anything is sent upstream: client token (401) and a
    /// declared body over the limit (413). `None` admits it.
    fn admit_proxied(&self, session: &mut Session) -> Option<LocalResponse> {
        let cfg = &self.app.config.raw;
        let req = session.req_header();
        let authz = req.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        if !auth::client_allowed(&cfg.auth.client_tokens, authz, None) {
            return Some(unauthorized());
        }
        let declared = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > cfg.proxy.max_body_bytes.get() as u64) {
            session.set_keepalive(None);
            return Some(too_large(cfg.proxy.max_body_bytes.get()));
        }
        None
    }
}

/// Largest request body of the sidecar's own POST routes other than the webhook.
const SMALL_BODY_MAX: usize = 64 * 1024;

/// Reads the whole request body of a local route, refusing more than [`SMALL_BODY_MAX`].
async fn read_small_body(session: &mut Session) -> std::result::Result<Bytes, LocalResponse> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > SMALL_BODY_MAX {
                    return Err(too_large(SMALL_BODY_MAX));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(_) => {
                return Err(LocalResponse::error(
                    400,
                    "Bad request",
                    "could not read the body",
                ))
            }
        }
    }
}

fn unauthorized() -> LocalResponse {
    LocalResponse::error(401, "Unauthorized", "a valid client token is required")
        .with_header("www-authenticate", "Bearer")
}

fn too_large(limit: usize) -> LocalResponse {
    LocalResponse::error(
        413,
        "Request body too large",
        format!("the limit is {limit} bytes"),
    )
}

/// An upstream failure as the client sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    /// Status to answer; 0 when the client is gone and nothing can be written.
    pub status: u16,
    /// The `error` field.
    pub error: &'static str,
    /// The `message` field: what happened, no internals.
    pub message: String,
    /// For failures of wa-hub, the metric kind: `connect_refused`, `connect_timeout`,
    /// `read_timeout` or `other`.
    pub upstream_kind: Option<&'static str>,
}

/// Maps a Pingora error to the response the client gets: 502 when wa-hub cannot be reached or
/// broke the exchange, 504 when it accepted but did not answer in time, the status itself for
/// rejections raised by the sidecar's filters (413), 0 when the client went away.
pub fn classify_failure(e: &Error, read_timeout: Duration) -> Failure {
    use ErrorType::*;
    let failed = "wa-hub request failed";
    let (status, error, message, upstream_kind) = match &e.etype {
        HTTPStatus(413) => (
            413,
            "Request body too large",
            "request body over the limit".into(),
            None,
        ),
        HTTPStatus(400) => (400, "Bad request", "invalid request".into(), None),
        HTTPStatus(code) => (*code, failed, format!("status {code}"), None),
        ConnectRefused => (
            502,
            failed,
            "connection refused by wa-hub".into(),
            Some("connect_refused"),
        ),
        ConnectTimedout => (
            502,
            failed,
            "connecting to wa-hub timed out".into(),
            Some("connect_timeout"),
        ),
        ConnectNoRoute | ConnectError | SocketError | BindError => (
            502,
            failed,
            "cannot connect to wa-hub".into(),
            Some("other"),
        ),
        ReadTimedout | WriteTimedout if e.esource == ErrorSource::Upstream => (
            504,
            "wa-hub request timed out",
            format!("no answer within {} ms", read_timeout.as_millis()),
            Some("read_timeout"),
        ),
        ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout
            if e.esource == ErrorSource::Downstream =>
        {
            (0, failed, "client went away".into(), None)
        }
        _ if e.esource == ErrorSource::Downstream => {
            (400, "Bad request", "invalid request".into(), None)
        }
        _ if e.esource == ErrorSource::Upstream => (
            502,
            failed,
            "wa-hub closed or broke the connection".into(),
            Some("other"),
        ),
        _ => (
            500,
            "Internal error",
            "the sidecar failed to proxy the request".into(),
            None,
        ),
    };
    Failure {
        status,
        error,
        message,
        upstream_kind,
    }
}

/// Names listed in the `Connection` header(s), lower-cased.
fn connection_tokens(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

fn strip_hop_by_hop_response(resp: &mut ResponseHeader) {
    for name in connection_tokens(&resp.headers) {
        if !PROTECTED.contains(&name.as_str()) {
            if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
                resp.remove_header(&n);
            }
        }
    }
    // Pingora forwards an upstream response's fields as they came; these describe the
    // sidecar-to-wa-hub connection, not the client's (RFC 9110 §7.6.1).
    for name in ["connection", "keep-alive", "proxy-connection"] {
        resp.remove_header(name);
    }
}

/// Writes a local response and ends request handling (`request_filter` returns `Ok(true)`).
async fn write_local(
    session: &mut Session,
    resp: LocalResponse,
    allowed_origins: &[String],
) -> Result<bool> {
    write_response(session, resp, allowed_origins).await?;
    Ok(true)
}

async fn write_response(
    session: &mut Session,
    resp: LocalResponse,
    allowed_origins: &[String],
) -> Result<()> {
    let mut header = ResponseHeader::build(resp.status, Some(6 + resp.headers.len()))?;
    if !resp.body.is_empty() {
        header.insert_header(header::CONTENT_TYPE, resp.content_type)?;
    }
    header.insert_header(header::CONTENT_LENGTH, resp.body.len().to_string())?;
    header.insert_header(header::CACHE_CONTROL, "no-store")?;
    let has_cors = resp
        .headers
        .iter()
        .any(|(n, _)| *n == "access-control-allow-origin");
    for (name, value) in resp.headers {
        header.insert_header(name, value)?;
    }
    if !has_cors {
        if let Some(origin) = cors::allow_origin(allowed_origins, &session.req_header().headers) {
            header.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
            header.insert_header(header::VARY, "Origin")?;
        }
    }
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(resp.body), true).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_refused_is_502_with_dashboard_error() {
        let e = Error::new(ErrorType::ConnectRefused);
        let f = classify_failure(&e, Duration::from_secs(1));
        assert_eq!(f.status, 502);
        assert_eq!(f.error, "wa-hub request failed");
    }

    #[test]
    fn upstream_read_timeout_is_504() {
        let mut e = Error::new(ErrorType::ReadTimedout);
        e.esource = ErrorSource::Upstream;
        assert_eq!(classify_failure(&e, Duration::from_secs(1)).status, 504);
    }

    #[test]
    fn client_gone_writes_nothing() {
        let mut e = Error::new(ErrorType::WriteError);
        e.esource = ErrorSource::Downstream;
        assert_eq!(classify_failure(&e, Duration::from_secs(1)).status, 0);
    }
}
