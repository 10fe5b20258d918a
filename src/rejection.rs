//! Typed rejections: every way the sidecar refuses a request itself, each with its status, its
//! `error` word, its metric reason and its response body (axum's rejections are the model).
//!
//! A handler returns a [`Rejection`]; the proxy turns it into a response in one place, where it
//! is also logged and counted ([`crate::metrics::Metrics::rejected`]), so logs and metrics never
//! disagree (DESIGN.md style rule 7). The body is always `{"error": <word>, "message": <detail>}`
//! and never reveals internals. The `error` words are public interface: they change only with
//! a note in the README.

use crate::response::LocalResponse;

/// A request the sidecar refuses itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 401: a client token is required and missing or wrong.
    Unauthorized,
    /// 403: a state-changing request authenticated by the dashboard session cookie whose
    /// `Origin` is missing or foreign (cross-site request forgery).
    CrossOrigin,
    /// 401: the webhook's bearer token (`WEBHOOK_AUTH_TOKEN`) is missing or wrong.
    WebhookUnauthorized,
    /// 401: the webhook has no `x-wa-hub-signature` header while signatures are required.
    SignatureAbsent,
    /// 401: the webhook's signature does not match its body, or the header is malformed.
    InvalidSignature,
    /// 400: the webhook body is not JSON. Body `{"error":"Invalid JSON"}` (the dashboard's).
    InvalidJson,
    /// 400: the request is malformed; the text says how (no internals).
    BadRequest(&'static str),
    /// 400: a proxied path escapes `/api/wahub` (`..` in any spelling).
    Traversal,
    /// 400: the request body could not be read.
    UnreadableBody,
    /// 404: no such route.
    NotFound,
    /// 404: a route that needs a sink of type sse, and none is configured.
    NoSseSink,
    /// 404: no status is known for this instance.
    UnknownInstance(String),
    /// 404: no forward sink has this name.
    UnknownSink(String),
    /// 404: the forward sink has no dead letter with this id.
    UnknownDeadLetter {
        /// The sink.
        sink: String,
        /// The dead-letter id asked for.
        id: u64,
    },
    /// 405: the route exists; the method is not one of `allow`.
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// 413: the body is over `limit` bytes.
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// 500: a sink's outbox could not be read or written.
    OutboxFailed,
    /// 503: the sidecar is draining (SIGTERM).
    ShuttingDown,
    /// 503: the SSE client limit (`max_clients`) is reached.
    TooManyClients,
    /// 503: fleet mode, NATS connected but the stream did not confirm a webhook within
    /// [`crate::app::SETTLE_TIMEOUT`] (a stalled server). The delivery stays buffered and is
    /// published when the stream answers; a retry is stored once (its `Nats-Msg-Id` is the
    /// body's SHA-256), so the sender should retry rather than count it delivered.
    NotStored,
}

