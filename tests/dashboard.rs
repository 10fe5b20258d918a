//! The wa-hub dashboard's extra routes and its cookie auth (issue 13), over real sockets: the
//! real binary in front of the fake wa-hub of `tests/common`, which records what it received.

mod common;

use std::time::Duration;

use common::*;
use hmac::{Hmac, Mac};
use reqwest::blocking::Response;
use serde_json::{json, Value};
use sha2::Sha256;

const PASSWORD: &str = "correct horse battery";
const SESSION_SECRET: &str = "a-session-secret-of-32-bytes-len";
const ADMIN_SECRET: &str = "admin-debug-secret-value";

/// A sidecar with no authentication configured (as before issue 13).
fn open_sidecar(up: &FakeUpstream, env: &[(&str, &str)]) -> Sidecar {
    Sidecar::start_with(
        &up.base_url(),
        "",
        "status:\n  qr_poll_interval_ms: 0\n",
        env,
    )
}

/// A sidecar with a dashboard password (cookies without `Secure`: the tests speak plain HTTP).
fn password_sidecar(up: &FakeUpstream, extra_yaml: &str) -> Sidecar {
    Sidecar::start_with(
        &up.base_url(),
        "",
        &format!("status:\n  qr_poll_interval_ms: 0\n{extra_yaml}"),
        &[
            ("DASHBOARD_PASSWORD", PASSWORD),
            ("DASHBOARD_SESSION_SECRET", SESSION_SECRET),
            ("DASHBOARD_SECURE_COOKIES", "false"),
        ],
    )
}

fn json_of(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, v)
}

