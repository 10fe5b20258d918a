//! TLS through the real binary (issue 14, item 16), with certificates made by the test
//! (`rcgen`): a CA, and a server certificate it signs for `localhost` and `127.0.0.1`.
//!
//! - the HTTPS listener speaks HTTP/2 (and HTTP/1.1 by ALPN), and many SSE streams share one
//!   connection, which is the way out of browsers' 6 connections per origin on HTTP/1.1;
//! - an `https://` upstream is proxied when `upstream.ca_file` trusts its CA, and refused
//!   (502) when it does not. The HTTPS upstream is a second sidecar with the TLS listener in
//!   front of the fake wa-hub, so both ends are the real binary.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// PEM files of a CA and a server certificate it signed, in a temporary directory.
struct Certs {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Certs {
    fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "wa-hub-sidecar test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca_cert, &ca_key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
        Self {
            dir,
            ca_pem: ca_cert.pem(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tls_yaml(&self) -> String {
        format!(
            "tls:\n  cert_file: {}\n  key_file: {}\n",
            self.path("cert.pem").display(),
            self.path("key.pem").display()
        )
    }

    /// A client trusting only the test CA; `http1`: without HTTP/2.
    fn client(&self, http1: bool) -> reqwest::blocking::Client {
        let mut b = reqwest::blocking::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(20));
        if http1 {
            b = b.http1_only();
        }
        b.build().unwrap()
    }
}

fn https(sc: &Sidecar, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", sc.addr.port())
}

/// Established TCP connections whose local port is `port` (the server side of each client
/// connection), from /proc/net/tcp and tcp6.
fn server_connections(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3
                && cols[3] == "01"
                && cols[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}

/// Reads `r` until `needle` appeared; panics after 10 s.
fn read_until(r: &mut reqwest::blocking::Response, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let n = r.read(&mut buf).expect("read stream");
        assert!(n > 0, "stream ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.contains(needle) {
            return text.into_owned();
        }
    }
    panic!("no {needle:?} in {}", String::from_utf8_lossy(&got));
}

#[test]
fn the_https_listener_speaks_http2_and_carries_many_sse_streams_on_one_connection() {
    let certs = Certs::new();
    let sc = Sidecar::start(
        &dead_upstream_url(),
        &format!("{FIXTURE_WEBHOOK_YAML}{}", certs.tls_yaml()),
    );
    let client = certs.client(false);
    let r = client.get(https(&sc, "/healthz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);

    // Ten streams, more than the 6 a browser allows per origin on HTTP/1.1.
    let mut streams: Vec<_> = (0..10)
        .map(|_| {
            let r = client
                .get(https(&sc, "/api/stream?scope=global"))
                .send()
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            assert_eq!(r.version(), reqwest::Version::HTTP_2);
            assert!(r.headers().get("transfer-encoding").is_none());
            r
        })
        .collect();
    for s in &mut streams {
        read_until(s, "\"type\":\"initial\"");
    }
    assert_eq!(
        server_connections(sc.addr.port()),
        1,
        "every stream shares one connection"
    );
    // A webhook reaches every stream.
    let body = r#"{"event":"ready","instanceId":"WASP-tls","data":{}}"#;
    let sig = wa_hub_sidecar::signature::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    let r = client
        .post(https(&sc, "/api/wahub/webhook"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {WEBHOOK_TOKEN}"))
        .header("x-wa-hub-signature", sig)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for s in &mut streams {
        read_until(s, "WASP-tls");
    }
    let (_, config) = {
        let r = client.get(https(&sc, "/api/config")).send().unwrap();
        (r.status(), r.json::<serde_json::Value>().unwrap())
    };
    assert!(
        config["webhookUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://"),
        "{config}"
    );
}

#[test]
fn http1_over_tls_still_works_and_plain_http_gets_no_answer() {
    let certs = Certs::new();
    let sc = Sidecar::start(&dead_upstream_url(), &certs.tls_yaml());
    let r = certs
        .client(true)
        .get(https(&sc, "/healthz"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert!(client().get(sc.url("/healthz")).send().is_err());
}

/// A sidecar with the TLS listener in front of the fake wa-hub: an HTTPS "wa-hub" at
/// `<its address>/api/wahub`.
fn https_wahub(certs: &Certs, fake: &FakeUpstream) -> Sidecar {
    Sidecar::start(&fake.base_url(), &certs.tls_yaml())
}

fn sidecar_to(upstream: &str, ca_file: Option<&Path>) -> Sidecar {
    let ca = ca_file
        .map(|p| format!("  ca_file: {}\n", p.display()))
        .unwrap_or_default();
    Sidecar::start_with(upstream, &ca, "", &[])
}

#[test]
fn an_https_upstream_is_proxied_when_ca_file_trusts_it_and_refused_otherwise() {
    let certs = Certs::new();
    let fake = FakeUpstream::start();
    let front = https_wahub(&certs, &fake);
    let upstream = format!("https://127.0.0.1:{}/api/wahub", front.addr.port());

    let sc = sidecar_to(&upstream, Some(&certs.path("ca.pem")));
    let direct = client()
        .get(format!("{}/instances", fake.base_url()))
        .bearer_auth(API_KEY)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let r = client().get(sc.url("/api/wahub/instances")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", sc.log());
    assert_eq!(r.text().unwrap(), direct);
    // The sidecar's own client (readiness probe) goes the same way.
    let (status, v) = get_json(&sc, "/readyz");
    assert_eq!(status, 200, "{v}\n{}", sc.log());

    // Without the CA, the system's roots do not know this certificate: no request gets through.
    let untrusting = sidecar_to(&upstream, None);
    let r = client()
        .get(untrusting.url("/api/wahub/instances"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert_eq!(get_json(&untrusting, "/readyz").0, 503);
}

#[test]
fn bad_tls_files_stop_start_up_with_the_key_named() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    for (yaml, want) in [
        (
            format!(
                "tls:\n  cert_file: {}\n  key_file: {}\n",
                certs.path("cert.pem").display(),
                other_key.display()
            ),
            "does not fit the certificate",
        ),
        (
            format!("tls:\n  cert_file: {}\n", certs.path("cert.pem").display()),
            "tls.key_file",
        ),
        (
            format!(
                "upstream:\n  base_url: https://127.0.0.1:1\n  ca_file: {}\n",
                certs.path("key.pem").display()
            ),
            "upstream.ca_file",
        ),
    ] {
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let out = std::process::Command::new(sidecar_bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert!(err.contains(want), "{want}: {err}");
    }
}
