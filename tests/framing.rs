//! Message framing toward clients, over raw sockets against the real binary: a client that
//! half-closes after its request still gets the whole answer (RFC 9112 §9.6), and an HTTP/1.0
//! client never gets `Transfer-Encoding` (RFC 9112 §6.1), on proxied, local and SSE routes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::*;

fn signed_webhook_request(body: &str) -> Vec<u8> {
    let sig = wa_hub_sidecar::signature::sign(WEBHOOK_SECRET.as_bytes(), body.as_bytes());
    format!(
        "POST /api/wahub/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {WEBHOOK_TOKEN}\r\nx-wa-hub-signature: {sig}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn half_closed_clients_get_the_whole_answer_on_every_kind_of_route() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), FIXTURE_WEBHOOK_YAML);

    // Proxied GET, with wa-hub answering after the FIN has certainly been seen.
    let raw = raw_request(
        sc.addr,
        b"GET /api/wahub/slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n",
        true,
    );
    let r = RawResponse::parse(&raw);
    assert_eq!(r.status, 200, "{raw}");
    let len: usize = r.header("content-length").unwrap().parse().unwrap();
    assert_eq!(r.body.len(), len, "{raw}");

    // Proxied GET of a fixture route, as in the issue.
    let raw = raw_request(
        sc.addr,
        b"GET /api/wahub/instances HTTP/1.1\r\nHost: x\r\n\r\n",
        true,
    );
    let r = RawResponse::parse(&raw);
    assert_eq!(r.status, 200, "{raw}");
    assert!(r.body.starts_with('[') || r.body.starts_with('{'), "{raw}");

    // Proxied POST: wa-hub performs it and the client gets wa-hub's answer.
    let body = r#"{"hello":"half-close"}"#;
    let req = format!(
        "POST /api/wahub/echo-half-close HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let raw = raw_request(sc.addr, req.as_bytes(), true);
    let r = RawResponse::parse(&raw);
    assert_eq!(r.status, 200, "{raw}");
    assert!(r.body.contains("half-close"), "{raw}");
    assert!(up
        .received()
        .iter()
        .any(|x| x.path_and_query == "/echo-half-close" && x.body == body.as_bytes()));

    // Local GET and local POST (the webhook).
    let raw = raw_request(
        sc.addr,
        b"GET /api/instances HTTP/1.1\r\nHost: x\r\n\r\n",
        true,
    );
    assert_eq!(RawResponse::parse(&raw).status, 200, "{raw}");
    let raw = raw_request(
        sc.addr,
        &signed_webhook_request(r#"{"event":"ready","instanceId":"hc","data":{}}"#),
        true,
    );
    let r = RawResponse::parse(&raw);
    assert_eq!(r.status, 200, "{raw}");
    assert_eq!(r.body, r#"{"ok":true}"#);
    assert!(!sc.log().contains("client went away"), "{}", sc.log());
}

/// An upstream that answers every request with `response` and closes.
fn fixed_upstream(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(response);
            });
        }
    });
    addr
}

fn assert_not_chunked(raw: &str) -> RawResponse {
    let r = RawResponse::parse(raw);
    assert!(r.header("transfer-encoding").is_none(), "{raw}");
    assert!(
        r.header("content-length").is_some() || r.header("connection").as_deref() == Some("close"),
        "neither Content-Length nor Connection: close: {raw}"
    );
    r
}

#[test]
fn http10_clients_never_get_chunked_framing_from_proxied_routes() {
    // wa-hub answering chunked, and answering close-delimited (which Pingora turns chunked).
    for upstream_answer in [
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
           5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"a\":1}"
            [..],
    ] {
        let leaked: &'static [u8] = Box::leak(upstream_answer.to_vec().into_boxed_slice());
        let up = fixed_upstream(leaked);
        let sc = Sidecar::start(&format!("http://{up}"), "");
        let raw = raw_request(
            sc.addr,
            b"GET /api/wahub/instances HTTP/1.0\r\nHost: x\r\n\r\n",
            false,
        );
        let r = assert_not_chunked(&raw);
        assert_eq!(r.status, 200, "{raw}");
        assert_eq!(r.body, r#"{"a":1}"#, "{raw}");

        // HTTP/1.1 clients keep chunked framing (and their connection).
        let raw = raw_request(
            sc.addr,
            b"GET /api/wahub/instances HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            false,
        );
        let r = RawResponse::parse(&raw);
        assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    }

    // The fake wa-hub (lengths known), and a proxy error answer.
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    for path in ["/api/wahub/instances", "/api/wahub/slow?ms=1"] {
        let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        let raw = raw_request(sc.addr, req.as_bytes(), false);
        assert_eq!(assert_not_chunked(&raw).status, 200, "{raw}");
    }
    let dead = Sidecar::start(&dead_upstream_url(), "");
    let raw = raw_request(
        dead.addr,
        b"GET /api/wahub/instances HTTP/1.0\r\nHost: x\r\n\r\n",
        false,
    );
    assert_eq!(assert_not_chunked(&raw).status, 502, "{raw}");
}

#[test]
fn http10_clients_never_get_chunked_framing_from_local_routes() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    for path in [
        "/api/instances",
        "/healthz",
        "/metrics",
        "/api/events",
        "/nope",
    ] {
        let req = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
        let raw = raw_request(sc.addr, req.as_bytes(), false);
        let r = assert_not_chunked(&raw);
        assert!(r.status == 200 || r.status == 404, "{raw}");
    }
}

