//! [`LocalResponse`]: a complete answer the sidecar writes itself (JSON, Prometheus text, a
//! PNG, an SVG), built by handlers and rejections without Pingora; [`crate::exchange`] writes it.

use bytes::Bytes;
use serde_json::{json, Value};

/// A complete response to write to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
    /// Extra headers beyond `Content-Type` and `Content-Length`.
    pub headers: Vec<(&'static str, String)>,
    /// `Content-Type` of a non-empty body.
    pub content_type: &'static str,
}

impl LocalResponse {
    /// A JSON response.
    pub fn json(status: u16, value: &Value) -> Self {
        Self {
            status,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            headers: Vec::new(),
            content_type: "application/json",
        }
    }

    /// A response with no body (e.g. 204).
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            body: Bytes::new(),
            headers: Vec::new(),
            content_type: "application/json",
        }
    }

    /// The error shape every rejection uses: `{"error": <what>, "message": <detail>}`.
    pub fn error(status: u16, error: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &json!({ "error": error, "message": message.into() }),
        )
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}
