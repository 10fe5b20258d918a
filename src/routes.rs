//! The route table: which of the sidecar's routes a request names, the methods each allows and
//! who may call it. Plain functions over the method and the raw (still percent-encoded) path,
//! testable without Pingora (DESIGN.md "Public interface").
//!
//! Every route is declared once, in [`Route::spec`], with its methods and its [`Access`]. A
//! route that allows `GET` also answers `HEAD` (RFC 9110 §9.3.2). Route paths are public
//! interface: they change only with a note in the README.
//!
//! One rule for empty segments, on every route: a path with `//` anywhere is refused (400)
//! rather than normalised. wa-hub's router (Express) would not match `/instances//status` to a
//! route either, and collapsing would make two different raw paths one route, or proxy a path
//! the client did not send. A trailing `/` is not an empty segment here.

use http::Method;
use percent_encoding::percent_decode_str;

/// Prefix of the proxied wa-hub API. Public interface.
pub const PROXY_PREFIX: &str = "/api/wahub";

/// The route a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`: liveness.
    Healthz,
    /// `GET /readyz`: upstream `/health` reachable.
    Readyz,
    /// `GET /api/config`: the dashboard's `{"webhookUrl"}`.
    Config,
    /// `POST /api/wahub/webhook`: the webhook receiver, never proxied.
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
    /// `GET /` and `GET /console`: redirect to the console page.
    ConsoleRedirect,
    /// `GET /console/<path>`: the console page and assets (`path` raw, may be empty).
    Console(String),
    /// `GET /api/instances/<id>/qr.svg`: the instance's raw-text QR as SVG (id decoded).
    InstanceQr(String),
    /// `GET /api/sinks`: every sink's health.
    Sinks,
    /// One of the wa-hub dashboard's extra routes, served by [`crate::dashboard`].
    Dashboard(DashRoute),
    /// `ANY /api/wahub/<rest>`: proxied to wa-hub as `<rest>` (raw, percent-encoding kept,
    /// always starting with `/`).
    Proxy(String),
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, readiness, the dashboard's config, and the webhook receiver (which
    /// checks wa-hub's own token and signature).
    Open,
    /// A client token from `auth.client_tokens` when any is configured: `Authorization:
    /// Bearer`, or on local routes the `access_token` query parameter (an `EventSource`
    /// cannot set headers).
    Client,
    /// Like [`Access::Client`], but only the header: a proxied query belongs to wa-hub.
    ClientHeader,
}

/// What a route allows: its methods (as the `Allow` header lists them) and its access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Methods allowed, as the `Allow` value (`GET` implies `HEAD`); `None`: any method.
    pub allow: Option<&'static str>,
    /// Who may call it.
    pub access: Access,
}

/// The `Allow` value of a proxied route refusing `TRACE`, `TRACK` or `CONNECT`.
const PROXY_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

const GET: Option<&str> = Some("GET, HEAD");
const POST: Option<&str> = Some("POST");

impl Route {
    /// The route's methods and access rule: the one place each is declared.
    pub fn spec(&self) -> RouteSpec {
        use Access::*;
        let (allow, access) = match self {
            Route::Healthz | Route::Readyz | Route::Config => (GET, Open),
            Route::ConsoleRedirect | Route::Console(_) => (GET, Open),
            Route::Webhook => (POST, Open),
            Route::Instances
            | Route::InstanceStatus(_)
            | Route::Events
            | Route::Stream
            | Route::Metrics
            | Route::InstanceQr(_)
            | Route::Sinks
            | Route::DeadLetters(_) => (GET, Client),
            Route::DeadLetterReplay(_) => (POST, Client),
            Route::Dashboard(d) => (
                if d.method() == Method::GET { GET } else { POST },
                if d.is_open() { Open } else { Client },
            ),
            Route::Proxy(_) => (None, ClientHeader),
        };
        RouteSpec { allow, access }
    }

