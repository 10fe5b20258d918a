//! Where one SSE client's bytes go once its response header is written, and how its stream
//! ends. On HTTP/1 the connection is taken out of Pingora's session ([`Out::detach`]): the
//! client is then served by one small task that owns the socket, with chunk framing, a write
//! timeout and client-gone detection of its own, and Pingora frees its per-request state at
//! once. On HTTP/2 (Pingora owns the framing) the client stays on Pingora's session.
//!
//! Why (issue 10, "SSE at 10,000 clients"): a stream held inside Pingora's session kept
//! Pingora's whole request task and session alive for the stream's life, about 42 KiB per
//! idle client, and every event cost each client a fresh idle-read probe and a timer reset.
//! `pingora-core` documents `HttpSession::into_inner` for this use (taking the stream for an
//! upgraded connection).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a clean end of stream (the last chunk, then FIN) may take before the connection
/// is aborted instead.
const END_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a write did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The client did not take the bytes within the write timeout (`sse.write_timeout_ms`).
    TimedOut,
    /// The connection failed (reset, closed).
    Failed,
}

/// An SSE client's connection after its response header.
pub(crate) enum Out<'s> {
    /// An HTTP/1 connection taken out of Pingora's session: the task serving the client owns it.
    Detached(Detached),
    /// Pingora's session (HTTP/2, or anything that is not HTTP/1).
    Session(&'s mut Session),
}

/// An HTTP/1 connection owned by the SSE task.
pub(crate) struct Detached {
    stream: pingora::protocols::Stream,
    /// `Transfer-Encoding: chunked` was announced (HTTP/1.1); else the body is close-delimited
    /// (HTTP/1.0, `Connection: close`).
    chunked: bool,
    write_timeout: Duration,
}

impl Out<'_> {
    /// Takes the HTTP/1 connection out of `session`, whose response header (announcing
    /// chunked framing when `chunked`) is written; Pingora is left an empty session that it
    /// finishes and drops without writing anything. `None` for HTTP/2 and other session kinds,
    /// which stay with Pingora.
    pub(crate) fn detach(
        session: &mut Session,
        chunked: bool,
        write_timeout: Duration,
    ) -> Option<Out<'static>> {
        if !matches!(&*session.downstream_session, ServerSession::H1(_)) {
            return None;
        }
        // Pingora finishes this one instead: no request was read on it, so it writes nothing
        // and is not kept alive.
        let empty = ServerSession::new_http1(Box::new(tokio::io::duplex(1).0));
        match std::mem::replace(&mut *session.downstream_session, empty) {
            ServerSession::H1(h1) => Some(Out::Detached(Detached {
                // The header Pingora wrote may still sit in the stream's write buffer: the
                // first write flushes it.
                stream: h1.into_inner(),
                chunked,
                write_timeout,
            })),
            other => {
                *session.downstream_session = other;
                None
            }
        }
    }

    /// Writes `bytes` as the next piece of the body and flushes it, within the write timeout.
    pub(crate) async fn write(&mut self, bytes: Bytes) -> Result<(), WriteError> {
        match self {
            Out::Detached(d) => d.write(bytes).await,
            Out::Session(session) => match session.write_response_body(Some(bytes), false).await {
                Ok(()) => Ok(()),
                Err(e) if e.etype == pingora::ErrorType::WriteTimedout => Err(WriteError::TimedOut),
                Err(_) => Err(WriteError::Failed),
            },
        }
    }

    /// Resolves when the client closed its side, sent anything more (an SSE client sends
    /// nothing after its request), or the connection failed. Cancel-safe.
    pub(crate) async fn gone(&mut self) {
        match self {
            Out::Detached(d) => {
                let mut probe = [0u8; 1];
                let _ = d.stream.read(&mut probe).await;
            }
            Out::Session(session) => {
                let _ = session.read_body_or_idle(true).await;
            }
        }
    }

    /// Ends the stream cleanly: the last chunk (HTTP/1.1) and the end of the body, within
    /// 1 s. `false` when that failed or timed out; the caller then aborts.
    pub(crate) async fn end(&mut self) -> bool {
        let ended = match self {
            Out::Detached(d) => tokio::time::timeout(END_TIMEOUT, d.end()).await,
            Out::Session(session) => {
                session.set_keepalive(None);
                tokio::time::timeout(END_TIMEOUT, async {
                    session.write_response_body(None, true).await.is_ok()
                })
                .await
            }
        };
        matches!(ended, Ok(true))
    }

    /// Closes the connection at once, discarding what is queued for it. A detached connection
    /// gets `SO_LINGER` 0 and is closed (a reset) when its owner drops it, right after; on
    /// Pingora's session the socket is also shut down ([`abort_socket`]).
    pub(crate) fn abort(&mut self) {
        match self {
            Out::Detached(d) => {
                if let Some(fd) = tcp_fd(&d.stream) {
                    reset_on_close(&socket2::SockRef::from(&fd));
                }
            }
            Out::Session(session) => {
                session.set_keepalive(None);
                if let Some(stream) = session.stream() {
                    abort_socket(stream);
                }
            }
        }
    }
}

