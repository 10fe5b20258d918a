//! The `metrics_listen` listener: a small Pingora app of its own that serves `GET /metrics`
//! (no client token: bind it where only Prometheus reaches) and nothing else.

use std::sync::Arc;

use async_trait::async_trait;
use http::{header, Method, Response};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::app::App;
use crate::handlers;
use crate::rejection::Rejection;
use crate::response::LocalResponse;

/// Serves `GET`/`HEAD /metrics`; 405 for other methods there, 404 elsewhere.
pub struct MetricsListener {
    app: Arc<App>,
}

impl MetricsListener {
    /// The listener's app over the shared state.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

#[async_trait]
impl ServeHttp for MetricsListener {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        let answer = match (req.uri.path(), &req.method) {
            ("/metrics", &Method::GET | &Method::HEAD) => handlers::metrics(&self.app),
            ("/metrics", _) => Err(Rejection::MethodNotAllowed { allow: "GET, HEAD" }),
            _ => Err(Rejection::NotFound),
        };
        let resp = answer.unwrap_or_else(|r| {
            self.app.metrics.rejected(false, &r);
            r.response()
        });
        into_http(resp, req.method == Method::HEAD)
    }
}

fn into_http(resp: LocalResponse, head: bool) -> Response<Vec<u8>> {
    let mut builder = Response::builder()
        .status(resp.status)
        .header(header::CONTENT_LENGTH, resp.body.len())
        .header(header::CACHE_CONTROL, "no-store");
    if !resp.body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, resp.content_type);
    }
    for (name, value) in resp.headers {
        builder = builder.header(name, value);
    }
    let body = if head { Vec::new() } else { resp.body.to_vec() };
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Response::new(Vec::new());
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