    /// Whether the route allows `method` (`HEAD` wherever `GET` is allowed). A proxied route
    /// allows every method but `TRACE`, `TRACK` and `CONNECT`: a `TRACE` echoed by anything in
    /// front of wa-hub would reflect the injected API key.
    pub fn allows(&self, method: &Method) -> bool {
        match self.spec().allow {
            None => !matches!(method.as_str(), "TRACE" | "TRACK" | "CONNECT"),
            Some(allow) => allow
                .split(", ")
                .any(|m| m.as_bytes() == method.as_str().as_bytes()),
        }
    }
}

/// Why a request names no route it may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No route has this path.
    #[error("no such route")]
    NotFound,
    /// The path is a route, the method is not one of its methods.
    #[error("use {allow}")]
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: &'static str,
    },
    /// A proxied path has a segment that is `.` or `..`, literally or percent-encoded (also
    /// inside an encoded `%2F`).
    #[error("path escapes the /api/wahub prefix")]
    Traversal,
    /// The path has an empty segment (`//`), on any route.
    #[error("the path has an empty segment (//)")]
    EmptySegment,
}

/// Maps a method and a raw request path (no query) to its [`Route`].
///
/// # Errors
/// [`RouteError::EmptySegment`] for a path with `//` (any route), [`RouteError::NotFound`],
/// [`RouteError::MethodNotAllowed`] with the route's `Allow` value, or
/// [`RouteError::Traversal`] for a proxied path with a dot segment.
pub fn route(method: &Method, raw_path: &str) -> Result<Route, RouteError> {
    if raw_path.contains("//") {
        return Err(RouteError::EmptySegment);
    }
    let route = match_path(raw_path)?;
    if route.allows(method) {
        return Ok(route);
    }
    Err(RouteError::MethodNotAllowed {
        allow: route.spec().allow.unwrap_or(PROXY_METHODS),
    })
}

/// The route a raw path names, whatever the method.
fn match_path(raw_path: &str) -> Result<Route, RouteError> {
    if let Some(d) = dashboard_route(raw_path) {
        return Ok(Route::Dashboard(d));
    }
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
        _ if raw_path.starts_with("/api/instances/") && raw_path.ends_with("/qr.svg") => raw_path
            .strip_prefix("/api/instances/")
            .and_then(|r| r.strip_suffix("/qr.svg"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .map(|id| Route::InstanceQr(decode(id)))
            .ok_or(RouteError::NotFound)?,
        _ if raw_path.starts_with("/api/instances/") => raw_path
            .strip_prefix("/api/instances/")
            .and_then(|r| r.strip_suffix("/status"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .map(|id| Route::InstanceStatus(decode(id)))
            .ok_or(RouteError::NotFound)?,
        _ if raw_path.starts_with("/api/sinks/") => sink_route(raw_path)?,
        _ => match raw_path.strip_prefix(PROXY_PREFIX) {
            Some("") => Route::Proxy("/".to_owned()),
            Some(rest) if rest.starts_with('/') => {
                check_no_dot_segments(rest)?;
                Route::Proxy(rest.to_owned())
            }
            _ => return Err(RouteError::NotFound),
        },
    })
}

/// One of the wa-hub dashboard's extra routes (its browser code calls them); see the README's
/// route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DashRoute {
    /// `GET /api/system/status`.
    SystemStatus,
    /// `POST /api/system/force-normal`.
    ForceNormal,
    /// `POST /api/view-session/create`.
    ViewSessionCreate,
    /// `POST /api/view-session/revoke`.
    ViewSessionRevoke,
    /// `GET /api/view-session/screenshot`.
    Screenshot,
    /// `POST /api/view-session/click`.
    Click,
    /// `POST /api/view-session/scroll`.
    Scroll,
    /// `GET /api/ping`.
    Ping,
    /// `POST /api/instances/<id>/poll/start` (`start: true`) or `.../poll/stop`.
    Poll {
        /// The instance id, percent-decoded.
        instance_id: String,
        /// Start or stop.
        start: bool,
    },
    /// `GET /api/auth/check`.
    AuthCheck,
    /// `POST /api/auth/login`.
    AuthLogin,
    /// `POST /api/auth/logout`.
    AuthLogout,
}

impl DashRoute {
    /// The one method the route answers.
    pub fn method(&self) -> Method {
        match self {
            Self::SystemStatus | Self::Screenshot | Self::Ping | Self::AuthCheck => Method::GET,
            _ => Method::POST,
        }
    }

    /// Whether the route is open to everyone (`/api/ping` and the auth routes).
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            Self::Ping | Self::AuthCheck | Self::AuthLogin | Self::AuthLogout
        )
    }
}

