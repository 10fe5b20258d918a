//! TLS (issue 14, item 16), through Pingora's `rustls` feature: the optional HTTPS listener
//! (`tls.cert_file`, `tls.key_file`: `listen` then speaks HTTPS with HTTP/2 and HTTP/1.1 by
//! ALPN) and the trust for an `https://` upstream (`upstream.ca_file`, else the system's CAs).
//!
//! Why HTTP/2 matters here: browsers open at most 6 HTTP/1.1 connections per origin, and each
//! `EventSource` holds one for good, so a seventh SSE stream (or any other request) of that
//! origin waits. Over HTTP/2 all streams share one connection (browsers allow about 100).
//! Browsers speak HTTP/2 only over TLS, hence the HTTPS listener.
//!
//! Files are checked when the config is validated ([`check_listener_files`],
//! [`load_ca_file`]), so a bad file stops start-up with a message naming its key before any
//! port is bound (Pingora would only find out inside a worker thread, by panicking).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS file was refused. The message names the file; the caller adds the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the kind needed.
    #[error("{path}: {reason}")]
    Content {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn content(path: &Path, reason: impl Into<String>) -> TlsFileError {
    TlsFileError::Content {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The PEM certificates in `path` (at least one).
///
/// # Errors
/// [`TlsFileError`] when the file is unreadable, not PEM, or holds no certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let pem = read(path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(content(
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The first PEM private key in `path` (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`TlsFileError`] when the file is unreadable or holds no private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| content(path, format!("not PEM: {e}")))?
        .ok_or_else(|| content(path, "holds no PEM private key"))
}

/// Checks that `cert_file` and `key_file` load and belong together (rustls accepts the pair),
/// as the HTTPS listener will need them.
///
/// # Errors
/// [`TlsFileError`] naming the file at fault, or the pair when the key does not match.
pub fn check_listener_files(cert_file: &Path, key_file: &Path) -> Result<(), TlsFileError> {
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map(|_| ())
        .map_err(|e| {
            content(
                key_file,
                format!(
                    "does not fit the certificate in {}: {e}",
                    cert_file.display()
                ),
            )
        })
}

/// Pingora's settings for the HTTPS listener: the certificate chain and key, HTTP/2 offered
/// first by ALPN, HTTP/1.1 as the fallback.
///
/// # Errors
/// When Pingora refuses the paths (not UTF-8).
pub fn listener_settings(cert_file: &Path, key_file: &Path) -> Result<TlsSettings, TlsFileError> {
    let utf8 = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| content(p, "the path is not UTF-8"))
    };
    let mut settings = TlsSettings::intermediate(&utf8(cert_file)?, &utf8(key_file)?)
        .map_err(|e| content(cert_file, e.to_string()))?;
    settings.enable_h2();
    Ok(settings)
}

/// The CAs of `upstream.ca_file` for the sidecar's own HTTP client (health probe, polls).
///
/// # Errors
/// [`TlsFileError`] when the file is unreadable or holds no certificate.
pub fn load_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, TlsFileError> {
    load_certs(path)?
        .iter()
        .map(|der| {
            reqwest::Certificate::from_der(der.as_ref())
                .map_err(|e| content(path, format!("unusable certificate: {e}")))
        })
        .collect()
}

/// The sidecar's own HTTP client to wa-hub (readiness probe, polls): connect timeout, the
/// upstream's host name pinned to the address resolved at start-up, and for an `https://`
/// upstream with `upstream.ca_file` those CAs instead of the built-in roots.
///
/// # Errors
/// When reqwest cannot build the client.
pub fn upstream_client(
    connect_timeout: std::time::Duration,
    host: &str,
    addr: SocketAddr,
    ca: Option<&[reqwest::Certificate]>,
) -> reqwest::Result<reqwest::Client> {
    // wa-hub is called directly: no proxies from the environment, no redirects (which would
    // carry the API key and the admin debug header elsewhere).
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host, addr);
    if let Some(ca) = ca {
        builder = builder.tls_built_in_root_certs(false);
        for cert in ca {
            builder = builder.add_root_certificate(cert.clone());
        }
    }
    builder.build()
}
