//! The proxy against a real wa-hub-shaped upstream, through the real binary (core issue).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// Sends raw request bytes and returns the whole response as text (the connection is closed
/// by the request's `Connection: close`).
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

#[test]
fn fixture_call_is_proxied_with_prefix_stripped_and_api_key_injected() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let fixture = api_fixtures()
        .into_iter()
        .find(|f| f.path == "/instances/WASP-test_shop/client/status")
        .unwrap();
    let r = client()
        .get(sc.url("/api/wahub/instances/WASP-test_shop/client/status"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.text().unwrap(), fixture.body);
    let got = up.last();
    assert_eq!(
        got.path_and_query,
        "/instances/WASP-test_shop/client/status"
    );
    assert_eq!(
        got.header_values("authorization"),
        vec![format!("Bearer {API_KEY}")]
    );
}

#[test]
fn query_string_and_encoded_slash_reach_upstream_unchanged() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let r = client()
        .get(sc.url("/api/wahub/instances/a%2Fb/client/status?x=1&y=%20z"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        up.last().path_and_query,
        "/instances/a%2Fb/client/status?x=1&y=%20z"
    );
}

#[test]
fn client_authorization_in_any_letter_case_is_replaced_by_exactly_one() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let resp = raw(
        sc.addr,
        b"GET /api/wahub/instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer client-guess\r\n\
          authorization: Basic Zm9vOmJhcg==\r\nAUTHORIZATION: other\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(
        up.last().header_values("authorization"),
        vec![format!("Bearer {API_KEY}")]
    );
}

#[test]
fn hop_by_hop_headers_never_reach_upstream() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let resp = raw(
        sc.addr,
        b"GET /api/wahub/echo HTTP/1.1\r\nHost: x\r\nConnection: close, X-Private-Hop\r\n\
          X-Private-Hop: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
          Proxy-Authorization: Basic abc\r\nUpgrade: h2c\r\nX-End-To-End: kept\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    let got = up.last();
    for h in [
        "connection",
        "x-private-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "upgrade",
    ] {
        assert!(got.header_values(h).is_empty(), "{h} reached upstream");
    }
    assert_eq!(got.header_values("x-end-to-end"), vec!["kept"]);
}

#[test]
fn post_body_is_passed_byte_for_byte_and_answer_returned_as_is() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let r = client()
        .post(sc.url("/api/wahub/instances/WASP-test_shop/client/action/send-message"))
        .header("content-type", "application/octet-stream")
        .body(body.clone())
        .send()
        .unwrap();
    let fixture = api_fixtures()
        .into_iter()
        .find(|f| f.path.ends_with("/send-message"))
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(r.text().unwrap(), fixture.body);
    let got = up.last();
    assert_eq!(got.method, "POST");
    assert_eq!(got.body.as_ref(), body.as_slice());
    assert_eq!(
        got.header_values("content-type"),
        vec!["application/octet-stream"]
    );
}

#[test]
fn put_patch_delete_pass_through_with_upstream_status() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let c = client();
    let r = c
        .put(sc.url("/api/wahub/instances/WASP-test_shop"))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c
        .patch(sc.url("/api/wahub/p"))
        .body("patched")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(up.last().body.as_ref(), b"patched");
    let r = c.delete(sc.url("/api/wahub/d")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(up.last().method, "DELETE");
    let r = c.get(sc.url("/api/wahub/no/such/route")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.text().unwrap(), r#"{"error":"Not found","status":404}"#);
}

#[test]
fn nothing_listening_upstream_gives_502_json() {
    let dead = dead_upstream_url();
    let sc = Sidecar::start(&dead, "");
    let r = client().get(sc.url("/api/wahub/instances")).send().unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"], "wa-hub request failed");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(sc.log().contains("proxy request failed"));
}

#[test]
fn hanging_upstream_gives_504_after_read_timeout() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start_with(&up.base_url(), "  read_timeout_ms: 400\n", "", &[]);
    let t = Instant::now();
    let r = client().get(sc.url("/api/wahub/hang")).send().unwrap();
    assert_eq!(r.status().as_u16(), 504);
    assert!(t.elapsed() < Duration::from_secs(10));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"], "wa-hub request timed out");
}

#[test]
fn traversal_in_any_encoding_gives_400_and_never_reaches_upstream() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    for path in [
        "/api/wahub/../healthz",
        "/api/wahub/%2e%2e/secret",
        "/api/wahub/instances/%2E%2E/%2e%2e/x",
        "/api/wahub/..%2Fadmin",
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let resp = raw(sc.addr, req.as_bytes());
        assert_eq!(status_of(&resp), 400, "{path}: {resp}");
        assert!(resp.contains("application/json"), "{resp}");
    }
    assert!(up.received().is_empty());
}