fn post(sc: &Sidecar, path: &str, body: Value) -> (u16, Value) {
    json_of(
        client()
            .post(sc.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .expect("post"),
    )
}

/// The requests the upstream received for `path` (path without query), oldest first.
fn received_at(up: &FakeUpstream, path: &str) -> Vec<Received> {
    up.received()
        .into_iter()
        .filter(|r| r.path_and_query.split('?').next() == Some(path))
        .collect()
}

fn body_json(r: &Received) -> Value {
    serde_json::from_slice(&r.body).expect("upstream got JSON")
}

#[test]
fn system_status_and_force_normal_pass_wa_hubs_answer_without_admin_header_by_default() {
    let up = FakeUpstream::start();
    let sc = open_sidecar(&up, &[]);
    let r = client().get(sc.url("/api/system/status")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let fixture = api_fixtures()
        .into_iter()
        .find(|f| f.path == "/system/status")
        .unwrap();
    assert_eq!(r.text().unwrap(), fixture.body, "wa-hub's bytes unchanged");
    let got = received_at(&up, "/system/status");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "GET");
    assert_eq!(
        got[0].header_values("authorization"),
        vec![format!("Bearer {API_KEY}")]
    );
    assert!(got[0].header_values("x-admin-debug-secret").is_empty());

    let (status, v) = post(&sc, "/api/system/force-normal", json!({"ignored": true}));
    assert_eq!((status, v), (200, json!({"ok": true, "mode": "normal"})));
    let got = received_at(&up, "/system/force-normal");
    assert_eq!(got[0].method, "POST");
    assert_eq!(body_json(&got[0]), json!({}));
    assert!(got[0].header_values("x-admin-debug-secret").is_empty());

    // Wrong methods.
    let r = client().post(sc.url("/api/system/status")).send().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = client()
        .get(sc.url("/api/system/force-normal"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[test]
fn admin_debug_secret_goes_to_the_system_routes_only_and_is_never_logged() {
    let up = FakeUpstream::start();
    let sc = open_sidecar(&up, &[("ADMIN_DEBUG_SECRET", ADMIN_SECRET)]);
    let r = client().get(sc.url("/api/system/status")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(post(&sc, "/api/system/force-normal", json!({})).0, 200);
    assert_eq!(
        post(
            &sc,
            "/api/view-session/create",
            json!({"instanceId": "WASP-a"})
        )
        .0,
        200
    );
    let r = client().get(sc.url("/api/wahub/instances")).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    for path in ["/system/status", "/system/force-normal"] {
        assert_eq!(
            received_at(&up, path)[0].header_values("x-admin-debug-secret"),
            vec![ADMIN_SECRET.to_owned()],
            "{path}"
        );
    }
    for path in ["/instances/WASP-a/view-session", "/instances"] {
        assert!(
            received_at(&up, path)[0]
                .header_values("x-admin-debug-secret")
                .is_empty(),
            "{path} got the admin header"
        );
    }
    let out = std::process::Command::new(sidecar_bin())
        .args(["check-config", "--config"])
        .arg(sc.dir.path().join("config.yaml"))
        .env("ADMIN_DEBUG_SECRET", ADMIN_SECRET)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("admin_debug_secret"), "{printed}");
    assert!(!printed.contains(ADMIN_SECRET), "{printed}");
    assert!(!sc.log().contains(ADMIN_SECRET));
}

#[test]
fn system_status_failure_is_502_in_the_dashboards_shape() {
    let sc = Sidecar::start(&dead_upstream_url(), "");
    let r = client().get(sc.url("/api/system/status")).send().unwrap();
    let (status, v) = json_of(r);
    assert_eq!(status, 502);
    assert_eq!(v["error"], "System status unavailable");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    let (status, v) = post(&sc, "/api/system/force-normal", json!({}));
    assert_eq!(status, 502);
    assert!(v["error"].is_string());
    let (status, v) = post(&sc, "/api/view-session/create", json!({"instanceId": "x"}));
    assert_eq!(status, 502);
    assert!(v["error"].is_string());
    let r = client()
        .get(sc.url("/api/view-session/screenshot?token=t"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 502);
    assert!(!r.text().unwrap().is_empty());
}

#[test]
fn tokens_and_the_cookie_work_side_by_side() {
    let up = FakeUpstream::start();
    let sc = password_sidecar(&up, "auth:\n  client_tokens: [tok-1]\n");
    let bearer = client()
        .post(sc.url("/api/system/force-normal"))
        .bearer_auth("tok-1")
        .send()
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 200, "a token needs no Origin");
    let cookie = cookie_pair(
        login(&sc, PASSWORD).headers()["set-cookie"]
            .to_str()
            .unwrap(),
    );
    assert_eq!(get_with_cookie(&sc, "/api/system/status", &cookie), 200);
    let wrong = client()
        .get(sc.url("/api/system/status"))
        .bearer_auth("tok-2")
        .send()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
}

#[test]
fn view_session_create_sends_the_dashboard_base_url_and_wraps_the_answer() {
    let up = FakeUpstream::start();
    let sc = open_sidecar(
        &up,
        &[(
            "DASHBOARD_WEBHOOK_PUBLIC_URL",
            "https://dash.example.com/api/wahub/webhook",
        )],
    );
    // Default: the public URL without /api/wahub/webhook; the id is percent-encoded.
    let (status, v) = post(
        &sc,
        "/api/view-session/create",
        json!({"instanceId": "WASP-a b"}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["token"], "view-WASP-a%20b");
    assert_eq!(
        v["data"]["viewUrl"],
        "https://dash.example.com/view/view-WASP-a%20b"
    );
    let got = received_at(&up, "/instances/WASP-a%20b/view-session");
    assert_eq!(got.len(), 1);
    assert_eq!(
        body_json(&got[0]),
        json!({"dashboardBaseUrl": "https://dash.example.com"})
    );
    assert_eq!(
        got[0].header_values("authorization"),
        vec![format!("Bearer {API_KEY}")]
    );
    // An explicit base URL wins.
    let (status, _) = post(
        &sc,
        "/api/view-session/create",
        json!({"instanceId": "x", "dashboardBaseUrl": "http://mine:1"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body_json(&received_at(&up, "/instances/x/view-session")[0]),
        json!({"dashboardBaseUrl": "http://mine:1"})
    );
    // wa-hub's failure: its status and {"error": ...}.
    let (status, v) = post(
        &sc,
        "/api/view-session/create",
        json!({"instanceId": "nope"}),
    );
    assert_eq!(
        (status, v),
        (404, json!({"error": "Instance nope not found"}))
    );
    // No id: 400, and nothing sent.
    let before = up.received().len();
    for body in [json!({}), json!({"instanceId": ""}), json!("x")] {
        let (status, v) = post(&sc, "/api/view-session/create", body);
        assert_eq!(
            (status, v),
            (400, json!({"error": "instanceId is required"}))
        );
    }
    assert_eq!(up.received().len(), before);
}

#[test]
fn view_session_create_defaults_to_the_requests_origin() {
    let up = FakeUpstream::start();
    let sc = open_sidecar(&up, &[]);
    let r = client()
        .post(sc.url("/api/view-session/create"))
        .header("origin", "http://dashboard.local:3000")
        .body(r#"{"instanceId":"WASP-o"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        body_json(&received_at(&up, "/instances/WASP-o/view-session")[0]),
        json!({"dashboardBaseUrl": "http://dashboard.local:3000"})
    );
}

#[test]
fn revoke_takes_the_token_from_body_or_query() {
    let up = FakeUpstream::start();
    let sc = open_sidecar(&up, &[]);
    let (status, v) = post(&sc, "/api/view-session/revoke", json!({"token": "t1"}));
    assert_eq!((status, v), (200, json!({"success": true})));
    let r = client()
        .post(sc.url("/api/view-session/revoke?token=t%202"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let got = received_at(&up, "/view-session/revoke");
    assert_eq!(body_json(&got[0]), json!({"token": "t1"}));
    assert_eq!(body_json(&got[1]), json!({"token": "t 2"}));
    let (status, v) = post(&sc, "/api/view-session/revoke", json!({}));
    assert_eq!((status, v), (400, json!({"error": "token is required"})));
    assert_eq!(received_at(&up, "/view-session/revoke").len(), 2);
}

#[test]
fn screenshot_bytes_come_back_unchanged_as_png() {
    let up = FakeUpstream::start();
    let sc = open_sidecar(&up, &[]);
    let r = client()
        .get(sc.url("/api/view-session/screenshot?token=abc%2B1"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let bytes = r.bytes().unwrap();
    let png = fixture_png();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(bytes.as_ref(), png.as_slice());
    let got = received_at(&up, "/view-session/screenshot");
    assert_eq!(
        got[0].path_and_query,
        "/view-session/screenshot?token=abc%2B1"
    );
    assert_eq!(
        got[0].header_values("authorization"),
        vec![format!("Bearer {API_KEY}")]
    );

    // Expired: 404 text.
    let r = client()
        .get(sc.url(&format!(
            "/api/view-session/screenshot?token={EXPIRED_VIEW_TOKEN}"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(!r.text().unwrap().is_empty());
    // No token: 400, nothing sent.
    for path in [
        "/api/view-session/screenshot",
        "/api/view-session/screenshot?token=",
    ] {
        let r = client().get(sc.url(path)).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
    }
    assert_eq!(received_at(&up, "/view-session/screenshot").len(), 2);
}

#[test]
fn click_and_scroll_coerce_numbers_and_need_every_field() {
    let up = FakeUpstream::start();
    let sc = open_sidecar(&up, &[]);
    let (status, v) = post(
        &sc,
        "/api/view-session/click",
        json!({"token": "t", "x": "12", "y": 30.5}),
    );
    assert_eq!((status, v), (200, json!({"success": true})));
    let (status, _) = post(
        &sc,
        "/api/view-session/scroll",
        json!({"token": "t", "x": 1, "y": "2", "deltaY": "-120"}),
    );
    assert_eq!(status, 200);
    assert_eq!(
        body_json(&received_at(&up, "/view-session/click")[0]),
        json!({"token": "t", "x": 12, "y": 30.5})
    );
    assert_eq!(
        body_json(&received_at(&up, "/view-session/scroll")[0]),
        json!({"token": "t", "x": 1, "y": 2, "deltaY": -120})
    );
    for (path, body) in [
        ("/api/view-session/click", json!({"x": 1, "y": 2})),
        ("/api/view-session/click", json!({"token": "t", "y": 2})),
        (
            "/api/view-session/click",
            json!({"token": "t", "x": "a", "y": 2}),
        ),
        (
            "/api/view-session/scroll",
            json!({"token": "t", "x": 1, "y": 2}),
        ),
        (
            "/api/view-session/scroll",
            json!({"token": "t", "x": 1, "deltaY": 2}),
        ),
    ] {
        let (status, v) = post(&sc, path, body.clone());
        assert_eq!(status, 400, "{path} {body}");
        assert!(v["error"].as_str().unwrap().contains("required"), "{v}");
    }
    assert_eq!(received_at(&up, "/view-session/click").len(), 1);
    assert_eq!(received_at(&up, "/view-session/scroll").len(), 1);
}

#[test]
fn ping_and_poll_routes_answer_locally() {
    let up = FakeUpstream::start();
    let sc = open_sidecar(&up, &[]);
    assert_eq!(get_json(&sc, "/api/ping"), (200, json!({"ok": true})));
    let (status, v) = post(
        &sc,
        "/api/instances/WASP-x/poll/start",
        json!({"type": "qr"}),
    );
    assert_eq!(status, 200);
    assert_eq!(v["ok"], true);
    assert_eq!(v["type"], "qr");
    assert!(v["message"].is_string());
    let r = client()
        .post(sc.url("/api/instances/WASP-x/poll/stop"))
        .send()
        .unwrap();
    let (status, v) = json_of(r);
    assert_eq!((status, &v["type"]), (200, &json!("status")));
    assert!(up.received().is_empty(), "nothing went to wa-hub");
    // Without a password, check says not authenticated, as the dashboard does.
    assert_eq!(
        get_json(&sc, "/api/auth/check"),
        (200, json!({"ok": true, "authenticated": false}))
    );
}

#[test]
fn client_tokens_protect_the_pass_through_routes_but_not_ping_or_auth() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "auth:\n  client_tokens: [tok-1]\n");
    let r = client().get(sc.url("/api/system/status")).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client()
        .get(sc.url("/api/system/status"))
        .bearer_auth("tok-1")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client()
        .get(sc.url("/api/view-session/screenshot?token=a&access_token=tok-1"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = client()
        .post(sc.url("/api/instances/x/poll/start"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(get_json(&sc, "/api/ping").0, 200);
    assert_eq!(get_json(&sc, "/api/auth/check").0, 200);
    assert!(received_at(&up, "/system/status").len() == 1);
}

/// The `name=value` part of a `Set-Cookie` header.
fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

fn login(sc: &Sidecar, password: &str) -> Response {
    client()
        .post(sc.url("/api/auth/login"))
        .header("origin", format!("http://{}", sc.addr))
        .body(json!({ "password": password }).to_string())
        .send()
        .unwrap()
}

fn get_with_cookie(sc: &Sidecar, path: &str, cookie: &str) -> u16 {
    client()
        .get(sc.url(path))
        .header("cookie", cookie)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// A cookie value signed as the sidecar signs them (session module docs), for a chosen expiry.
fn forge(expires: u64, secret: &str) -> String {
    let mut key = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    key.update(PASSWORD.as_bytes());
    let key = key.finalize().into_bytes();
    let payload = format!("v1.{expires}.0123456789abcdef0123456789abcdef");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(payload.as_bytes());
    format!(
        "wa_hub_session={payload}.{}",
        hex::encode(mac.finalize().into_bytes())
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn cookie_flow_login_check_use_logout_then_refused() {
    let up = FakeUpstream::start();
    let sc = password_sidecar(&up, "");
    let origin = format!("http://{}", sc.addr);

    // A password set and no client tokens: the routes are now protected.
    assert_eq!(
        client()
            .get(sc.url("/api/system/status"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        get_json(&sc, "/api/auth/check"),
        (200, json!({"ok": true, "authenticated": false}))
    );
    let (status, v) = json_of(login(&sc, "wrong"));
    assert_eq!((status, v), (401, json!({"error": "Invalid password"})));

    let r = login(&sc, PASSWORD);
    assert_eq!(r.status().as_u16(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(
        !set.contains("Secure"),
        "DASHBOARD_SECURE_COOKIES=false: {set}"
    );
    let cookie = cookie_pair(&set);
    assert!(cookie.starts_with("wa_hub_session="), "{cookie}");

    let r = client()
        .get(sc.url("/api/auth/check"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(
        json_of(r),
        (200, json!({"ok": true, "authenticated": true}))
    );
    // Protected routes with the cookie: local, pass-through, proxied, SSE.
    assert_eq!(get_with_cookie(&sc, "/api/system/status", &cookie), 200);
    assert_eq!(get_with_cookie(&sc, "/api/instances", &cookie), 200);
    let both = format!("theme=dark; {cookie}");
    assert_eq!(get_with_cookie(&sc, "/api/wahub/instances", &both), 200);
    let proxied = received_at(&up, "/instances");
    assert_eq!(
        proxied[0].header_values("cookie"),
        vec!["theme=dark".to_owned()],
        "the session cookie never reaches wa-hub"
    );
    let sse = SseClient::connect(&sc.url("/api/stream?scope=global"), &[("Cookie", &cookie)]);
    assert_eq!(sse.status, 200);
    drop(sse);
    let sse = SseClient::connect(&sc.url("/api/stream?scope=global"), &[]);
    assert_eq!(sse.status, 401);
    drop(sse);

    // A state-changing request with the cookie needs this site's Origin.
    let post_with = |origin: Option<&str>| {
        let mut req = client()
            .post(sc.url("/api/system/force-normal"))
            .header("cookie", &cookie);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send().unwrap().status().as_u16()
    };
    assert_eq!(post_with(Some(&origin)), 200);
    assert_eq!(post_with(Some("http://evil.example")), 403);
    assert_eq!(
        post_with(Some(&dead_upstream_url())),
        403,
        "same host, other port"
    );
    assert_eq!(post_with(None), 403);
    assert_eq!(received_at(&up, "/system/force-normal").len(), 1);
    let r = client()
        .post(sc.url("/api/wahub/instances"))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "proxied routes too");

    // Logout clears the cookie; the same cookie is refused afterwards.
    let r = client()
        .post(sc.url("/api/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", &origin)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cleared = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.starts_with("wa_hub_session=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(get_with_cookie(&sc, "/api/system/status", &cookie), 401);
    let r = client()
        .get(sc.url("/api/auth/check"))
        .header("cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(json_of(r).1["authenticated"], false);
}

#[test]
fn tampered_expired_and_foreign_cookies_are_refused() {
    let up = FakeUpstream::start();
    let sc = password_sidecar(&up, "");
    let cookie = cookie_pair(
        login(&sc, PASSWORD).headers()["set-cookie"]
            .to_str()
            .unwrap(),
    );
    assert_eq!(get_with_cookie(&sc, "/api/system/status", &cookie), 200);

    // One changed character of the MAC, or of the signed payload.
    let mut tampered = cookie.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(get_with_cookie(&sc, "/api/system/status", &tampered), 401);
    let later = cookie.replacen("v1.1", "v1.2", 1);
    assert_ne!(later, cookie);
    assert_eq!(get_with_cookie(&sc, "/api/system/status", &later), 401);

    // Correctly signed: valid in the future, refused once expired or under another secret.
    let now = unix_now();
    assert_eq!(
        get_with_cookie(&sc, "/api/system/status", &forge(now + 600, SESSION_SECRET)),
        200,
        "the forged format matches the sidecar's"
    );
    assert_eq!(
        get_with_cookie(&sc, "/api/system/status", &forge(now - 1, SESSION_SECRET)),
        401
    );
    assert_eq!(
        get_with_cookie(
            &sc,
            "/api/system/status",
            &forge(now + 600, "another-secret-of-enough-bytes")
        ),
        401
    );
    assert_eq!(
        get_with_cookie(&sc, "/api/system/status", "wa_hub_session=garbage"),
        401
    );
}

#[test]
fn a_session_expires_after_its_ttl_and_secure_is_the_default() {
    let up = FakeUpstream::start();
    let sc = password_sidecar(&up, "auth:\n  dashboard:\n    session_ttl_secs: 1\n");
    let cookie = cookie_pair(
        login(&sc, PASSWORD).headers()["set-cookie"]
            .to_str()
            .unwrap(),
    );
    assert_eq!(get_with_cookie(&sc, "/api/system/status", &cookie), 200);
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(get_with_cookie(&sc, "/api/system/status", &cookie), 401);

    // Without DASHBOARD_SECURE_COOKIES the cookie is Secure; without a session secret a
    // random one is used, with a warning.
    let sc = Sidecar::start_with(&up.base_url(), "", "", &[("DASHBOARD_PASSWORD", PASSWORD)]);
    let r = login(&sc, PASSWORD);
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("; Secure"));
    assert!(sc.log().contains("random"), "{}", sc.log());
    assert!(!sc.log().contains(PASSWORD));
}

#[test]
fn login_attempts_are_throttled_per_client_address() {
    let up = FakeUpstream::start();
    let sc = password_sidecar(&up, "");
    for _ in 0..10 {
        assert_eq!(login(&sc, "guess").status().as_u16(), 401);
    }
    let r = login(&sc, PASSWORD);
    assert_eq!(r.status().as_u16(), 429, "even the right password waits");
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(json_of(r).1["error"], "Too many login attempts");
    // A login from a foreign Origin is refused before the password is looked at.
    let r = client()
        .post(sc.url("/api/auth/login"))
        .header("origin", "http://evil.example")
        .body(json!({ "password": PASSWORD }).to_string())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
}

#[test]
fn bad_dashboard_config_stops_start_up_with_the_key_named() {
    let out = std::process::Command::new(sidecar_bin())
        .args(["check-config", "--config", "/dev/null"])
        .env("DASHBOARD_PASSWORD", PASSWORD)
        .env("DASHBOARD_SESSION_SECRET", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.dashboard.session_secret"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
    let out = std::process::Command::new(sidecar_bin())
        .args(["check-config", "--config", "/dev/null"])
        .env("DASHBOARD_SECURE_COOKIES", "maybe")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DASHBOARD_SECURE_COOKIES"), "{err}");
}