impl Detached {
    async fn write(&mut self, bytes: Bytes) -> Result<(), WriteError> {
        let framed = if self.chunked { chunk(&bytes) } else { bytes };
        let io = async {
            self.stream.write_all(&framed).await?;
            self.stream.flush().await
        };
        // The timer is only registered when the write does not complete at once.
        match tokio::time::timeout(self.write_timeout, io).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteError::Failed),
            Err(_) => Err(WriteError::TimedOut),
        }
    }

    async fn end(&mut self) -> bool {
        if self.chunked && self.stream.write_all(b"0\r\n\r\n").await.is_err() {
            return false;
        }
        if self.stream.flush().await.is_err() {
            return false;
        }
        self.stream.shutdown().await.is_ok()
    }
}

/// `bytes` as one HTTP/1.1 chunk (RFC 9112 §7.1): size in hex, CRLF, data, CRLF. One buffer,
/// so the write is one syscall.
fn chunk(bytes: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(bytes.len() + 20);
    // Written straight into the buffer: no `String` per write per client.
    let _ = std::fmt::Write::write_fmt(&mut b, format_args!("{:X}\r\n", bytes.len()));
    b.put_slice(bytes);
    b.put_slice(b"\r\n");
    b.freeze()
}

/// `SO_LINGER` 0 and `shutdown(both)` on the client's socket: what is queued for it is
/// discarded and the close sends a reset. For a client on Pingora's session: after
/// `request_filter` Pingora ends the response with a final chunk and a flush that have no write
/// timeout (`pingora-core` `HttpSession::finish` → `finish_body`), so a client that stopped
/// reading would hold its descriptor and the queued bytes until it went away, outside
/// `max_clients`; after the shutdown that write fails at once. Only plain TCP; a TLS stream is
/// simply dropped by its owner.
fn abort_socket(stream: &pingora::protocols::Stream) {
    let Some(fd) = tcp_fd(stream) else {
        return;
    };
    let socket = socket2::SockRef::from(&fd);
    reset_on_close(&socket);
    if let Err(e) = socket.shutdown(std::net::Shutdown::Both) {
        tracing::debug!(error = %e, "dropped SSE client's socket not shut down");
    }
}

/// `SO_LINGER` 0: the close discards what is queued and sends a reset (no FIN first, so the
/// client cannot take a cut-off stream for a finished one).
fn reset_on_close(socket: &socket2::SockRef<'_>) {
    if let Err(e) = socket.set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "SO_LINGER not set on a dropped SSE client");
    }
}

/// The descriptor of the TCP socket under `stream`, when it is plain TCP.
fn tcp_fd(stream: &pingora::protocols::Stream) -> Option<BorrowedFd<'_>> {
    let tcp = stream
        .as_any()
        .downcast_ref::<pingora::protocols::l4::stream::Stream>()?;
    // SAFETY: the descriptor belongs to `stream`, borrowed for as long as the returned
    // descriptor lives, so it stays open meanwhile; nothing here closes it.
    Some(unsafe { BorrowedFd::borrow_raw(tcp.as_raw_fd()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_its_hex_size_the_data_and_crlf() {
        assert_eq!(&chunk(b"data: x\n\n")[..], b"9\r\ndata: x\n\n\r\n");
        assert_eq!(&chunk(&[b'a'; 300])[..5], b"12C\r\n");
    }
}