#[test]
fn paths_with_empty_segments_get_400_on_every_route_and_never_reach_upstream() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), FIXTURE_WEBHOOK_YAML);
    for (method, path) in [
        ("POST", "/api/wahub//webhook"),
        ("GET", "/api/wahub//instances"),
        ("GET", "/api/wahub/instances//client/status"),
        ("DELETE", "/api/wahub/instances/x//"),
        ("GET", "//api/instances"),
        ("GET", "/api//stream"),
        ("GET", "//healthz"),
        ("GET", "/api/instances//status"),
        ("POST", "/api/system//force-normal"),
    ] {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        let resp = raw(sc.addr, req.as_bytes());
        assert_eq!(status_of(&resp), 400, "{method} {path}: {resp}");
        assert!(resp.contains("empty segment"), "{resp}");
    }
    assert!(up.received().is_empty(), "{:?}", up.received());
    assert!(events_empty(&sc));
}

fn events_empty(sc: &Sidecar) -> bool {
    get_json(sc, "/api/events").1["events"]
        .as_array()
        .unwrap()
        .is_empty()
}

#[test]
fn body_over_limit_gives_413_declared_or_chunked() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "proxy:\n  max_body_bytes: 1024\n");
    let r = client()
        .post(sc.url("/api/wahub/instances"))
        .body(vec![b'a'; 4096])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(
        up.received().is_empty(),
        "declared oversize body was proxied"
    );

    let mut chunked = b"POST /api/wahub/instances HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
        Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'b'; 512]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(sc.addr, &chunked);
    assert_eq!(status_of(&resp), 413, "{resp}");

    // Within the limit still works.
    let r = client()
        .post(sc.url("/api/wahub/echo"))
        .body(vec![b'c'; 1000])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// An upstream that records every byte each connection sends until it closes (or goes quiet
/// for 2 s), answering a complete chunked request with a 200.
fn recording_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.ends_with(b"0\r\n\r\n") {
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        );
                        break;
                    }
                }
                record.lock().unwrap().push(buf);
            });
        }
    });
    (addr, seen)
}

fn chunked_post(chunks: usize, size: usize) -> Vec<u8> {
    let mut req = b"POST /api/wahub/instances HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
        Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for _ in 0..chunks {
        req.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        req.extend_from_slice(&vec![b'b'; size]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

#[test]
fn chunked_body_over_the_limit_never_reaches_upstream_even_in_part() {
    let (up, seen) = recording_upstream();
    let sc = Sidecar::start(
        &format!("http://{up}"),
        "proxy:\n  max_body_bytes: 100000\n",
    );
    // 30 chunks of 4 KiB: the first 24 fit under the limit and would have been forwarded.
    let resp = raw(sc.addr, &chunked_post(30, 4096));
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert!(resp.contains("Payload too large"), "{resp}");
    std::thread::sleep(Duration::from_millis(300));
    for conn in seen.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(conn);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert!(body.is_empty(), "wa-hub received {} body bytes", body.len());
    }

    // Within the limit, the whole chunked body arrives.
    let before = seen.lock().unwrap().len();
    let resp = raw(sc.addr, &chunked_post(20, 4096));
    assert_eq!(status_of(&resp), 200, "{resp}");
    // The upstream records the connection after it answered: wait for the record.
    let got = eventually(Duration::from_secs(5), || {
        let seen = seen.lock().unwrap();
        (seen.len() > before)
            .then(|| seen.last().cloned())
            .flatten()
    })
    .expect("the upstream recorded the call");
    let b_count = got.iter().filter(|&&c| c == b'b').count();
    assert_eq!(b_count, 20 * 4096);
}

#[test]
fn client_tokens_are_required_when_configured() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(
        &up.base_url(),
        "auth:\n  client_tokens: [client-one, client-two]\n",
    );
    let c = client();
    let r = c.get(sc.url("/api/wahub/instances")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["error"], "Unauthorized");
    let r = c
        .get(sc.url("/api/wahub/instances"))
        .bearer_auth("wrong")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(up.received().is_empty());

    let r = c
        .get(sc.url("/api/wahub/instances"))
        .bearer_auth("client-two")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        up.last().header_values("authorization"),
        vec![format!("Bearer {API_KEY}")]
    );
    // Liveness stays open for orchestrators.
    assert_eq!(
        c.get(sc.url("/healthz")).send().unwrap().status().as_u16(),
        200
    );
}

