//! The floor the load tool measures the sidecar against: the smallest Pingora 0.9 `ProxyHttp`
//! that does the sidecar's proxying job — strip `/api/wahub` from the path, put wa-hub's key in
//! `Authorization` — and nothing else (no API log, no metrics, no status learning, no sinks).
//! Pingora's settings are its defaults, as in the "bare Pingora" row.
//!
//! Run: `cargo run --release --example bare_proxy -- <listen addr> <upstream addr> <token>
//! [threads]`, e.g. `127.0.0.1:3201 127.0.0.1:3000 testkey 2`.

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora::Result;

struct Bare {
    upstream: std::net::SocketAddr,
    authorization: String,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        let pq = upstream
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let rest = pq.strip_prefix("/api/wahub").unwrap_or(pq);
        let uri: http::Uri = if rest.starts_with('/') {
            rest.parse()
        } else {
            format!("/{rest}").parse()
        }
        .map_err(|_| pingora::Error::new(pingora::ErrorType::HTTPStatus(400)))?;
        upstream.set_uri(uri);
        upstream.insert_header("authorization", self.authorization.as_str())?;
        Ok(())
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(listen), Some(upstream), Some(token)) = (args.first(), args.get(1), args.get(2))
    else {
        eprintln!("usage: bare_proxy <listen addr> <upstream addr> <token> [threads]");
        std::process::exit(2);
    };
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let upstream = upstream.parse().expect("upstream is ip:port");
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(
        &server.configuration,
        Bare {
            upstream,
            authorization: format!("Bearer {token}"),
        },
    );
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