#[test]
fn http10_sse_client_gets_a_close_delimited_stream() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "sinks:\n  - type: sse\n");
    let mut s = TcpStream::connect(sc.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /api/stream?scope=global HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    // Read until the `connected` event has arrived.
    while !String::from_utf8_lossy(&buf).contains("\"initial\"") {
        read_more(&mut s, &mut buf);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let r = RawResponse::parse(&text);
    assert_eq!(r.status, 200, "{text}");
    assert!(r.header("transfer-encoding").is_none(), "{text}");
    assert_eq!(r.header("connection").as_deref(), Some("close"), "{text}");
    // No chunk-size lines: the body is the event stream itself.
    assert!(r.body.starts_with("retry: "), "{text}");
}

/// Requests Pingora refuses while reading the head, before any of the sidecar's code runs
/// (`pingora-proxy` `process_new_http` → `respond_error(400)`): their 400 has an empty body and
/// no hook can change it (README "Connections and framing"). What must hold: a 400, the
/// connection closed, nothing proxied.
#[test]
fn heads_pingora_refuses_get_400_and_never_reach_upstream() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let long = format!(
        "GET /api/wahub/{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(200_000)
    );
    let many = format!(
        "GET /api/wahub/instances HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..300)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: [(&str, Vec<u8>); 4] = [
        (
            "non-UTF-8 path",
            b"GET /api/wahub/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("200 KB URL", long.into_bytes()),
        ("300 headers", many.into_bytes()),
        (
            "two different Content-Length",
            b"POST /api/wahub/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
                .to_vec(),
        ),
    ];
    for (name, req) in cases {
        let raw = raw_request(sc.addr, &req, false);
        let r = RawResponse::parse(&raw);
        assert_eq!(r.status, 400, "{name}: {raw}");
        assert_eq!(r.header("connection").as_deref(), Some("close"), "{name}");
    }
    assert!(up.received().is_empty(), "{:?}", up.received());
}

/// An SSE stream asked for on a kept-alive connection that already carried a request: the
/// connection is taken over by the stream (README "Server-Sent Events") and its events arrive
/// as valid chunks.
#[test]
fn an_sse_stream_on_a_reused_connection_gets_live_events_in_valid_chunks() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(
        &up.base_url(),
        &format!("{FIXTURE_WEBHOOK_YAML}sinks:\n  - type: sse\n"),
    );
    let mut s = TcpStream::connect(sc.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let first = loop {
        read_more(&mut s, &mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let r = RawResponse::parse(&text);
            let len: usize = r.header("content-length").unwrap().parse().unwrap();
            if text.len() >= end + 4 + len {
                break r;
            }
        }
    };
    assert_eq!(first.status, 200);
    buf.clear();
    s.write_all(b"GET /api/stream?scope=global HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let live = &webhook_fixtures()[0];
    let mut posted = false;
    // Read until the posted webhook's event has arrived whole; post it once `initial` is in.
    let events = loop {
        read_more(&mut s, &mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let r = RawResponse::parse(&text);
        assert_eq!(r.status, 200, "{text}");
        assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
        let events = dechunk(&buf[head_end + 4..]);
        if !posted && events.contains("\"initial\"") {
            assert_eq!(post_signed(&sc, &live.body).status().as_u16(), 200);
            posted = true;
        }
        if events.contains("\"type\":\"webhook\"") {
            break events;
        }
    };
    assert!(events.starts_with("retry: "), "{events}");
    assert!(events.contains("\"type\":\"connected\""), "{events}");
}

/// Reads what `s` has next onto `buf`; panics when the connection closed or the read timed out.
fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    let n = s.read(&mut chunk).expect("more bytes");
    assert!(n > 0, "closed early: {}", String::from_utf8_lossy(buf));
    buf.extend_from_slice(&chunk[..n]);
}

/// The data of the complete chunks at the start of `body` (`<hex size>\r\n<data>\r\n` each,
/// RFC 9112 §7.1), as text; a chunk cut off by the read so far is left out. Panics on a
/// malformed chunk.
fn dechunk(mut body: &[u8]) -> String {
    let mut out = String::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let line = std::str::from_utf8(&body[..line_end]).unwrap();
        let size = usize::from_str_radix(line, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        let data = &body[line_end + 2..];
        if data.len() < size + 2 {
            break;
        }
        assert_eq!(&data[size..size + 2], b"\r\n", "chunk not followed by CRLF");
        out.push_str(std::str::from_utf8(&data[..size]).unwrap());
        body = &data[size + 2..];
    }
    out
}
