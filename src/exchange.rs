//! The sidecar's own side of an HTTP exchange on Pingora's session: reading a request body up
//! to a limit, and writing a complete [`LocalResponse`] (DESIGN.md "Engineering notes on
//! Pingora 0.9": local endpoints answer from `request_filter`).

use bytes::{Bytes, BytesMut};
use http::header;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::rejection::Rejection;
use crate::response::LocalResponse;

/// Reads the whole request body, refusing more than `limit` bytes.
///
/// # Errors
/// [`Rejection::TooLarge`] as soon as the body passes `limit` (the rest stays unread: close
/// the connection), [`Rejection::UnreadableBody`] when reading fails (bad chunked framing,
/// client gone).
pub async fn read_limited(session: &mut Session, limit: usize) -> Result<Bytes, Rejection> {
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Rejection::TooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                tracing::debug!(error = %e, "request body could not be read");
                return Err(Rejection::UnreadableBody);
            }
        }
    }
}

/// The declared `Content-Length` of the request, when present and numeric.
pub fn declared_length(session: &Session) -> Option<u64> {
    session
        .req_header()
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Writes `resp` in full: `Content-Type` (for a body), `Content-Length`, `Cache-Control:
/// no-store`, its own headers, and `Access-Control-Allow-Origin: <cors_origin>` + `Vary:
/// Origin` unless it sets its own. A `HEAD` request gets the headers only.
///
/// # Errors
/// Pingora's error when the client connection fails.
pub async fn write_response(
    session: &mut Session,
    resp: LocalResponse,
    cors_origin: Option<&str>,
) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(resp.status, Some(6 + resp.headers.len()))?;
    if !resp.body.is_empty() {
        header.insert_header(header::CONTENT_TYPE, resp.content_type)?;
    }
    header.insert_header(header::CONTENT_LENGTH, resp.body.len().to_string())?;
    header.insert_header(header::CACHE_CONTROL, "no-store")?;
    let has_cors = resp
        .headers
        .iter()
        .any(|(n, _)| *n == "access-control-allow-origin");
    for (name, value) in resp.headers {
        header.insert_header(name, value)?;
    }
    if let (false, Some(origin)) = (has_cors, cors_origin) {
        header.insert_header(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin)?;
        header.insert_header(header::VARY, "Origin")?;
    }
    let head = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(header), head)
        .await?;
    if !head {
        session.write_response_body(Some(resp.body), true).await?;
    }
    Ok(())
}
