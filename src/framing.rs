//! How an answer is framed toward the client where Pingora leaves it to the application:
//! HTTP/1.0 clients never get `Transfer-Encoding` (RFC 9112 §6.1: a 1.0 recipient cannot
//! decode it), so a body of unknown length is delimited by closing the connection, announced
//! with `Connection: close`.
//!
//! Pingora 0.9 turns every proxied body without `Content-Length` into chunked framing and
//! sets the status line to HTTP/1.1, whatever the request's version
//! (`pingora-proxy` `proxy_h1.rs`, "Convert HTTP 1.0 style response to chunked encoding");
//! [`fit_to_client`] undoes that in `response_filter`. Local answers always carry
//! `Content-Length` ([`crate::exchange::write_response`]); the SSE endpoint asks
//! [`chunked_allowed`] before choosing chunked framing.

use http::{header, Version};
use pingora::http::{RequestHeader, ResponseHeader};

/// Whether a response to `req` may use `Transfer-Encoding: chunked`: only for HTTP/1.1 (HTTP/2
/// has its own framing and is never asked).
pub fn chunked_allowed(req: &RequestHeader) -> bool {
    req.version >= Version::HTTP_11
}

/// Removes chunked framing from `resp` when the client `req` speaks HTTP/1.0 and the body has
/// no `Content-Length`. Returns `true` when the body must now end by closing the connection:
/// the caller turns keep-alive off, which makes Pingora write `Connection: close`.
pub fn fit_to_client(req: &RequestHeader, resp: &mut ResponseHeader) -> bool {
    if chunked_allowed(req) || !resp.headers.contains_key(header::TRANSFER_ENCODING) {
        return false;
    }
    resp.remove_header(&header::TRANSFER_ENCODING);
    // With `Transfer-Encoding` gone, a `Content-Length` (never sent beside it by a valid
    // upstream) would frame the body; without one the body is close-delimited.
    !resp.headers.contains_key(header::CONTENT_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.set_version(version);
        r
    }

    fn chunked() -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        r.insert_header("transfer-encoding", "chunked").unwrap();
        r
    }

    #[test]
    fn http10_client_gets_a_close_delimited_body() {
        let mut resp = chunked();
        assert!(fit_to_client(&req(Version::HTTP_10), &mut resp));
        assert!(resp.headers.get("transfer-encoding").is_none());
    }

    #[test]
    fn http11_client_keeps_chunked_framing() {
        let mut resp = chunked();
        assert!(!fit_to_client(&req(Version::HTTP_11), &mut resp));
        assert!(resp.headers.get("transfer-encoding").is_some());
        assert!(chunked_allowed(&req(Version::HTTP_11)));
        assert!(!chunked_allowed(&req(Version::HTTP_10)));
    }

    #[test]
    fn http10_response_with_length_stays_as_is() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("content-length", "2").unwrap();
        assert!(!fit_to_client(&req(Version::HTTP_10), &mut resp));
    }
}
