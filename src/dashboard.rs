//! The wa-hub dashboard's extra routes (issue 13): every route its browser code calls besides
//! the proxy, the stream and the status routes, so the dashboard works against the sidecar
//! unchanged. Most are thin authenticated pass-throughs to wa-hub with the API key; a few are
//! small local answers; the auth routes drive [`crate::session`].
//!
//! Handlers are plain async functions over the [`App`] and plain inputs returning a
//! [`LocalResponse`]; [`serve`] is the glue that reads the request body for them (the route
//! table in [`crate::routes`] has checked method and access). Calls to wa-hub go through the
//! sidecar's own client, [`crate::upstream::Upstream`] (address, path prefix, `Host`, bearer
//! key, `upstream.read_timeout_ms`). Failures never reveal addresses or
//! secrets; `X-Admin-Debug-Secret` goes to the system routes only and is never logged.

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Method};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use pingora::proxy::Session;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::auth;
use crate::exchange::read_limited;
use crate::handlers::Answer;
use crate::rejection::Rejection;
use crate::response::LocalResponse;
use crate::routes::{self, DashRoute};
use crate::session::{self, LoginOutcome};

/// Largest request body of a dashboard POST route.
const SMALL_BODY_MAX: usize = 64 * 1024;

/// Characters kept as they are in a path segment or query value sent to wa-hub (RFC 3986
/// unreserved); everything else is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Header carrying `upstream.admin_debug_secret` on the system routes.
pub const ADMIN_DEBUG_HEADER: &str = "x-admin-debug-secret";

/// Suffix removed from `dashboard.webhook_public_url` to get the dashboard's base URL.
const WEBHOOK_SUFFIX: &str = "/api/wahub/webhook";

/// Serves a dashboard route from `request_filter`, after the route table checked its method
/// and access: the body read (at most 64 KiB, 413 beyond) for POST routes, then the handler.
///
/// # Errors
/// [`Rejection::TooLarge`] or [`Rejection::UnreadableBody`] for a POST body.
pub async fn serve(app: &App, session: &mut Session, route: DashRoute) -> Answer {
    let headers = session.req_header().headers.clone();
    let query = session.req_header().uri.query().map(str::to_owned);
    let query = query.as_deref();
    let body = if route.method() == Method::POST {
        read_limited(session, SMALL_BODY_MAX).await?
    } else {
        Bytes::new()
    };
    let q = |name| routes::query_param(query, name);
    Ok(match route {
        DashRoute::SystemStatus => system_status(app).await,
        DashRoute::ForceNormal => force_normal(app).await,
        DashRoute::ViewSessionCreate => {
            let fallback = request_origin(&headers);
            view_session_create(app, &body, fallback.as_deref()).await
        }
        DashRoute::ViewSessionRevoke => {
            view_session_revoke(app, &body, q("token").as_deref()).await
        }
        DashRoute::Screenshot => screenshot(app, q("token").as_deref()).await,
        DashRoute::Click => pointer(app, &body, false).await,
        DashRoute::Scroll => pointer(app, &body, true).await,
        DashRoute::Ping => ping(),
        DashRoute::Poll { instance_id, start } => poll_noop(&instance_id, start, &body),
        DashRoute::AuthCheck => auth_check(app, &headers),
        DashRoute::AuthLogin => {
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            login(app, &headers, &body, client)
        }
        DashRoute::AuthLogout => logout(app, &headers),
    })
}

fn cross_origin() -> LocalResponse {
    Rejection::CrossOrigin.response()
}

/// The request's origin: its `Origin` header, else `http://<Host>`.
fn request_origin(headers: &HeaderMap) -> Option<String> {
    let text = |n: http::header::HeaderName| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && *v != "null")
            .map(str::to_owned)
    };
    text(http::header::ORIGIN).or_else(|| text(http::header::HOST).map(|h| format!("http://{h}")))
}