/// The dashboard route a raw request path (no query) names, if any.
fn dashboard_route(raw_path: &str) -> Option<DashRoute> {
    Some(match raw_path {
        "/api/system/status" => DashRoute::SystemStatus,
        "/api/system/force-normal" => DashRoute::ForceNormal,
        "/api/view-session/create" => DashRoute::ViewSessionCreate,
        "/api/view-session/revoke" => DashRoute::ViewSessionRevoke,
        "/api/view-session/screenshot" => DashRoute::Screenshot,
        "/api/view-session/click" => DashRoute::Click,
        "/api/view-session/scroll" => DashRoute::Scroll,
        "/api/ping" => DashRoute::Ping,
        "/api/auth/check" => DashRoute::AuthCheck,
        "/api/auth/login" => DashRoute::AuthLogin,
        "/api/auth/logout" => DashRoute::AuthLogout,
        _ => {
            let rest = raw_path.strip_prefix("/api/instances/")?;
            let (id, start) = if let Some(id) = rest.strip_suffix("/poll/start") {
                (id, true)
            } else {
                (rest.strip_suffix("/poll/stop")?, false)
            };
            if id.is_empty() || id.contains('/') {
                return None;
            }
            DashRoute::Poll {
                instance_id: decode(id),
                start,
            }
        }
    })
}

fn decode(segment: &str) -> String {
    percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

/// `/api/sinks/<name>/dead-letters[/replay]`; anything else under `/api/sinks/` is not found.
fn sink_route(raw_path: &str) -> Result<Route, RouteError> {
    let rest = raw_path
        .strip_prefix("/api/sinks/")
        .ok_or(RouteError::NotFound)?;
    let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if name.is_empty() {
        return Err(RouteError::NotFound);
    }
    match tail {
        "dead-letters" => Ok(Route::DeadLetters(decode(name))),
        "dead-letters/replay" => Ok(Route::DeadLetterReplay(decode(name))),
        _ => Err(RouteError::NotFound),
    }
}

/// Refuses any segment that decodes to `.` or `..`, including segments hidden behind an encoded
/// slash or backslash (`..%2F`, `%2e%2e%5c`), which some upstreams treat as separators.
fn check_no_dot_segments(raw: &str) -> Result<(), RouteError> {
    // A dot segment needs a `.`, written or encoded (`%2e`): most paths have neither, and one
    // scan of the bytes clears them.
    if !raw.bytes().any(|b| b == b'.' || b == b'%') {
        return Ok(());
    }
    for segment in raw.split('/') {
        // Without a `%`, the segment is its own decoding.
        let decoded = if segment.contains('%') {
            percent_decode_str(segment).decode_utf8_lossy()
        } else {
            std::borrow::Cow::Borrowed(segment)
        };
        if decoded
            .split(['/', '\\'])
            .any(|part| part == ".." || part == ".")
        {
            return Err(RouteError::Traversal);
        }
    }
    Ok(())
}

/// A raw query string without every `name=...` pair (kept raw otherwise); `None` when nothing
/// is left. The proxy drops the sidecar's own `access_token` this way, so a client token never
/// reaches wa-hub, the logs or the API log.
pub fn without_param(query: Option<&str>, name: &str) -> Option<String> {
    let kept: Vec<&str> = query?
        .split('&')
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            decode(key) != name
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The value of query parameter `name` in a raw query string, percent-decoded (`+` as space).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode(&v.replace('+', " ")))
    })
}