impl Rejection {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        use Rejection::*;
        match self {
            Unauthorized | WebhookUnauthorized | SignatureAbsent | InvalidSignature => 401,
            CrossOrigin => 403,
            InvalidJson | BadRequest(_) | Traversal | UnreadableBody => 400,
            NotFound
            | NoSseSink
            | UnknownInstance(_)
            | UnknownSink(_)
            | UnknownDeadLetter { .. } => 404,
            MethodNotAllowed { .. } => 405,
            TooLarge { .. } => 413,
            OutboxFailed => 500,
            ShuttingDown | TooManyClients | NotStored => 503,
        }
    }

    /// The `error` word of the body.
    pub fn error(&self) -> &'static str {
        use Rejection::*;
        match self {
            Unauthorized | WebhookUnauthorized => "Unauthorized",
            CrossOrigin => "Forbidden",
            SignatureAbsent | InvalidSignature => "Invalid signature",
            InvalidJson => "Invalid JSON",
            BadRequest(_) | Traversal | UnreadableBody => "Bad request",
            NotFound | NoSseSink => "Not found",
            UnknownInstance(_) => "Unknown instance",
            UnknownSink(_) => "Unknown sink",
            UnknownDeadLetter { .. } => "Unknown dead letter",
            MethodNotAllowed { .. } => "Method not allowed",
            TooLarge { .. } => "Payload too large",
            OutboxFailed => "Internal error",
            ShuttingDown => "Shutting down",
            TooManyClients => "Too many clients",
            NotStored => "Not stored",
        }
    }

    /// The `message` of the body: what happened, in words, no internals.
    pub fn message(&self) -> String {
        use Rejection::*;
        match self {
            Unauthorized => "a valid client token or dashboard session is required".into(),
            CrossOrigin => {
                "a state-changing request with a session cookie needs an Origin of this site".into()
            }
            WebhookUnauthorized => "a valid webhook bearer token is required".into(),
            SignatureAbsent => "x-wa-hub-signature header is absent (signature_absent)".into(),
            InvalidSignature => "x-wa-hub-signature does not match the body".into(),
            InvalidJson => "the body is not JSON".into(),
            BadRequest(m) => (*m).to_owned(),
            Traversal => "path escapes the /api/wahub prefix".into(),
            UnreadableBody => "could not read the body".into(),
            NotFound => "no such route".into(),
            NoSseSink => "no sink of type sse is configured".into(),
            UnknownInstance(id) => format!("no status known for {id}"),
            UnknownSink(name) => format!("no sink of type forward is named {name}"),
            UnknownDeadLetter { sink, id } => {
                format!("sink {sink} has no dead letter with id {id}")
            }
            MethodNotAllowed { allow } => format!("use {allow}"),
            TooLarge { limit } => format!("the limit is {limit} bytes"),
            OutboxFailed => "the sink's outbox could not be used".into(),
            ShuttingDown => "the sidecar is draining".into(),
            TooManyClients => "the SSE client limit is reached".into(),
            NotStored => "the fleet's event log did not confirm the delivery in time; it stays \
                          buffered here and a retry is stored once"
                .into(),
        }
    }

    /// The metric `reason` label (bounded: one word per variant).
    pub fn reason(&self) -> &'static str {
        use Rejection::*;
        match self {
            Unauthorized => "unauthorized",
            CrossOrigin => "cross_origin",
            WebhookUnauthorized => "auth_token",
            SignatureAbsent => "signature_absent",
            InvalidSignature => "signature_invalid",
            InvalidJson => "invalid_json",
            BadRequest(_) => "bad_request",
            Traversal => "traversal",
            UnreadableBody => "read_error",
            NotFound => "not_found",
            NoSseSink => "no_sse_sink",
            UnknownInstance(_) => "unknown_instance",
            UnknownSink(_) => "unknown_sink",
            UnknownDeadLetter { .. } => "unknown_dead_letter",
            MethodNotAllowed { .. } => "method_not_allowed",
            TooLarge { .. } => "too_large",
            OutboxFailed => "outbox_failed",
            ShuttingDown => "shutting_down",
            TooManyClients => "too_many_clients",
            NotStored => "fleet_not_stored",
        }
    }

    /// Whether the rejection is worth a warning in the log (someone may be probing, or a
    /// client is misconfigured); the rest (unknown routes, wrong methods, unknown ids) are
    /// logged at debug level.
    pub fn is_notable(&self) -> bool {
        use Rejection::*;
        matches!(
            self,
            Unauthorized
                | CrossOrigin
                | WebhookUnauthorized
                | SignatureAbsent
                | InvalidSignature
                | InvalidJson
                | Traversal
                | UnreadableBody
                | TooLarge { .. }
                | OutboxFailed
                | TooManyClients
                | NotStored
        )
    }

    /// Whether the connection must close after the answer: the request body may be unread
    /// (or partly read), so the next bytes on the connection are not a request.
    pub fn closes_connection(&self) -> bool {
        use Rejection::*;
        matches!(
            self,
            TooLarge { .. } | UnreadableBody | Traversal | ShuttingDown | WebhookUnauthorized
        )
    }

    /// The response: status, `{"error", "message"}` (the dashboard's `{"error":"Invalid JSON"}`
    /// alone for [`Rejection::InvalidJson`]), plus `Allow`, `WWW-Authenticate` or
    /// `Retry-After` where the status calls for it.
    pub fn response(&self) -> LocalResponse {
        let resp = match self {
            Rejection::InvalidJson => {
                LocalResponse::json(self.status(), &serde_json::json!({ "error": self.error() }))
            }
            _ => LocalResponse::error(self.status(), self.error(), self.message()),
        };
        match self {
            Rejection::MethodNotAllowed { allow } => resp.with_header("allow", *allow),
            Rejection::Unauthorized | Rejection::WebhookUnauthorized => {
                resp.with_header("www-authenticate", "Bearer")
            }
            Rejection::TooManyClients | Rejection::NotStored => {
                resp.with_header("retry-after", "5")
            }
            _ => resp,
        }
    }
}

impl From<crate::routes::RouteError> for Rejection {
    fn from(e: crate::routes::RouteError) -> Self {
        match e {
            crate::routes::RouteError::NotFound => Rejection::NotFound,
            crate::routes::RouteError::MethodNotAllowed { allow } => {
                Rejection::MethodNotAllowed { allow }
            }
            crate::routes::RouteError::Traversal => Rejection::Traversal,
            crate::routes::RouteError::EmptySegment => {
                Rejection::BadRequest("the path has an empty segment (//)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_has_the_error_shape_and_its_own_headers() {
        let r = Rejection::MethodNotAllowed { allow: "POST" }.response();
        assert_eq!(r.status, 405);
        assert!(r.headers.contains(&("allow", "POST".into())));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "Method not allowed");
        assert_eq!(body["message"], "use POST");
        let r = Rejection::InvalidJson.response();
        assert_eq!(&r.body[..], br#"{"error":"Invalid JSON"}"#);
        assert_eq!(Rejection::TooLarge { limit: 5 }.status(), 413);
        assert_eq!(
            Rejection::TooLarge { limit: 5 }.error(),
            Rejection::TooLarge { limit: 7 }.error()
        );
    }
}
