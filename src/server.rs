//! Server assembly: builds the Pingora server from a validated [`Config`] and runs it until
//! shutdown.

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::services::listening::Service;
use wa_hub_sinks::SinkTask;

use crate::app::{App, AppError};
use crate::config::Config;
use crate::metrics_listener::MetricsListener;
use crate::poll::Pollers;
use crate::proxy::SidecarProxy;
use crate::shutdown::DrainOnSignal;

/// Read buffer per client connection, bytes: none. Pingora reads a request's header into a
/// buffer of its own and bodies in chunks, so a buffer in front of the socket only copied the
/// bytes once more, and cost every idle SSE client 8 KiB (50 -> 42 KiB per client measured).
pub const CLIENT_READ_BUFFER_BYTES: usize = 0;

/// Errors while assembling the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Shared state could not be built.
    #[error("{0}")]
    App(#[from] AppError),
    /// The HTTPS listener's files were refused (validation checked them already).
    #[error("config key tls: {0}")]
    Tls(#[from] crate::tls::TlsFileError),
    /// A listen address is already taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the config.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Runs the sidecar until SIGTERM (drain, then exit) or SIGINT (exit now). Blocks.
///
/// # Errors
/// [`ServerError`] when start-up fails before serving; the process should exit non-zero.
pub fn run(config: Config) -> Result<(), ServerError> {
    // Pingora reports a taken port only by panicking in a worker; check first for a clear error.
    let listen = config.raw.listen;
    for addr in std::iter::once(listen).chain(config.raw.metrics_listen) {
        drop(check_bind(addr).map_err(|source| ServerError::Bind { addr, source })?);
    }

    let (app, sink_tasks) = App::new(config)?;
    // Fleet mode: the publisher, the routing recorder and the consumer of the stream.
    if let Some(fleet) = &app.fleet {
        crate::fleet::tasks::start(fleet, app.clone());
    }
    let conf = ServerConf {
        threads: app.config.threads,
        // Draining happens in `DrainOnSignal` before Pingora is told to stop.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        // The CAs trusted for an https:// upstream; none: the system's.
        ca_file: app
            .config
            .raw
            .upstream
            .ca_file
            .as_ref()
            .map(|p| p.display().to_string()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, SidecarProxy::new(app.clone()));
    // Requests to the sidecar are small and bodies are read in chunks anyway; Pingora's 64 KiB
    // read buffer per connection would dominate the memory of idle SSE clients (0: no buffer).
    let mut listener = ListenerConfig::tcp(listen.to_string()).l4_buffer(L4BufferSettings {
        read: Some(CLIENT_READ_BUFFER_BYTES),
        write: None,
    });
    if let Some((cert, key)) = app.config.tls_listener() {
        listener = listener.tls(crate::tls::listener_settings(cert, key)?);
    }
    proxy.add_listener(listener);
    server.add_service(proxy);
    if let Some(metrics_listen) = app.config.raw.metrics_listen {
        let mut metrics = Service::new("metrics".to_owned(), MetricsListener::new(app.clone()));
        metrics.add_tcp(&metrics_listen.to_string());
        metrics.threads = Some(1);
        server.add_service(metrics);
    }
    server.add_service(pingora::services::background::background_service(
        "status pollers",
        Pollers::new(app.clone()),
    ));
    server.add_service(pingora::services::background::background_service(
        "sinks",
        SinkRunner {
            app: app.clone(),
            tasks: Mutex::new(sink_tasks),
        },
    ));

    tracing::info!(
        %listen,
        https = app.config.tls_listener().is_some(),
        upstream = %app.config.raw.upstream.base_url,
        threads = app.config.threads,
        "wa-hub-sidecar listening"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnSignal::new(app)),
    });
    Ok(())
}

/// Whether `addr` can be bound: a socket bound to it (with `SO_REUSEADDR`, as Pingora's
/// listener and std's have), not listening, for the caller to drop. Listening would accept
/// connections into a backlog that is dropped with the socket: a client arriving in that
/// window (a load balancer's probe, a script waiting for the port) would be reset, or see the
/// port open and then be refused until Pingora listens.
fn check_bind(addr: std::net::SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// Runs every sink under the router's supervisor until the sinks are told to stop
/// ([`App::stop_sinks`], after in-flight requests finished), then lets them drain. The sink
/// tasks are tracked in [`App::sink_tasks`], which shutdown waits for.
struct SinkRunner {
    app: Arc<App>,
    tasks: Mutex<Vec<SinkTask>>,
}

#[async_trait]
impl BackgroundService for SinkRunner {
    async fn start(&self, _pingora_shutdown: ShutdownWatch) {
        let tasks = std::mem::take(&mut *self.tasks.lock());
        let tracker = &self.app.sink_tasks;
        for task in tasks {
            let shutdown = self.app.sinks_shutdown_watch();
            let drain = self.app.config.grace_period();
            tracing::debug!(sink = task.name(), "sink started");
            tracker.spawn(wa_hub_sinks::supervise(task, shutdown, drain));
        }
        tracker.close();
        tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bind_check_refuses_a_taken_address_and_accepts_no_connection() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(check_bind(addr).is_err(), "a listening socket holds it");
        drop(taken);
        let held = check_bind(addr).unwrap();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "the check must not accept connections"
        );
        drop(held);
    }
}
