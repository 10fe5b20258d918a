//! The thin Pingora `ProxyHttp` (Pingora's own pattern: one service, a per-request [`Ctx`]):
//! `request_filter` refuses, proxies, streams, receives a webhook or calls a handler, by the
//! route table in [`crate::routes`]; the proxy hooks inject wa-hub's key and record each
//! proxied call as an ApiLog (DESIGN.md "Engineering notes on Pingora 0.9").

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderName};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use pingora::{Error, ErrorSource, ErrorType, Result};
use tokio_util::task::task_tracker::TaskTrackerToken;
use wa_hub_sinks::Payload;

use crate::apilog::ProxiedCall;
use crate::app::App;
use crate::auth;
use crate::console;
use crate::cors;
use crate::dashboard;
use crate::exchange::{declared_length, read_limited, write_response};
use crate::framing;
use crate::handlers::{self, Answer};
use crate::qr;
use crate::rejection::Rejection;
use crate::request_buffer::RequestBuffer;
use crate::response::LocalResponse;
use crate::routes::{self, Access, Route};
use crate::sink_health;
use crate::status::ApiKnowledge;
use crate::stream;
use crate::webhook;

/// Headers an upstream response's `Connection` list may not remove: message framing.
const PROTECTED: &[&str] = &["content-length", "transfer-encoding"];

/// Longest status answer (client status, instance list) the status engine learns from, in
/// bytes: an instance list of the engine's 1000 instances is about 300 KB.
pub const LEARN_MAX_BYTES: usize = 1024 * 1024;

/// How long a failed call's unread request body is read for its API log at most.
const FAILED_BODY_READ: Duration = Duration::from_secs(1);

/// Largest request body of the sidecar's own POST routes other than the webhook.
const SMALL_BODY_MAX: usize = 64 * 1024;

/// The Pingora service: one instance serves every request on `listen`.
pub struct SidecarProxy {
    app: Arc<App>,
}

impl SidecarProxy {
    /// The main listener's service over the shared state.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

/// Per-request state (Pingora's `CTX`).
pub struct Ctx {
    _inflight: TaskTrackerToken,
    /// The `Access-Control-Allow-Origin` to send, decided once per request.
    cors_origin: Option<String>,
    /// Whether the route is the webhook receiver (its rejections count as webhooks').
    webhook: bool,
    /// Set for proxied calls once the request passed every check.
    call: Option<ProxiedCall>,
    /// A proxied call's request body, held back until complete.
    body: Option<RequestBuffer>,
    /// Fleet mode: the node a proxied call is forwarded to (its wa-hub runs the instance).
    forward: Option<crate::fleet::routing::Forward>,
}

#[async_trait]
impl ProxyHttp for SidecarProxy {
    type CTX = Ctx;

