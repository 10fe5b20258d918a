//! Server assembly: builds the Pingora server from a validated [`Config`] and runs it until
//! shutdown.

use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

use crate::app::App;
use crate::config::Config;
use crate::poll::Pollers;
use crate::proxy::SidecarProxy;
use crate::shutdown::DrainOnSignal;

/// Errors while assembling the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Shared state could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
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
    std::net::TcpListener::bind(listen).map_err(|source| ServerError::Bind {
        addr: listen,
        source,
    })?;

    let app = App::new(config)?;
    let conf = ServerConf {
        threads: app.config.threads,
        // Draining happens in `DrainOnSignal` before Pingora is told to stop.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy =
        pingora::proxy::http_proxy_service(&server.configuration, SidecarProxy::new(app.clone()));
    proxy.add_tcp(&listen.to_string());
    server.add_service(proxy);
    server.add_service(pingora::services::background::background_service(
        "status pollers",
        Pollers::new(app.clone()),
    ));

    tracing::info!(
        %listen,
        upstream = %app.config.raw.upstream.base_url,
        threads = app.config.threads,
        "wa-hub-sidecar listening"
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainOnSignal::new(app)),
    });
    Ok(())
}