/// The wa-hub instance id in a wa-hub path `/instances/<id>` or `/instances/<id>/...`,
/// percent-decoded. Query strings are ignored.
pub fn instance_id(upstream_path: &str) -> Option<String> {
    let path = upstream_path.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix("/instances/")?;
    let raw = rest.split('/').next().filter(|s| !s.is_empty())?;
    Some(decode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Result<Route, RouteError> {
        route(&Method::GET, path)
    }

    #[test]
    fn local_routes_are_recognised() {
        assert_eq!(get("/healthz"), Ok(Route::Healthz));
        assert_eq!(get("/readyz"), Ok(Route::Readyz));
        assert_eq!(get("/api/config"), Ok(Route::Config));
        assert_eq!(
            route(&Method::POST, "/api/wahub/webhook"),
            Ok(Route::Webhook)
        );
        assert_eq!(get("/nope"), Err(RouteError::NotFound));
        assert_eq!(get("/api/wahubx/instances"), Err(RouteError::NotFound));
    }

    #[test]
    fn empty_segments_are_refused_on_every_route() {
        for path in [
            "/api/wahub//webhook",
            "/api/wahub/instances//status",
            "/api/wahub//",
            "//api/instances",
            "/api//stream",
            "//healthz",
            "/api/instances//status",
            "/api/system//status",
            "/nope//x",
        ] {
            assert_eq!(get(path), Err(RouteError::EmptySegment), "{path}");
            assert_eq!(
                route(&Method::POST, path),
                Err(RouteError::EmptySegment),
                "{path}"
            );
        }
        assert_eq!(
            route(&Method::POST, "/api/wahub/webhook/"),
            Ok(Route::Webhook)
        );
        assert_eq!(
            get("/api/wahub/instances/"),
            Ok(Route::Proxy("/instances/".into()))
        );
        assert_eq!(
            get("/api/wahub/a%2F%2Fb"),
            Ok(Route::Proxy("/a%2F%2Fb".into()))
        );
    }

    #[test]
    fn wrong_method_names_the_allowed_ones_and_head_follows_get() {
        assert_eq!(
            route(&Method::POST, "/healthz"),
            Err(RouteError::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert_eq!(
            route(&Method::GET, "/api/wahub/webhook"),
            Err(RouteError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(route(&Method::HEAD, "/metrics"), Ok(Route::Metrics));
        assert_eq!(
            route(&Method::DELETE, "/api/wahub/instances/x"),
            Ok(Route::Proxy("/instances/x".into()))
        );
    }

    #[test]
    fn each_route_declares_its_access() {
        assert_eq!(Route::Healthz.spec().access, Access::Open);
        assert_eq!(Route::Webhook.spec().access, Access::Open);
        assert_eq!(Route::Stream.spec().access, Access::Client);
        assert_eq!(Route::Proxy("/".into()).spec().access, Access::ClientHeader);
    }

    #[test]
    fn proxy_prefix_is_stripped_keeping_percent_encoding() {
        assert_eq!(
            get("/api/wahub/instances/a%2Fb/client/status"),
            Ok(Route::Proxy("/instances/a%2Fb/client/status".into()))
        );
        assert_eq!(get("/api/wahub"), Ok(Route::Proxy("/".into())));
        assert_eq!(get("/api/wahub/"), Ok(Route::Proxy("/".into())));
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
            "/api/wahub/x/..\\admin",
        ] {
            assert_eq!(get(p), Err(RouteError::Traversal), "{p}");
        }
        assert!(get("/api/wahub/instances/a..b/x").is_ok());
        assert!(get("/api/wahub/instances/%252e%252e").is_ok());
    }

    #[test]
    fn read_routes_are_recognised_with_decoded_ids() {
        assert_eq!(get("/api/instances"), Ok(Route::Instances));
        assert_eq!(get("/api/events"), Ok(Route::Events));
        assert_eq!(
            get("/api/instances/WASP-a%2Fb/status"),
            Ok(Route::InstanceStatus("WASP-a/b".into()))
        );
        assert_eq!(get("/api/instances//status"), Err(RouteError::EmptySegment));
        assert_eq!(get("/api/instances/a/b/status"), Err(RouteError::NotFound));
    }

    #[test]
    fn dead_letter_routes_name_the_sink_decoded() {
        assert_eq!(
            get("/api/sinks/crm/dead-letters"),
            Ok(Route::DeadLetters("crm".into()))
        );
        assert_eq!(
            route(&Method::POST, "/api/sinks/crm%20hook/dead-letters/replay"),
            Ok(Route::DeadLetterReplay("crm hook".into()))
        );
        for p in [
            "/api/sinks/",
            "/api/sinks/crm",
            "/api/sinks/crm/dead-letters/",
            "/api/sinks/crm/dead-letters/replay/x",
            "/api/sinks/crm/other",
        ] {
            assert_eq!(get(p), Err(RouteError::NotFound), "{p}");
        }
        assert_eq!(
            get("/api/sinks//dead-letters"),
            Err(RouteError::EmptySegment)
        );
    }

    #[test]
    fn dashboard_paths_are_recognised() {
        assert_eq!(
            dashboard_route("/api/system/status"),
            Some(DashRoute::SystemStatus)
        );
        assert_eq!(dashboard_route("/api/ping"), Some(DashRoute::Ping));
        assert_eq!(
            dashboard_route("/api/instances/WASP-a%20b/poll/start"),
            Some(DashRoute::Poll {
                instance_id: "WASP-a b".into(),
                start: true
            })
        );
        assert_eq!(
            dashboard_route("/api/instances/x/poll/stop"),
            Some(DashRoute::Poll {
                instance_id: "x".into(),
                start: false
            })
        );
        assert_eq!(dashboard_route("/api/instances//poll/stop"), None);
        assert_eq!(dashboard_route("/api/instances/a/b/poll/stop"), None);
        assert_eq!(dashboard_route("/api/instances/x/status"), None);
        assert_eq!(dashboard_route("/api/system"), None);
    }

    #[test]
    fn console_qr_and_sinks_routes_are_recognised() {
        assert_eq!(get("/"), Ok(Route::ConsoleRedirect));
        assert_eq!(get("/console"), Ok(Route::ConsoleRedirect));
        assert_eq!(get("/console/"), Ok(Route::Console(String::new())));
        assert_eq!(
            get("/console/v/abc/app.js"),
            Ok(Route::Console("v/abc/app.js".into()))
        );
        assert_eq!(get("/api/sinks"), Ok(Route::Sinks));
        assert_eq!(
            get("/api/instances/WASP-a%2Fb/qr.svg"),
            Ok(Route::InstanceQr("WASP-a/b".into()))
        );
        assert_eq!(get("/api/instances//qr.svg"), Err(RouteError::EmptySegment));
        assert_eq!(get("/api/instances/a/b/qr.svg"), Err(RouteError::NotFound));
    }

    #[test]
    fn access_token_is_dropped_from_proxied_queries() {
        assert_eq!(
            without_param(Some("a=1&access_token=t&b=%20"), "access_token").as_deref(),
            Some("a=1&b=%20")
        );
        assert_eq!(
            without_param(Some("access%5Ftoken=t"), "access_token"),
            None
        );
        assert_eq!(without_param(Some("access_token"), "access_token"), None);
        assert_eq!(without_param(None, "access_token"), None);
    }

    #[test]
    fn trace_is_never_proxied() {
        for m in ["TRACE", "TRACK", "CONNECT"] {
            let method = Method::from_bytes(m.as_bytes()).unwrap();
            assert!(matches!(
                route(&method, "/api/wahub/instances"),
                Err(RouteError::MethodNotAllowed { .. })
            ));
        }
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