/// wa-hub's answer to one call: status, and the body read whole.
struct WaHubAnswer {
    status: u16,
    body: Bytes,
}

/// Calls wa-hub: `method <prefix><path_and_query>` with the API key, a JSON body when given,
/// and `X-Admin-Debug-Secret` when `admin` and configured. The body read is capped at
/// `proxy.max_body_bytes`.
///
/// # Errors
/// A message fit for a client: unreachable, timed out, or an answer too large.
async fn call(
    app: &App,
    method: Method,
    path_and_query: &str,
    body: Option<&Value>,
    admin: bool,
) -> Result<WaHubAnswer, String> {
    let cfg = &app.config;
    let url = app
        .upstream
        .url_of(path_and_query)
        .ok_or_else(|| "wa-hub URL is unusable".to_owned())?;
    let mut req = app.upstream.request(method, url);
    if let Some(b) = body {
        req = req.json(b);
    }
    if admin {
        if let Some(secret) = &cfg.raw.upstream.admin_debug_secret {
            req = req.header(ADMIN_DEBUG_HEADER, secret.expose());
        }
    }
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            format!(
                "wa-hub did not answer within {} ms",
                cfg.read_timeout().as_millis()
            )
        } else {
            "wa-hub is unreachable".to_owned()
        }
    };
    let mut resp = req.send().await.map_err(failed)?;
    let status = resp.status().as_u16();
    let limit = cfg.raw.proxy.max_body_bytes.get();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(failed)? {
        if buf.len() + chunk.len() > limit {
            return Err(format!("wa-hub's answer is larger than {limit} bytes"));
        }
        buf.extend_from_slice(&chunk);
    }
    let path = path_and_query.split('?').next().unwrap_or_default();
    tracing::debug!(path, status, "dashboard route called wa-hub");
    Ok(WaHubAnswer {
        status,
        body: buf.freeze(),
    })
}

/// wa-hub's JSON answer with its status, bytes unchanged; a failed call or an answer that is
/// not JSON becomes 502 `{"error": <what>, "message": ...}`. An empty body passes as it is.
fn pass_json(result: Result<WaHubAnswer, String>, what: &str) -> LocalResponse {
    match result {
        Ok(u) if u.body.is_empty() || serde_json::from_slice::<Value>(&u.body).is_ok() => {
            LocalResponse {
                status: u.status,
                body: u.body,
                headers: Vec::new(),
                content_type: "application/json",
            }
        }
        Ok(u) => {
            tracing::warn!(status = u.status, "{what}: wa-hub's answer is not JSON");
            LocalResponse::error(
                502,
                what,
                format!("wa-hub answered {} with a body that is not JSON", u.status),
            )
        }
        Err(message) => {
            tracing::warn!(%message, "{what}");
            LocalResponse::error(502, what, message)
        }
    }
}

/// `GET /api/system/status`: wa-hub's `GET /system/status` (with `X-Admin-Debug-Secret` when
/// configured), JSON and status as they are; 502 `{"error":"System status unavailable",
/// "message":...}` when wa-hub cannot be reached or answers something that is not JSON.
pub async fn system_status(app: &App) -> LocalResponse {
    let r = call(app, Method::GET, "/system/status", None, true).await;
    pass_json(r, "System status unavailable")
}

/// `POST /api/system/force-normal`: wa-hub's `POST /system/force-normal` with `{}` (and the
/// admin header rule of [`system_status`]); its answer as it is, 502
/// `{"error":"Force normal failed",...}` when it cannot be had.
pub async fn force_normal(app: &App) -> LocalResponse {
    let r = call(
        app,
        Method::POST,
        "/system/force-normal",
        Some(&json!({})),
        true,
    )
    .await;
    pass_json(r, "Force normal failed")
}

/// The request body as a JSON object; anything else (empty, not JSON, not an object) is an
/// empty object, as the dashboard's `await req.json().catch(() => ({}))` reads it.
fn body_object(body: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    }
}