#[test]
fn the_client_token_in_the_query_never_reaches_wa_hub_or_the_logs() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "auth:\n  client_tokens: [tok-in-query]\n");
    let r = client()
        .get(sc.url("/api/wahub/instances?x=1&access_token=tok-in-query"))
        .bearer_auth("tok-in-query")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(up.last().path_and_query, "/instances?x=1");
    // The ApiLog reached the hub: `initial` covers it.
    wait_sink_delivered_as(&sc, "sse", 1, Some("tok-in-query"));
    let c = SseClient::connect(
        &sc.url("/api/stream?scope=global&access_token=tok-in-query"),
        &[],
    );
    let t = std::time::Duration::from_secs(5);
    assert_eq!(c.next_event(t).kind(), "connected");
    let initial = c.next_event(t).json();
    assert_eq!(initial["data"]["apiLogs"][0]["path"], "/instances?x=1");
    assert!(!initial.to_string().contains("tok-in-query"), "{initial}");
    assert!(!sc.log().contains("tok-in-query"), "{}", sc.log());
}

#[test]
fn trace_is_refused_and_never_reaches_wa_hub() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let r = client()
        .request(
            reqwest::Method::from_bytes(b"TRACE").unwrap(),
            sc.url("/api/wahub/instances"),
        )
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(r.headers()["allow"].to_str().unwrap().contains("GET"));
    assert!(up.received().is_empty());
}

#[test]
fn local_routes_answer_json() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start_with(
        &up.base_url(),
        "",
        "",
        &[(
            "DASHBOARD_WEBHOOK_INTERNAL_URL",
            "http://sidecar:3001/api/wahub/webhook",
        )],
    );
    let c = client();
    let r = c.get(sc.url("/healthz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = c.get(sc.url("/readyz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(up.last().path_and_query, "/health");
    let v: serde_json::Value = c.get(sc.url("/api/config")).send().unwrap().json().unwrap();
    assert_eq!(
        v,
        serde_json::json!({"webhookUrl": "http://sidecar:3001/api/wahub/webhook"})
    );
    let r = c.get(sc.url("/nope")).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let _: serde_json::Value = r.json().unwrap();
}

#[test]
fn readyz_is_503_when_upstream_is_down() {
    let dead = dead_upstream_url();
    let sc = Sidecar::start(&dead, "");
    let r = client().get(sc.url("/readyz")).send().unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["ready"], false);
}

/// An upstream that, like Node's HTTP server, keeps connections alive but closes them after
/// `idle` without a request. Answers every request with 200 `ok`.
fn closing_upstream(
    idle: Duration,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || serve_keepalive(stream, idle));
        }
    });
    (addr, connections)
}

fn serve_keepalive(mut s: TcpStream, idle: Duration) {
    s.set_read_timeout(Some(idle)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Read one request head (and its Content-Length body).
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return, // closed or idle too long: close like Node
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        let resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
                     Connection: keep-alive\r\nKeep-Alive: timeout=1\r\n\r\nok";
        if s.write_all(resp).is_err() {
            return;
        }
    }
}

#[test]
fn upstream_closing_idle_keepalive_connections_causes_no_502() {
    let (addr, connections) = closing_upstream(Duration::from_millis(150));
    // The sidecar's own idle timeout is longer than the upstream's on purpose: it must still
    // notice connections the upstream closed and never hand a client a 502 for them.
    let sc = Sidecar::start_with(
        &format!("http://{addr}"),
        "  idle_timeout_ms: 60000\n",
        "",
        &[],
    );
    let c = client();
    for i in 0..12 {
        let r = if i % 2 == 0 {
            c.get(sc.url("/api/wahub/x")).send().unwrap()
        } else {
            c.post(sc.url("/api/wahub/x"))
                .body("payload")
                .send()
                .unwrap()
        };
        assert_eq!(r.status().as_u16(), 200, "request {i}: {}", sc.log());
        assert_eq!(
            r.headers().get("keep-alive"),
            None,
            "upstream Keep-Alive leaked"
        );
        // Alternate between reusing a live connection and waiting past the upstream's close.
        std::thread::sleep(Duration::from_millis(if i % 3 == 0 { 10 } else { 250 }));
    }
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[test]
fn config_error_names_the_key_and_line_and_exits_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:3999\nupstream:\n  base_url: http://127.0.0.1:3000\n  read_timeout: 5\n",
    )
    .unwrap();
    let out = run_with_config(&path, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read_timeout"), "{err}");
    assert!(err.contains("line 4"), "{err}");

    std::fs::write(&path, "upstream:\n  connect_timeout_ms: -1\n").unwrap();
    let out = run_with_config(&path, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("upstream.connect_timeout_ms"), "{err}");

    let out = run_with_config(&dir.path().join("missing.yaml"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.yaml"));
}

#[test]
fn check_config_prints_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "auth:\n  client_tokens: [tok-client]\n").unwrap();
    let mut cmd = std::process::Command::new(sidecar_bin());
    for v in OVERRIDE_VARS {
        cmd.env_remove(v);
    }
    let out = cmd
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .env("WA_HUB_TOKEN", "tok-api")
        .env("WA_HUB_WEBHOOK_SIGNATURE_SECRET", "tok-hmac")
        .env("WA_HUB_BASE_URL", "http://127.0.0.1:3555")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("http://127.0.0.1:3555"), "{text}");
    assert!(text.contains("signature: required"), "{text}");
    for secret in ["tok-client", "tok-api", "tok-hmac"] {
        assert!(!text.contains(secret), "{secret} printed: {text}");
    }
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_promptly() {
    let up = FakeUpstream::start();
    let mut sc = Sidecar::start(&up.base_url(), "");
    let url = sc.url("/api/wahub/slow?ms=600");
    let inflight =
        std::thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()));
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    sc.terminate();
    assert_eq!(inflight.join().unwrap().unwrap(), 200);
    let status = sc.wait_exit(Duration::from_secs(5)).expect("exited");
    assert!(status.success(), "{status}: {}", sc.log());
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "took {:?}",
        t.elapsed()
    );
    assert!(!sc.log().contains("token: testkey"));
}

