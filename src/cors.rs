//! CORS for browsers that load the dashboard from another origin than the sidecar's
//! (`cors.allowed_origins`). Off by default: same-origin setups need nothing.
//!
//! Rules (Fetch standard, "CORS protocol"): a request whose `Origin` is listed (or any origin
//! with `*`) gets `Access-Control-Allow-Origin: <origin>` and `Vary: Origin` on every answer;
//! a preflight (`OPTIONS` with `Access-Control-Request-Method`) from such an origin is answered
//! 204 by the sidecar itself. Credentials are never allowed: client tokens travel in headers
//! or the `access_token` query parameter, not cookies.

use http::HeaderMap;

/// Methods a preflight may allow.
pub const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/// Seconds a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE_SECS: &str = "600";

/// The `Access-Control-Allow-Origin` value for a request with these headers, if allowed.
pub fn allow_origin(allowed: &[String], headers: &HeaderMap) -> Option<String> {
    let origin = headers.get(http::header::ORIGIN)?.to_str().ok()?;
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        .then(|| origin.to_owned())
}

/// Whether the request is a CORS preflight.
pub fn is_preflight(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::OPTIONS
        && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The 204 answer to a preflight from an allowed `origin`.
pub fn preflight_response(origin: &str, headers: &HeaderMap) -> crate::response::LocalResponse {
    let mut resp = crate::response::LocalResponse::empty(204);
    resp.headers = preflight_headers(origin, headers);
    resp
}

/// Headers of a preflight answer for an allowed `origin`.
pub fn preflight_headers(origin: &str, headers: &HeaderMap) -> Vec<(&'static str, String)> {
    let requested = headers
        .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut out = vec![
        ("access-control-allow-origin", origin.to_owned()),
        ("access-control-allow-methods", ALLOWED_METHODS.to_owned()),
        ("access-control-max-age", PREFLIGHT_MAX_AGE_SECS.to_owned()),
        ("vary", "Origin".to_owned()),
    ];
    if !requested.is_empty() {
        out.push(("access-control-allow-headers", requested));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn listed_origin_is_echoed_and_others_are_not() {
        let allowed = vec!["http://dash.local:8080".to_owned()];
        let h = headers(&[("origin", "http://dash.local:8080")]);
        assert_eq!(
            allow_origin(&allowed, &h).as_deref(),
            Some("http://dash.local:8080")
        );
        let h = headers(&[("origin", "http://evil.example")]);
        assert_eq!(allow_origin(&allowed, &h), None);
        assert_eq!(allow_origin(&allowed, &HeaderMap::new()), None);
        assert_eq!(allow_origin(&[], &headers(&[("origin", "http://a")])), None);
    }

    #[test]
    fn a_listed_origin_with_a_trailing_slash_matches_the_browser_origin() {
        let h = headers(&[("origin", "http://slash.example")]);
        assert_eq!(
            allow_origin(&["http://slash.example/".into()], &h).as_deref(),
            Some("http://slash.example")
        );
    }

    #[test]
    fn star_allows_any_origin_by_echoing_it() {
        let h = headers(&[("origin", "http://a:1")]);
        assert_eq!(
            allow_origin(&["*".into()], &h).as_deref(),
            Some("http://a:1")
        );
    }

    #[test]
    fn preflight_echoes_requested_headers() {
        let h = headers(&[
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type, authorization",
            ),
        ]);
        assert!(is_preflight(&http::Method::OPTIONS, &h));
        assert!(!is_preflight(&http::Method::GET, &h));
        let out = preflight_headers("http://a", &h);
        assert!(out.contains(&(
            "access-control-allow-headers",
            "content-type, authorization".into()
        )));
    }
}