/// A non-empty string field.
fn string_field(o: &Map<String, Value>, name: &str) -> Option<String> {
    o.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// `POST /api/view-session/create` with `{instanceId, dashboardBaseUrl?}`: wa-hub's
/// `POST /instances/<id>/view-session` with `{dashboardBaseUrl}`. The default base URL is
/// `dashboard.webhook_public_url` without `/api/wahub/webhook`, else `origin` (the request's).
/// 200 `{"data": <wa-hub JSON>}` on success; wa-hub's status with `{"error": <its error or
/// message>}` on failure; 400 `{"error":"instanceId is required"}`; 502 when unreachable.
pub async fn view_session_create(app: &App, body: &[u8], origin: Option<&str>) -> LocalResponse {
    let o = body_object(body);
    let Some(id) = string_field(&o, "instanceId") else {
        return LocalResponse::json(400, &json!({ "error": "instanceId is required" }));
    };
    let base = string_field(&o, "dashboardBaseUrl")
        .or_else(|| {
            app.config
                .raw
                .dashboard
                .webhook_public_url
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(|u| {
                    let u = u.trim_end_matches('/');
                    u.strip_suffix(WEBHOOK_SUFFIX).unwrap_or(u).to_owned()
                })
        })
        .or_else(|| origin.map(str::to_owned));
    let mut upstream_body = Map::new();
    if let Some(b) = base {
        upstream_body.insert("dashboardBaseUrl".into(), Value::String(b));
    }
    let path = format!(
        "/instances/{}/view-session",
        utf8_percent_encode(&id, COMPONENT)
    );
    let what = "View session failed";
    match call(
        app,
        Method::POST,
        &path,
        Some(&Value::Object(upstream_body)),
        false,
    )
    .await
    {
        Err(message) => {
            tracing::warn!(%message, "{what}");
            LocalResponse::error(502, what, message)
        }
        Ok(u) => {
            let parsed = serde_json::from_slice::<Value>(&u.body).ok();
            if (200..300).contains(&u.status) {
                match parsed {
                    Some(data) => LocalResponse::json(200, &json!({ "data": data })),
                    None => LocalResponse::error(
                        502,
                        what,
                        format!("wa-hub answered {} with a body that is not JSON", u.status),
                    ),
                }
            } else {
                let error = parsed
                    .as_ref()
                    .and_then(|v| v.get("error").or_else(|| v.get("message")))
                    .and_then(Value::as_str)
                    .unwrap_or(what)
                    .to_owned();
                LocalResponse::json(u.status, &json!({ "error": error }))
            }
        }
    }
}

/// `POST /api/view-session/revoke` with `token` in the JSON body or the query: wa-hub's
/// `POST /view-session/revoke` with `{token}`, its answer as it is. 400
/// `{"error":"token is required"}`; 502 when unreachable.
pub async fn view_session_revoke(
    app: &App,
    body: &[u8],
    query_token: Option<&str>,
) -> LocalResponse {
    let token = string_field(&body_object(body), "token")
        .or_else(|| query_token.filter(|t| !t.is_empty()).map(str::to_owned));
    let Some(token) = token else {
        return LocalResponse::json(400, &json!({ "error": "token is required" }));
    };
    let r = call(
        app,
        Method::POST,
        "/view-session/revoke",
        Some(&json!({ "token": token })),
        false,
    )
    .await;
    pass_json(r, "Revoke failed")
}

fn text(status: u16, body: &'static str) -> LocalResponse {
    LocalResponse {
        status,
        body: Bytes::from_static(body.as_bytes()),
        headers: Vec::new(),
        content_type: "text/plain; charset=utf-8",
    }
}

/// `GET /api/view-session/screenshot?token=`: wa-hub's `GET /view-session/screenshot?token=`;
/// on success its bytes unchanged as `image/png` (`Cache-Control: no-store`). 400 text
/// without a token; 404 text when wa-hub does not know the token (the view session expired);
/// wa-hub's other statuses as text; 502 text when unreachable.
pub async fn screenshot(app: &App, token: Option<&str>) -> LocalResponse {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return text(400, "token is required");
    };
    let path = format!(
        "/view-session/screenshot?token={}",
        utf8_percent_encode(token, COMPONENT)
    );
    match call(app, Method::GET, &path, None, false).await {
        Ok(u) if (200..300).contains(&u.status) => LocalResponse {
            status: 200,
            body: u.body,
            headers: Vec::new(),
            content_type: "image/png",
        },
        Ok(u) if u.status == 404 => text(404, "View session expired or not found"),
        Ok(u) => {
            tracing::warn!(status = u.status, "screenshot failed");
            text(u.status, "Screenshot failed")
        }
        Err(message) => {
            tracing::warn!(%message, "screenshot failed");
            text(502, "Screenshot failed: wa-hub is unreachable")
        }
    }
}

