//! Proxied request bodies are buffered whole, up to `proxy.max_body_bytes`, before any of
//! their bytes go to wa-hub, as nginx does by default (`proxy_request_buffering on`): a body
//! that turns out too large (chunked, so its size was not declared) is refused with 413 and
//! wa-hub never receives part of it, nor part of a body whose client went away.
//!
//! Pingora streams request bodies through `request_body_filter`; [`RequestBuffer::filter`]
//! holds each chunk back (an empty chunk is not written upstream, `pingora-proxy`
//! `proxy_h1.rs` `send_body_to_pipe`) and releases the whole body with the end of stream.
//! What Pingora cannot hold back is the request head: it is written to wa-hub when the
//! connection is made, before the body is read, so on a 413 wa-hub sees a head followed by a
//! closed connection and no body bytes.

use bytes::{Bytes, BytesMut};

/// One request's body held back until its end.
#[derive(Debug)]
pub struct RequestBuffer {
    limit: usize,
    held: BytesMut,
}

/// The body passed the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body over {limit} bytes")]
pub struct TooLarge {
    /// The limit, bytes.
    pub limit: usize,
}

impl RequestBuffer {
    /// A buffer refusing more than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            held: BytesMut::new(),
        }
    }

    /// Takes the chunk in `body` (Pingora's `request_body_filter` argument): before the end,
    /// leaves an empty chunk (nothing is sent); at `end_of_stream`, puts the whole body there
    /// (`None` when it is empty).
    ///
    /// # Errors
    /// [`TooLarge`] as soon as the bytes held pass the limit; nothing was released then.
    pub fn filter(
        &mut self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
    ) -> Result<(), TooLarge> {
        if let Some(chunk) = body.take() {
            if self.held.len() + chunk.len() > self.limit {
                return Err(TooLarge { limit: self.limit });
            }
            // A body that arrives whole (the usual case) passes on without a copy.
            if end_of_stream && self.held.is_empty() {
                *body = (!chunk.is_empty()).then_some(chunk);
                return Ok(());
            }
            self.held.extend_from_slice(&chunk);
        }
        *body = if !end_of_stream {
            Some(Bytes::new())
        } else if self.held.is_empty() {
            None
        } else {
            Some(self.held.split().freeze())
        };
        Ok(())
    }

    /// Forgets what was held: a new attempt to reach wa-hub starts, and Pingora replays the
    /// body read so far through the filter again.
    pub fn restart(&mut self) {
        self.held.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(
        buf: &mut RequestBuffer,
        chunk: &'static [u8],
        end: bool,
    ) -> Result<Option<Bytes>, TooLarge> {
        let mut body = Some(Bytes::from_static(chunk));
        buf.filter(&mut body, end).map(|()| body)
    }

    #[test]
    fn chunks_are_held_until_the_end_then_released_whole() {
        let mut b = RequestBuffer::new(10);
        assert_eq!(feed(&mut b, b"abc", false), Ok(Some(Bytes::new())));
        assert_eq!(feed(&mut b, b"def", false), Ok(Some(Bytes::new())));
        let mut end = None;
        b.filter(&mut end, true).unwrap();
        assert_eq!(end, Some(Bytes::from_static(b"abcdef")));
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_anything_is_released() {
        let mut b = RequestBuffer::new(5);
        assert_eq!(feed(&mut b, b"abc", false), Ok(Some(Bytes::new())));
        assert_eq!(feed(&mut b, b"def", false), Err(TooLarge { limit: 5 }));
        let mut exact = RequestBuffer::new(6);
        assert_eq!(
            feed(&mut exact, b"abcdef", true),
            Ok(Some(Bytes::from_static(b"abcdef")))
        );
    }

    #[test]
    fn an_empty_body_ends_with_none_and_a_restart_forgets() {
        let mut b = RequestBuffer::new(5);
        let mut end = None;
        b.filter(&mut end, true).unwrap();
        assert_eq!(end, None);
        assert_eq!(feed(&mut b, b"abc", false), Ok(Some(Bytes::new())));
        b.restart();
        assert_eq!(
            feed(&mut b, b"abc", true),
            Ok(Some(Bytes::from_static(b"abc")))
        );
    }
}