    /// No downstream modules: Pingora's default adds its response-compression module switched
    /// off (level 0), which still runs for every request and does nothing.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            _inflight: self.app.request_token(),
            cors_origin: None,
            webhook: false,
            call: None,
            body: None,
            forward: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let route = match self.admit(session, ctx) {
            Ok(route) => route,
            Err(answer) => return self.answer(session, ctx, answer).await,
        };
        // A client that half-closes (FIN) after a complete request still gets its answer
        // (RFC 9112 §9.6); a reset still aborts. An SSE stream never completes: a FIN ends it.
        if route != Route::Stream {
            session.set_abort_on_close(false);
        }
        let answer = match route {
            Route::Proxy(path) => match self.begin_proxy(session, ctx, path).await {
                Ok(()) => return Ok(false),
                Err(answer) => answer,
            },
            Route::Stream => match self.stream(session, ctx).await {
                Ok(()) => return Ok(true),
                Err(rejection) => Err(rejection),
            },
            Route::Webhook => webhook::receive(&self.app, session).await,
            Route::Dashboard(d) => dashboard::serve(&self.app, session, d).await,
            local => self.handle(session, local).await,
        };
        self.answer(session, ctx, answer).await
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(call), Some(chunk)) = (ctx.call.as_mut(), body.as_ref()) {
            call.request_body.push(chunk);
        }
        if let Some(buffer) = ctx.body.as_mut() {
            if let Err(e) = buffer.filter(body, end_of_stream) {
                return Error::e_explain(ErrorType::HTTPStatus(413), e.to_string());
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let cfg = &self.app.config;
        let mut peer = match ctx.forward.as_ref() {
            // Fleet mode: another node runs the instance; it is reached over plain HTTP.
            Some(f) => HttpPeer::new(f.addr, false, String::new()),
            None => HttpPeer::new(
                cfg.upstream_addr,
                cfg.upstream_tls,
                cfg.upstream_host.clone(),
            ),
        };
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
        // Each attempt to reach wa-hub gets the body from the start (Pingora replays what it
        // read so far on a retry).
        if let Some(buffer) = ctx.body.as_mut() {
            buffer.restart();
        }
        let uri: http::Uri = format!("{}{}", cfg.upstream_path_prefix, call.upstream_path)
            .parse()
            .map_err(|_| Error::explain(ErrorType::HTTPStatus(400), "unparsable path"))?;
        upstream.set_uri(uri);
        // `insert_header` replaces every existing value, whatever its letter case.
        upstream.insert_header(header::AUTHORIZATION, cfg.upstream_authorization.clone())?;
        upstream.insert_header(header::HOST, cfg.upstream_host_header.clone())?;
        if let (Some(fwd), Some(fleet)) = (&ctx.forward, &self.app.fleet) {
            // Fleet mode: to the node running the instance, through its own proxy route.
            let uri: http::Uri = format!("{}/api/wahub{}", fwd.prefix, call.upstream_path)
                .parse()
                .map_err(|_| Error::explain(ErrorType::HTTPStatus(400), "unparsable path"))?;
            upstream.set_uri(uri);
            let token = fleet.settings.raw.fleet_token.as_ref();
            upstream.insert_header(
                header::AUTHORIZATION,
                format!("Bearer {}", token.map(|t| t.expose()).unwrap_or_default()),
            )?;
            upstream.insert_header(header::HOST, fwd.authority.as_str())?;
            upstream.insert_header(crate::fleet::routing::HOP_HEADER, fleet.node_id())?;
        }
        // The dashboard session cookie is the sidecar's own; it never goes to wa-hub.
        if !upstream.headers.contains_key(header::COOKIE) {
            return Ok(());
        }
        let cookies: Vec<String> = upstream
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(crate::session::strip_session_cookie)
            .collect();
        upstream.remove_header(&header::COOKIE);
        for c in cookies {
            upstream.append_header(header::COOKIE, c)?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        strip_hop_by_hop_response(upstream_response);
        if let Some(origin) = &ctx.cors_origin {
            upstream_response.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
            upstream_response.append_header(header::VARY, "Origin")?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        _ctx: &mut Ctx,
    ) -> Result<()> {
        if framing::fit_to_client(session.req_header(), response) {
            session.set_keepalive(None);
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
            // wa-hub could not be reached, so Pingora never read the request body: read it
            // now (briefly), so the call's API log still shows what was sent.
            if self.app.api_log_wanted
                && failure.upstream_kind.is_some()
                && call.request_body.total() == 0
                && !session.is_body_done()
            {
                let read = async {
                    while let Ok(Some(chunk)) = session.read_request_body().await {
                        call.request_body.push(&chunk);
                    }
                };
                let _ = tokio::time::timeout(FAILED_BODY_READ, read).await;
            }
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
            if let Err(we) = write_response(session, resp, ctx.cors_origin.as_deref()).await {
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
        if let Some(call) = ctx.call.take() {
            self.finish_call(session, call);
        }
    }
}

impl SidecarProxy {
    /// What every request goes through before its route runs: the CORS origin and preflight
    /// (204), the route table (404, 405, 400), draining (503 for every route but `/healthz`)
    /// and the route's access rule (401, 403). `Err` is the answer to write instead.
    fn admit(&self, session: &Session, ctx: &mut Ctx) -> std::result::Result<Route, Answer> {
        let req = session.req_header();
        ctx.cors_origin =
            cors::allow_origin(&self.app.config.raw.cors.allowed_origins, &req.headers);
        if let Some(origin) = ctx
            .cors_origin
            .as_deref()
            .filter(|_| cors::is_preflight(&req.method, &req.headers))
        {
            return Err(Ok(cors::preflight_response(origin, &req.headers)));
        }
        let route = routes::route(&req.method, req.uri.path()).map_err(|e| Err(e.into()))?;
        // Liveness stays 200 while draining; every other route gets 503.
        if self.app.is_shutting_down() && route != Route::Healthz {
            return Err(Err(Rejection::ShuttingDown));
        }
        ctx.webhook = route == Route::Webhook;
        self.access(session, route.spec().access).map_err(Err)?;
        Ok(route)
    }

    /// Writes `answer` and ends request handling: a rejection is logged and counted here (the
    /// one place), and closes the connection when its body may be unread.
    async fn answer(&self, session: &mut Session, ctx: &Ctx, answer: Answer) -> Result<bool> {
        let resp = match answer {
            Ok(resp) => resp,
            Err(rejection) => {
                self.app.metrics.rejected(ctx.webhook, &rejection);
                let what = if ctx.webhook {
                    "webhook rejected"
                } else {
                    "request rejected"
                };
                if rejection.is_notable() || ctx.webhook {
                    tracing::warn!(
                        reason = rejection.reason(),
                        status = rejection.status(),
                        "{what}"
                    );
                } else {
                    tracing::debug!(
                        reason = rejection.reason(),
                        status = rejection.status(),
                        "{what}"
                    );
                }
                if rejection.closes_connection() {
                    session.set_keepalive(None);
                }
                rejection.response()
            }
        };
        write_response(session, resp, ctx.cors_origin.as_deref()).await?;
        Ok(true)
    }

    /// Whether the request may use a route with `access`: [`auth::decide`] over the client
    /// token (header; on local routes also `access_token`) and the dashboard session cookie.
    fn access(&self, session: &Session, access: Access) -> std::result::Result<(), Rejection> {
        let cfg = &self.app.config.raw;
        let req = session.req_header();
        // Fleet mode: a call another node forwarded, with the fleet token.
        if let Some(fleet) = &self.app.fleet {
            let authorization = req.headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
            if access != Access::Open
                && req.headers.contains_key(crate::fleet::routing::HOP_HEADER)
                && crate::fleet::routing::is_fleet_token(fleet, authorization)
            {
                return Ok(());
            }
        }
        let query_token = match access {
            Access::Open => return Ok(()),
            Access::ClientHeader => None,
            Access::Client => routes::query_param(req.uri.query(), "access_token"),
        };
        auth::decide(
            &cfg.auth.client_tokens,
            &self.app.sessions,
            &cfg.cors.allowed_origins,
            &req.method,
            &req.headers,
            query_token.as_deref(),
        )
        .check()
    }

    /// Fleet mode: where a proxied call goes. `Ok(None)` proxies to this node's wa-hub,
    /// `Ok(Some(_))` forwards it to the node running the instance; `Err` is the answer to give
    /// here (the merged instance list, or 404 for an instance on no known node).
    async fn route_in_fleet(
        &self,
        session: &Session,
        path: &str,
    ) -> std::result::Result<Option<crate::fleet::routing::Forward>, LocalResponse> {
        use crate::fleet::routing::{decide, Decision, HOP_HEADER};
        let Some(fleet) = &self.app.fleet else {
            return Ok(None);
        };
        let req = session.req_header();
        let forwarded = req.headers.contains_key(HOP_HEADER);
        match decide(fleet, &self.app, &req.method, path, forwarded).await {
            Decision::Local => Ok(None),
            Decision::Forward(f) => Ok(Some(f)),
            Decision::Answer(status, body) => Err(LocalResponse::json(status, &body)),
        }
    }

    /// Sets up a proxied call before anything is sent upstream: in fleet mode the node whose
    /// wa-hub runs the instance, then [`Self::admit_proxied`], and the buffer that holds the
    /// request body back until it is complete. `Err` is the answer to write instead.
    async fn begin_proxy(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        path: String,
    ) -> std::result::Result<(), Answer> {
        let forward = match &self.app.fleet {
            Some(_) => self.route_in_fleet(session, &path).await.map_err(Ok)?,
            None => None,
        };
        let call = self.admit_proxied(session, path).map_err(Err)?;
        ctx.forward = forward;
        ctx.call = Some(call);
        let limit = self.app.config.raw.proxy.max_body_bytes.get();
        ctx.body = Some(RequestBuffer::new(limit));
        Ok(())
    }

    /// Admits a proxied request before anything is sent upstream: a declared body over
    /// `proxy.max_body_bytes` is refused (413); otherwise the call to record.
    fn admit_proxied(
        &self,
        session: &Session,
        upstream_path: String,
    ) -> Result<ProxiedCall, Rejection> {
        let cfg = &self.app.config.raw;
        let limit = cfg.proxy.max_body_bytes.get();
        if declared_length(session).is_some_and(|n| n > limit as u64) {
            return Err(Rejection::TooLarge { limit });
        }
        let query = routes::without_param(session.req_header().uri.query(), "access_token");
        let path_and_query = match query {
            Some(q) => format!("{upstream_path}?{q}"),
            None => upstream_path,
        };
        // Bodies are copied only for an ApiLog some sink takes, or for an answer the status
        // engine learns from (whole, up to `LEARN_MAX_BYTES`, whatever the log shows of it).
        let log_cap = if self.app.api_log_wanted {
            cfg.api_log.max_body_bytes.get()
        } else {
            0
        };
        let response_cap = if ApiKnowledge::route_carries_status(&path_and_query) {
            log_cap.max(LEARN_MAX_BYTES)
        } else {
            log_cap
        };
        Ok(ProxiedCall::new(
            path_and_query,
            log_cap,
            response_cap,
            log_cap,
        ))
    }

    /// `GET /api/stream`, when an SSE sink is configured.
    async fn stream(&self, session: &mut Session, ctx: &Ctx) -> std::result::Result<(), Rejection> {
        let hub = self.app.sse.as_ref().ok_or(Rejection::NoSseSink)?;
        let query = session.req_header().uri.query().map(str::to_owned);
        stream::serve(
            &self.app,
            hub,
            session,
            query.as_deref(),
            ctx.cors_origin.as_deref(),
        )
        .await
    }

    /// The sidecar's own routes other than the stream and the webhook.
    async fn handle(&self, session: &mut Session, route: Route) -> Answer {
        let app = &self.app;
        let query = session.req_header().uri.query().map(str::to_owned);
        let q = |name| routes::query_param(query.as_deref(), name);
        match route {
            Route::Healthz => handlers::healthz(),
            Route::Readyz => handlers::readyz(app).await,
            Route::Config => handlers::config(app),
            Route::Instances => handlers::instances(app),
            Route::InstanceStatus(id) => handlers::instance_status(app, &id),
            Route::Events => {
                handlers::events(app, q("instanceId").as_deref(), q("limit").as_deref())
            }
            Route::Metrics => handlers::metrics(app),
            Route::ConsoleRedirect | Route::Console(_) if !app.config.raw.console.enabled => {
                Err(Rejection::NotFound)
            }
            Route::ConsoleRedirect => Ok(console::redirect()),
            Route::Console(path) => {
                let etag = session.req_header().headers.get(header::IF_NONE_MATCH);
                Ok(console::serve(&path, etag.and_then(|v| v.to_str().ok())))
            }
            Route::InstanceQr(id) => qr::handle(app, &id),
            Route::Sinks => Ok(sink_health::handle(app)),
            Route::DeadLetters(name) => {
                handlers::dead_letters(app, &name, q("limit").as_deref()).await
            }
            Route::DeadLetterReplay(name) => {
                let body = read_limited(session, SMALL_BODY_MAX).await?;
                handlers::replay_dead_letters(app, &name, q("id").as_deref(), &body).await
            }
            // Dispatched by `request_filter` before this.
            Route::Webhook | Route::Stream | Route::Dashboard(_) | Route::Proxy(_) => {
                Err(Rejection::NotFound)
            }
        }
    }

    /// A proxied call ended: log it, count it, and publish its ApiLog; a successful `GET` of a
    /// status route also feeds the status engine, under its lock with the ApiLog.
    fn finish_call(&self, session: &Session, call: ProxiedCall) {
        let method = &session.req_header().method;
        let status_code = session.response_written().map(|h| h.status.as_u16());
        let elapsed = call.elapsed();
        // Learned from the whole captured answer, before the ApiLog cuts it to its own cap.
        let learned = (*method == http::Method::GET
            && status_code == Some(200)
            && ApiKnowledge::route_carries_status(&call.upstream_path))
        .then(|| {
            let text = call.response_body.text()?;
            let id = call.instance_id.as_deref();
            // The same answer as the one the engine last learned from teaches nothing.
            let known = id.is_some_and(|id| {
                self.app
                    .read_engine(|engine| engine.knows_api_text(id, text))
            });
            if known {
                return None;
            }
            ApiKnowledge::from_response(&call.upstream_path, id, text)
        })
        .flatten();
        let log = call.into_log(method.to_string(), status_code);
        if self.app.config.raw.log.access {
            crate::logging::access(
                &log.method,
                &log.path,
                log.status_code.unwrap_or(0),
                log.latency_ms,
            );
        }
        let route = self.app.metrics.route_label(&log.path);
        self.app
            .metrics
            .observe_proxy(&log.method, &route, log.status_code, elapsed);
        match learned {
            // No sink takes API logs: nothing to publish (the metrics counted the call).
            None if !self.app.api_log_wanted => {}
            None => {
                self.app.publish(Payload::ApiLog(log));
            }
            Some(knowledge) => {
                self.app.decide(|engine, now| {
                    let changed = engine.learn(knowledge, now);
                    let mut out = vec![Payload::ApiLog(log)];
                    out.extend(changed.into_iter().map(Payload::Status));
                    out
                });
            }
        }
    }
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
        // The same word as `Rejection::TooLarge` (a declared size over the limit).
        HTTPStatus(413) => (
            413,
            "Payload too large",
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
    for name in &HOP_BY_HOP_RESPONSE {
        if resp.headers.contains_key(name) {
            resp.remove_header(name);
        }
    }
}

/// Response fields that describe the sidecar-to-wa-hub connection (RFC 9110 §7.6.1), as
/// names built once.
const HOP_BY_HOP_RESPONSE: [HeaderName; 3] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

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