/// A number as JavaScript's `Number(v)` reads a JSON number or numeric string; `None` for
/// anything else (missing, null, empty, not numeric, not finite).
fn coerce_number(v: Option<&Value>) -> Option<Value> {
    let n = match v? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) if !s.trim().is_empty() => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !n.is_finite() {
        return None;
    }
    // Whole numbers go out as integers (`10`, not `10.0`).
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Some(Value::from(n as i64))
    } else {
        serde_json::Number::from_f64(n).map(Value::Number)
    }
}

/// `POST /api/view-session/click` `{token,x,y}` and `POST /api/view-session/scroll`
/// `{token,x,y,deltaY}` (`scroll`): wa-hub's `POST /view-session/click|scroll` with the
/// numbers coerced; its answer as it is. 400 `{"error": "..."}` naming the fields when one is
/// missing or not a number; 502 when unreachable.
pub async fn pointer(app: &App, body: &[u8], scroll: bool) -> LocalResponse {
    let o = body_object(body);
    let token = string_field(&o, "token");
    let x = coerce_number(o.get("x"));
    let y = coerce_number(o.get("y"));
    let delta = coerce_number(o.get("deltaY"));
    let (path, payload) = match (token, x, y, scroll, delta) {
        (Some(token), Some(x), Some(y), false, _) => (
            "/view-session/click",
            json!({ "token": token, "x": x, "y": y }),
        ),
        (Some(token), Some(x), Some(y), true, Some(d)) => (
            "/view-session/scroll",
            json!({ "token": token, "x": x, "y": y, "deltaY": d }),
        ),
        _ => {
            let error = if scroll {
                "token, x, y and deltaY are required"
            } else {
                "token, x and y are required"
            };
            return LocalResponse::json(400, &json!({ "error": error }));
        }
    };
    let what = if scroll {
        "Scroll failed"
    } else {
        "Click failed"
    };
    pass_json(
        call(app, Method::POST, path, Some(&payload), false).await,
        what,
    )
}

/// `GET /api/ping`: `{"ok":true}`, always open.
pub fn ping() -> LocalResponse {
    LocalResponse::json(200, &json!({ "ok": true }))
}

/// `POST /api/instances/<id>/poll/start|stop`: `{"ok":true,"type":<body.type or "status">,
/// "message":...}`. Nothing is started or stopped: status is webhook-driven (the dashboard's
/// own handlers are no-ops too).
pub fn poll_noop(instance_id: &str, start: bool, body: &[u8]) -> LocalResponse {
    let kind = string_field(&body_object(body), "type").unwrap_or_else(|| "status".to_owned());
    let verb = if start { "start" } else { "stop" };
    LocalResponse::json(
        200,
        &json!({
            "ok": true,
            "type": kind,
            "message": format!(
                "nothing to {verb} for {instance_id}: status is webhook-driven, no polling needed"
            ),
        }),
    )
}