#[test]
fn every_proxied_call_becomes_an_api_log_with_the_dashboard_fields() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "api_log:\n  max_body_bytes: 4096\n");
    let sse = SseClient::connect(&sc.url("/api/stream"), &[]);
    assert_eq!(sse.next_event(Duration::from_secs(10)).kind(), "connected");
    assert_eq!(sse.next_event(Duration::from_secs(10)).kind(), "initial");
    let fixture = api_fixtures()
        .into_iter()
        .find(|f| f.path.ends_with("/send-message"))
        .unwrap();
    let request = serde_json::json!({"to": "201000000001", "message": "hello"});
    client()
        .post(sc.url("/api/wahub/instances/WASP-test_shop/client/action/send-message"))
        .json(&request)
        .send()
        .unwrap();
    let e = sse.next_event(Duration::from_secs(10));
    let v = e.json();
    assert_eq!(v["type"], "apiLog");
    let log = &v["data"];
    assert!(log["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(log["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(log["method"], "POST");
    assert_eq!(
        log["path"],
        "/instances/WASP-test_shop/client/action/send-message"
    );
    assert_eq!(log["statusCode"], 202);
    assert!(log["latencyMs"].as_u64().is_some());
    assert_eq!(log["requestBody"], request);
    let expected: serde_json::Value = serde_json::from_str(&fixture.body).unwrap();
    assert_eq!(log["responseBody"], expected);
    assert_eq!(log["instanceId"], "WASP-test_shop");
    assert!(log.get("error").is_none());
    assert!(
        !e.data_text().contains(API_KEY),
        "API key leaked into the log"
    );

    // Non-JSON and oversized bodies; a failed call carries `error`.
    client()
        .post(sc.url("/api/wahub/echo"))
        .body("plain text body")
        .send()
        .unwrap();
    let log = sse.next_event(Duration::from_secs(10)).json()["data"].clone();
    assert_eq!(
        log["requestBody"],
        serde_json::json!({"raw": "plain text body"})
    );
    client()
        .post(sc.url("/api/wahub/echo"))
        .body(vec![b'z'; 10_000])
        .send()
        .unwrap();
    let log = sse.next_event(Duration::from_secs(10)).json()["data"].clone();
    assert_eq!(log["requestBody"]["truncated"], true);
    assert_eq!(log["requestBody"]["bytes"], 10_000);
    assert_eq!(log["requestBody"]["raw"].as_str().unwrap().len(), 500);

    // Pretty-printed JSON (line breaks between tokens) stays one SSE event, live and in the
    // `initial` of a client connecting later.
    client()
        .post(sc.url("/api/wahub/echo"))
        .body("{\r\n  \"a\": 1,\n  \"b\": [\"x\\ny\"]\n}\n")
        .send()
        .unwrap();
    let expected = serde_json::json!({"a": 1, "b": ["x\ny"]});
    let log = sse.next_event(Duration::from_secs(10)).json()["data"].clone();
    assert_eq!(log["requestBody"], expected);
    // The late client gets it in `initial`, or (within a second of the shared `initial` the
    // first client got) right after it, from the kept events: either way as valid JSON.
    let late = SseClient::connect(&sc.url("/api/stream"), &[]);
    assert_eq!(late.next_event(Duration::from_secs(10)).kind(), "connected");
    let initial = late.next_event(Duration::from_secs(10)).json();
    let mut seen = initial["data"]["apiLogs"][0]["requestBody"] == expected;
    for _ in 0..4 {
        if seen {
            break;
        }
        let e = late.next_event(Duration::from_secs(10)).json();
        seen = e["data"]["requestBody"] == expected;
    }
    assert!(seen, "the late client never got the pretty-printed body");
}

#[test]
fn failed_call_api_log_carries_the_error() {
    let dead = dead_upstream_url();
    let sc = Sidecar::start(&dead, "");
    let sse = SseClient::connect(&sc.url("/api/stream"), &[]);
    sse.next_event(Duration::from_secs(10));
    sse.next_event(Duration::from_secs(10));
    client().get(sc.url("/api/wahub/instances")).send().unwrap();
    let log = sse.next_event(Duration::from_secs(10)).json()["data"].clone();
    assert_eq!(log["statusCode"], 502);
    assert_eq!(log["error"], "connection refused by wa-hub");
    assert_eq!(log["responseBody"], serde_json::Value::Null);

    // The request body of a call wa-hub never took is still in its API log.
    let body = serde_json::json!({"to": "201000000001", "message": "hello"});
    let r = client()
        .post(sc.url("/api/wahub/instances/WASP-test_shop/client/action/send-message"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    let log = sse.next_event(Duration::from_secs(10)).json()["data"].clone();
    assert_eq!(log["statusCode"], 502);
    assert_eq!(log["requestBody"], body);
}

#[test]
fn cors_allows_listed_origins_only() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(
        &up.base_url(),
        "cors:\n  allowed_origins: [\"http://dash.example:8080\"]\n",
    );
    let c = client();
    let r = c
        .request(reqwest::Method::OPTIONS, sc.url("/api/wahub/instances"))
        .header("origin", "http://dash.example:8080")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://dash.example:8080"
    );
    assert_eq!(r.headers()["access-control-allow-headers"], "content-type");
    assert!(
        up.received().is_empty(),
        "preflight answered by the sidecar"
    );

    let r = c
        .get(sc.url("/api/wahub/instances"))
        .header("origin", "http://dash.example:8080")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://dash.example:8080"
    );
    let r = c
        .get(sc.url("/api/config"))
        .header("origin", "http://dash.example:8080")
        .send()
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://dash.example:8080"
    );

    let r = c
        .get(sc.url("/api/wahub/instances"))
        .header("origin", "http://evil.example")
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[test]
fn upstream_failing_mid_answer_never_gets_an_error_body_appended() {
    // wa-hub starts a chunked 200, sends one chunk, then stalls.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n{\"partial\":\r\n",
            );
            std::thread::sleep(Duration::from_secs(5));
        }
    });
    let sc = Sidecar::start_with(
        &format!("http://{addr}"),
        "  read_timeout_ms: 300\n",
        "",
        &[],
    );
    let resp = raw(
        sc.addr,
        b"GET /api/wahub/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        !resp.contains("\"error\""),
        "error JSON inside the 200 body: {resp}"
    );
    assert!(
        !resp.ends_with("0\r\n\r\n"),
        "response ended as if complete: {resp}"
    );
}

#[test]
fn a_taken_listen_port_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("taken.yaml");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    std::fs::write(
        &path,
        format!("listen: {addr}\nupstream:\n  base_url: http://127.0.0.1:9\n"),
    )
    .unwrap();
    let out = run_with_config(&path, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_refused_value_from_the_environment_names_its_variable_not_a_line_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:3999\nupstream:\n  base_url: http://127.0.0.1:3000\n  token: fine\n",
    )
    .unwrap();
    let out = run_with_config(&path, &[("WA_HUB_TOKEN", "not\tfine")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("environment variable WA_HUB_TOKEN"), "{err}");
    assert!(err.contains("upstream.token"), "{err}");
    assert!(!err.contains("line 4"), "{err}");
    assert!(!err.contains("not\tfine"), "{err}");
}

/// Runs the binary with `--config path` until it exits, with `env` set and no other override
/// variable inherited from the test's environment.
fn run_with_config(path: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(sidecar_bin());
    for v in OVERRIDE_VARS {
        cmd.env_remove(v);
    }
    cmd.arg("--config").arg(path).envs(env.iter().copied());
    cmd.output().expect("run sidecar")
}
