//! Routing: which of the sidecar's routes a request path names, and, for the proxy, the
//! upstream path it maps to. Plain functions over the raw (still percent-encoded) path, testable
//! without Pingora (DESIGN.md "Public interface").

use percent_encoding::percent_decode_str;

/// Prefix of the proxied wa-hub API.
pub const PROXY_PREFIX: &str = "/api/wahub";

/// The route a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: liveness.
    Healthz,
    /// `GET /readyz`: upstream `/health` reachable.
    Readyz,
    /// `GET /api/config`: the dashboard's `{"webhookUrl"}`.
    Config,
    /// `/api/wahub/webhook`: the webhook receiver, never proxied.
    Webhook,
    /// `GET /api/instances`: every known instance's display status.
    Instances,
    /// `GET /api/instances/<id>/status`: one instance (id percent-decoded).
    InstanceStatus(String),
    /// `GET /api/events`: newest-first webhook history.
    Events,
    /// `GET /api/stream`: Server-Sent Events.
    Stream,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /api/sinks/<name>/dead-letters`: a forward sink's dead letters (name
    /// percent-decoded).
    DeadLetters(String),
    /// `POST /api/sinks/<name>/dead-letters/replay`: re-queue a forward sink's dead letters.
    DeadLetterReplay(String),
    /// `/api/wahub/<rest>`: proxied to wa-hub as `<rest>` (raw, percent-encoding kept,
    /// always starting with `/`).
    Proxy(String),
    /// `GET /` and `GET /console`: redirect to the console page.
    ConsoleRedirect,
    /// `GET /console/<path>`: the console page and assets (`path` raw, may be empty).
    Console(String),
    /// `GET /api/instances/<id>/qr.svg`: the instance's raw-text QR as SVG (id decoded).
    InstanceQr(String),
    /// `GET /api/sinks`: every sink's health.
    Sinks,
    /// Anything else.
    NotFound,
}

/// Why a proxied path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A segment is `.` or `..`, literally or percent-encoded (also inside an encoded `%2F`).
    #[error("path escapes the /api/wahub prefix")]
    Traversal,
}

/// Maps a raw request path (no query) to its [`Route`].
///
/// # Errors
/// [`PathError::Traversal`] for a proxied path with a dot segment.
pub fn route(raw_path: &str) -> Result<Route, PathError> {
    Ok(match raw_path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/api/config" => Route::Config,
        "/api/wahub/webhook" | "/api/wahub/webhook/" => Route::Webhook,
        "/api/instances" => Route::Instances,
        "/api/events" => Route::Events,
        "/api/stream" => Route::Stream,
        "/metrics" => Route::Metrics,
        "/" | "/console" => Route::ConsoleRedirect,
        "/api/sinks" => Route::Sinks,
        _ if raw_path.starts_with("/console/") => {
            Route::Console(raw_path["/console/".len()..].to_owned())
        }
        _ if raw_path.ends_with("/qr.svg") && raw_path.starts_with("/api/instances/") => {
            match raw_path
                .strip_prefix("/api/instances/")
                .and_then(|r| r.strip_suffix("/qr.svg"))
                .filter(|id| !id.is_empty() && !id.contains('/'))
            {
                Some(id) => {
                    Route::InstanceQr(percent_decode_str(id).decode_utf8_lossy().into_owned())
                }
                None => Route::NotFound,
            }
        }
        _ if raw_path.starts_with("/api/instances/") => {
            match raw_path
                .strip_prefix("/api/instances/")
                .and_then(|r| r.strip_suffix("/status"))
                .filter(|id| !id.is_empty() && !id.contains('/'))
            {
                Some(id) => {
                    Route::InstanceStatus(percent_decode_str(id).decode_utf8_lossy().into_owned())
                }
                None => Route::NotFound,
            }
        }
        _ if raw_path.starts_with("/api/sinks/") => sink_route(raw_path),
        _ => match raw_path.strip_prefix(PROXY_PREFIX) {
            Some("") => Route::Proxy("/".to_owned()),
            Some(rest) if rest.starts_with('/') => {
                check_no_dot_segments(rest)?;
                Route::Proxy(rest.to_owned())
            }
            _ => Route::NotFound,
        },
    })
}

/// `/api/sinks/<name>/dead-letters[/replay]`; anything else under `/api/sinks/` is not found.
fn sink_route(raw_path: &str) -> Route {
    let Some(rest) = raw_path.strip_prefix("/api/sinks/") else {
        return Route::NotFound;
    };
    let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        return Route::NotFound;
    }
    let name = percent_decode_str(name).decode_utf8_lossy().into_owned();
    match tail {
        "dead-letters" => Route::DeadLetters(name),
        "dead-letters/replay" => Route::DeadLetterReplay(name),
        _ => Route::NotFound,
    }
}

/// Refuses any segment that decodes to `.` or `..`, including segments hidden behind an encoded
/// slash or backslash (`..%2F`, `%2e%2e%5c`), which some upstreams treat as separators.
fn check_no_dot_segments(raw: &str) -> Result<(), PathError> {
    for segment in raw.split('/') {
        let decoded = percent_decode_str(segment).decode_utf8_lossy();
        if decoded
            .split(['/', '\\'])
            .any(|part| part == ".." || part == ".")
        {
            return Err(PathError::Traversal);
        }
    }
    Ok(())
}

/// The value of query parameter `name` in a raw query string, percent-decoded (`+` as space).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The wa-hub instance id in a wa-hub path `/instances/<id>` or `/instances/<id>/...`,
/// percent-decoded. Query strings are ignored.
pub fn instance_id(upstream_path: &str) -> Option<String> {
    let path = upstream_path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix("/instances/")?;
    let raw = rest.split('/').next().filter(|s| !s.is_empty())?;
    Some(percent_decode_str(raw).decode_utf8_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_routes_are_recognised() {
        assert_eq!(route("/healthz"), Ok(Route::Healthz));
        assert_eq!(route("/readyz"), Ok(Route::Readyz));
        assert_eq!(route("/api/config"), Ok(Route::Config));
        assert_eq!(route("/api/wahub/webhook"), Ok(Route::Webhook));
        assert_eq!(route("/nope"), Ok(Route::NotFound));
        assert_eq!(route("/api/wahubx/instances"), Ok(Route::NotFound));
    }

    #[test]
    fn proxy_prefix_is_stripped_keeping_percent_encoding() {
        assert_eq!(
            route("/api/wahub/instances/a%2Fb/client/status"),
            Ok(Route::Proxy("/instances/a%2Fb/client/status".into()))
        );
        assert_eq!(route("/api/wahub"), Ok(Route::Proxy("/".into())));
        assert_eq!(route("/api/wahub/"), Ok(Route::Proxy("/".into())));
    }

    #[test]
    fn dot_segments_in_any_spelling_are_traversal() {
        for p in [
            "/api/wahub/../admin",
            "/api/wahub/instances/..",
            "/api/wahub/%2e%2e/x",
            "/api/wahub/%2E%2e/x",
            "/api/wahub/.%2e/x",
            "/api/wahub/..%2fadmin",
            "/api/wahub/x/%2e%2e%5cadmin",
            "/api/wahub/./x",
        ] {
            assert_eq!(route(p), Err(PathError::Traversal), "{p}");
        }
        assert!(route("/api/wahub/instances/a..b/x").is_ok());
        assert!(route("/api/wahub/instances/%252e%252e").is_ok());
    }

    #[test]
    fn read_routes_are_recognised_with_decoded_ids() {
        assert_eq!(route("/api/instances"), Ok(Route::Instances));
        assert_eq!(route("/api/events"), Ok(Route::Events));
        assert_eq!(
            route("/api/instances/WASP-a%2Fb/status"),
            Ok(Route::InstanceStatus("WASP-a/b".into()))
        );
        assert_eq!(route("/api/instances//status"), Ok(Route::NotFound));
        assert_eq!(route("/api/instances/a/b/status"), Ok(Route::NotFound));
    }

    #[test]
    fn dead_letter_routes_name_the_sink_decoded() {
        assert_eq!(
            route("/api/sinks/crm/dead-letters"),
            Ok(Route::DeadLetters("crm".into()))
        );
        assert_eq!(
            route("/api/sinks/crm%20hook/dead-letters/replay"),
            Ok(Route::DeadLetterReplay("crm hook".into()))
        );
        for p in [
            "/api/sinks/",
            "/api/sinks/crm",
            "/api/sinks//dead-letters",
            "/api/sinks/crm/dead-letters/",
            "/api/sinks/crm/dead-letters/replay/x",
            "/api/sinks/crm/other",
        ] {
            assert_eq!(route(p), Ok(Route::NotFound), "{p}");
        }
    }

    #[test]
    fn console_qr_and_sinks_routes_are_recognised() {
        assert_eq!(route("/"), Ok(Route::ConsoleRedirect));
        assert_eq!(route("/console"), Ok(Route::ConsoleRedirect));
        assert_eq!(route("/console/"), Ok(Route::Console(String::new())));
        assert_eq!(
            route("/console/v/abc/app.js"),
            Ok(Route::Console("v/abc/app.js".into()))
        );
        assert_eq!(route("/api/sinks"), Ok(Route::Sinks));
        assert_eq!(
            route("/api/instances/WASP-a%2Fb/qr.svg"),
            Ok(Route::InstanceQr("WASP-a/b".into()))
        );
        assert_eq!(route("/api/instances//qr.svg"), Ok(Route::NotFound));
        assert_eq!(route("/api/instances/a/b/qr.svg"), Ok(Route::NotFound));
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param(Some("a=1&instanceId=x%20y+z"), "instanceId").as_deref(),
            Some("x y z")
        );
        assert_eq!(query_param(Some("limit"), "limit").as_deref(), Some(""));
        assert_eq!(query_param(None, "a"), None);
        assert_eq!(query_param(Some("ab=1"), "a"), None);
    }

    #[test]
    fn instance_id_is_taken_from_instances_paths() {
        assert_eq!(
            instance_id("/instances/WASP-x/client/status").as_deref(),
            Some("WASP-x")
        );
        assert_eq!(instance_id("/instances/a%2Fb?x=1").as_deref(), Some("a/b"));
        assert_eq!(instance_id("/instances"), None);
        assert_eq!(instance_id("/instances/"), None);
        assert_eq!(instance_id("/health"), None);
    }
}
