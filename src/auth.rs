//! Client authentication: the optional `auth.client_tokens` every proxied and read route checks
//! (the webhook route has its own checks), and the dashboard's session cookie (issue 13).
//! [`decide`] is the one place that decides access. Comparisons are constant-time.

use http::{HeaderMap, Method};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::rejection::Rejection;
use crate::session::Sessions;

/// What [`decide`] concluded about a request to a protected route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Allowed,
    /// No valid token or session: 401.
    Unauthorized,
    /// A valid session cookie on a state-changing request whose `Origin` is missing or
    /// foreign (cross-site request forgery): 403.
    CrossOrigin,
}

impl Decision {
    /// The refusal for a refused request: [`Rejection::Unauthorized`] (401) or
    /// [`Rejection::CrossOrigin`] (403).
    ///
    /// # Errors
    /// The rejection, when not allowed.
    pub fn check(self) -> Result<(), Rejection> {
        match self {
            Decision::Allowed => Ok(()),
            Decision::Unauthorized => Err(Rejection::Unauthorized),
            Decision::CrossOrigin => Err(Rejection::CrossOrigin),
        }
    }
}

/// Decides access to a route that needs a client token (issue 13, "Auth the dashboard can use"):
///
/// - open to all when no `auth.client_tokens` and no dashboard password are configured (as
///   before issue 13);
/// - allowed with a valid `Authorization: Bearer <token>` or, where the route accepts one, an
///   `access_token` query parameter (`query_token`);
/// - allowed with a valid session cookie ([`Sessions::verify`]) for `GET`, `HEAD` and
///   `OPTIONS`; for any other method only when `Origin` names the request's own `Host` or an
///   origin listed in `cors.allowed_origins` (`*` does not count), else [`Decision::CrossOrigin`];
/// - otherwise [`Decision::Unauthorized`].
pub fn decide(
    tokens: &[Secret],
    sessions: &Sessions,
    allowed_origins: &[String],
    method: &Method,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Decision {
    if tokens.is_empty() && !sessions.enabled() {
        return Decision::Allowed;
    }
    let authz = headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !tokens.is_empty() && client_allowed(tokens, authz, query_token) {
        return Decision::Allowed;
    }
    let cookies = headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes());
    if !sessions.verify(cookies, crate::session::now_secs()) {
        return Decision::Unauthorized;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || origin_trusted(headers, allowed_origins)
    {
        Decision::Allowed
    } else {
        Decision::CrossOrigin
    }
}

/// Whether the request's `Origin` is its own (`Origin` names the `Host` it was sent to, the
/// port defaulting by scheme) or listed in `allowed_origins` (`*` is not a listing). `false`
/// without an `Origin` header.
pub fn origin_trusted(headers: &HeaderMap, allowed_origins: &[String]) -> bool {
    let Some(origin) = headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if allowed_origins
        .iter()
        .any(|a| a != "*" && a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok());
    match (url::Url::parse(origin), host) {
        (Ok(o), Some(host)) if o.origin().is_tuple() => {
            match url::Url::parse(&format!("{}://{host}/", o.scheme())) {
                Ok(h) => {
                    h.host_str() == o.host_str()
                        && h.port_or_known_default() == o.port_or_known_default()
                }
                Err(_) => false,
            }
        }
        _ => false,
    }
}

/// Whether a request presenting `authorization` (the raw header value, if any) or
/// `query_token` (an `access_token` query parameter, for `EventSource`, which cannot set
/// headers) may pass. Always true when no tokens are configured.
pub fn client_allowed(
    tokens: &[Secret],
    authorization: Option<&[u8]>,
    query_token: Option<&str>,
) -> bool {
    if tokens.is_empty() {
        return true;
    }
    let presented = authorization
        .and_then(bearer_token)
        .or(query_token.map(str::as_bytes));
    match presented {
        // Check every token so the time taken does not depend on which one matched.
        Some(p) => {
            tokens.iter().fold(0u8, |acc, t| {
                acc | t.expose().as_bytes().ct_eq(p).unwrap_u8()
            }) == 1
        }
        None => false,
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme matched case-insensitively).
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if scheme.eq_ignore_ascii_case(b"bearer ") {
        let token = rest.trim_ascii();
        (!token.is_empty()).then_some(token)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Vec<Secret> {
        vec![Secret::from("alpha"), Secret::from("beta")]
    }

    #[test]
    fn no_tokens_configured_lets_everyone_in() {
        assert!(client_allowed(&[], None, None));
    }

    #[test]
    fn bearer_header_in_any_case_is_accepted() {
        assert!(client_allowed(&tokens(), Some(b"Bearer beta"), None));
        assert!(client_allowed(&tokens(), Some(b"bearer alpha"), None));
    }

    #[test]
    fn wrong_missing_or_malformed_tokens_are_refused() {
        assert!(!client_allowed(&tokens(), None, None));
        assert!(!client_allowed(&tokens(), Some(b"Bearer gamma"), None));
        assert!(!client_allowed(&tokens(), Some(b"Basic alpha"), None));
        assert!(!client_allowed(&tokens(), Some(b"Bearer "), None));
        assert!(!client_allowed(&tokens(), Some(b"Bearer alph"), None));
        assert!(!client_allowed(&tokens(), Some(&[0xff, 0xfe]), None));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origin_must_name_the_host_or_be_listed() {
        let own = headers(&[
            ("origin", "http://dash.local:8080"),
            ("host", "dash.local:8080"),
        ]);
        assert!(origin_trusted(&own, &[]));
        let default_port = headers(&[("origin", "https://dash.local"), ("host", "dash.local:443")]);
        assert!(origin_trusted(&default_port, &[]));
        let other_port = headers(&[
            ("origin", "http://dash.local:9999"),
            ("host", "dash.local:8080"),
        ]);
        assert!(!origin_trusted(&other_port, &[]));
        assert!(origin_trusted(
            &other_port,
            &["http://dash.local:9999".into()]
        ));
        assert!(!origin_trusted(&other_port, &["*".into()]));
        assert!(!origin_trusted(
            &headers(&[("host", "dash.local:8080")]),
            &[]
        ));
        let opaque = headers(&[("origin", "null"), ("host", "dash.local")]);
        assert!(!origin_trusted(&opaque, &[]));
    }

    #[test]
    fn nothing_configured_keeps_everything_open() {
        let off = Sessions::new(&crate::config::DashboardAuthConfig::default());
        assert_eq!(
            decide(&[], &off, &[], &Method::POST, &HeaderMap::new(), None),
            Decision::Allowed
        );
        assert_eq!(
            decide(&tokens(), &off, &[], &Method::GET, &HeaderMap::new(), None),
            Decision::Unauthorized
        );
        let h = headers(&[("authorization", "Bearer alpha")]);
        assert_eq!(
            decide(&tokens(), &off, &[], &Method::POST, &h, None),
            Decision::Allowed
        );
    }

    #[test]
    fn query_token_is_accepted_when_no_header() {
        assert!(client_allowed(&tokens(), None, Some("alpha")));
        assert!(!client_allowed(&tokens(), None, Some("x")));
    }
}