/// `GET /api/auth/check`: `{"ok":true,"authenticated":<bool>}`, `true` when the request
/// carries a valid session cookie; always `false` without a dashboard password.
pub fn auth_check(app: &App, headers: &HeaderMap) -> LocalResponse {
    let cookies = headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes());
    let authenticated = app.sessions.verify(cookies, session::now_secs());
    LocalResponse::json(200, &json!({ "ok": true, "authenticated": authenticated }))
}

/// `POST /api/auth/login` `{password}` from `client`: 200 `{"ok":true}` with the session
/// cookie; 401 `{"error":"Invalid password"}`; 429 `{"error":"Too many login attempts"}` with
/// `Retry-After` after [`session::LOGIN_FAILURES_MAX`] failures; 400 when no password is
/// configured; 403 when an `Origin` is sent and is not this site's (login CSRF).
pub fn login(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
    client: Option<std::net::IpAddr>,
) -> LocalResponse {
    if headers.contains_key(http::header::ORIGIN)
        && !auth::origin_trusted(headers, &app.config.raw.cors.allowed_origins)
    {
        return cross_origin();
    }
    let password = body_object(body)
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match app
        .sessions
        .login(&password, client, session::now_secs(), Instant::now())
    {
        LoginOutcome::Success(cookie) => {
            tracing::info!(client = ?client, "dashboard login");
            LocalResponse::json(200, &json!({ "ok": true })).with_header("set-cookie", cookie)
        }
        LoginOutcome::Invalid => {
            tracing::warn!(client = ?client, "dashboard login refused: invalid password");
            LocalResponse::json(401, &json!({ "error": "Invalid password" }))
        }
        LoginOutcome::Throttled(wait) => {
            tracing::warn!(client = ?client, "dashboard login throttled");
            LocalResponse::error(
                429,
                "Too many login attempts",
                format!("retry in {} s", wait.as_secs().max(1)),
            )
            .with_header("retry-after", wait.as_secs().max(1).to_string())
        }
        LoginOutcome::Disabled => LocalResponse::error(
            400,
            "Login is not enabled",
            "no dashboard password is configured (DASHBOARD_PASSWORD)",
        ),
    }
}

/// `POST /api/auth/logout`: ends the session the request carries (a kept copy of the cookie
/// stops working too) and clears the cookie; 200 `{"ok":true}`. 403 when an `Origin` is sent
/// and is not this site's.
pub fn logout(app: &App, headers: &HeaderMap) -> LocalResponse {
    if headers.contains_key(http::header::ORIGIN)
        && !auth::origin_trusted(headers, &app.config.raw.cors.allowed_origins)
    {
        return cross_origin();
    }
    let cookies = headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes());
    let clear = app.sessions.logout(cookies, session::now_secs());
    LocalResponse::json(200, &json!({ "ok": true })).with_header("set-cookie", clear)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_coerced_like_javascript_number() {
        assert_eq!(coerce_number(Some(&json!(10))), Some(json!(10)));
        assert_eq!(coerce_number(Some(&json!("12"))), Some(json!(12)));
        assert_eq!(coerce_number(Some(&json!(" 1.5 "))), Some(json!(1.5)));
        assert_eq!(coerce_number(Some(&json!(-120.0))), Some(json!(-120)));
        assert_eq!(coerce_number(Some(&json!("abc"))), None);
        assert_eq!(coerce_number(Some(&json!(""))), None);
        assert_eq!(coerce_number(Some(&Value::Null)), None);
        assert_eq!(coerce_number(None), None);
    }

    #[test]
    fn poll_routes_answer_ok_with_the_type_asked() {
        let r = poll_noop("x", true, br#"{"type":"qr"}"#);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["ok"], true);
        assert_eq!(v["type"], "qr");
        let r = poll_noop("x", false, b"");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["type"], "status");
    }
}
