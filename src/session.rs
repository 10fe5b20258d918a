//! Dashboard cookie sessions (issue 13): the password login of the wa-hub dashboard's browser
//! code, which authenticates with a cookie and never with a header.
//!
//! - **Login** compares the password in constant time (both sides are hashed to the same
//!   length first, so not even the length leaks) and, on success, issues a cookie
//!   `wa_hub_session=v1.<expiry unix secs>.<nonce>.<hex HMAC-SHA256>`, `HttpOnly`,
//!   `SameSite=Strict`, `Path=/`, `Max-Age=<ttl>` and `Secure` unless turned off.
//! - The **key** is HMAC-SHA256(session secret, password): changing the password ends every
//!   session. Without `auth.dashboard.session_secret` a random secret is drawn at start-up
//!   (sessions then end with the process; [`Sessions::new`] logs a warning).
//! - **Verification** recomputes the MAC and compares in constant time, then checks the expiry
//!   (not past, not further than the TTL ahead) and that the nonce was not logged out.
//! - **Logout** clears the cookie and remembers the nonce until the cookie would have expired,
//!   so a copy of the cookie stops working too (at most [`REVOKED_MAX`] remembered; this node
//!   only).
//! - **Throttling**: at most [`LOGIN_FAILURES_MAX`] failed logins per client address per
//!   [`LOGIN_WINDOW`]; then 429 until the window ends. At most [`THROTTLE_MAX_ADDRESSES`]
//!   addresses are tracked; beyond, new addresses share one overflow bucket, so memory stays
//!   bounded.
//!
//! Everything takes the current time as a parameter, so the rules are testable without a clock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::DashboardAuthConfig;

/// Name of the session cookie.
pub const COOKIE_NAME: &str = "wa_hub_session";

/// Failed logins allowed per client address within [`LOGIN_WINDOW`].
pub const LOGIN_FAILURES_MAX: u32 = 10;

/// Length of the login-throttling window.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// Client addresses tracked for throttling; beyond, new ones share an overflow bucket.
pub const THROTTLE_MAX_ADDRESSES: usize = 10_000;

/// Logged-out sessions remembered until their expiry; beyond, the soonest-expiring is
/// forgotten first.
pub const REVOKED_MAX: usize = 10_000;

type HmacSha256 = Hmac<Sha256>;

/// What the login route decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The password matched: the `Set-Cookie` value to send.
    Success(String),
    /// Wrong password (counted against the address).
    Invalid,
    /// Too many failures from this address: retry after this long.
    Throttled(Duration),
    /// No password is configured: login is off.
    Disabled,
}

/// Failed attempts of one address in the current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The session issuer and verifier, shared by every request (one per process).
pub struct Sessions {
    /// `None` when no password is configured.
    inner: Option<Keys>,
    ttl_secs: u64,
    secure: bool,
    revoked: Mutex<HashMap<String, u64>>,
    throttle: Mutex<HashMap<Option<IpAddr>, Window>>,
}

struct Keys {
    /// SHA-256 of the password, for the constant-time comparison.
    password_hash: [u8; 32],
    /// The cookie MAC key: HMAC-SHA256(session secret, password).
    mac_key: [u8; 32],
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("enabled", &self.enabled())
            .field("ttl_secs", &self.ttl_secs)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

/// Seconds since the Unix epoch now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// 32 random bytes from two v4 UUIDs (the `uuid` crate draws them from a CSPRNG).
fn random_secret() -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    out
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Sessions {
    /// Builds the sessions from `auth.dashboard`. Without a password, login is off and no
    /// cookie is ever valid. A password without a session secret gets a random per-process
    /// secret, with a warning logged.
    pub fn new(cfg: &DashboardAuthConfig) -> Self {
        let inner = cfg.password.as_ref().filter(|p| !p.is_empty()).map(|pw| {
            let secret = match &cfg.session_secret {
                Some(s) if !s.is_empty() => s.expose().as_bytes().to_vec(),
                _ => {
                    tracing::warn!(
                        "auth.dashboard.password is set without a session secret \
                         (DASHBOARD_SESSION_SECRET): using a random one, so dashboard \
                         sessions end when the sidecar restarts"
                    );
                    random_secret()
                }
            };
            Keys {
                password_hash: Sha256::digest(pw.expose().as_bytes()).into(),
                mac_key: hmac(&secret, &[pw.expose().as_bytes()]),
            }
        });
        Self {
            inner,
            ttl_secs: cfg.session_ttl_secs.get(),
            secure: cfg.secure_cookies,
            revoked: Mutex::default(),
            throttle: Mutex::default(),
        }
    }

    /// Whether a dashboard password is configured.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// A login attempt from `client` (its IP address, when known) at `now` (wall clock,
    /// Unix seconds) and `mono` (monotonic, for throttling).
    pub fn login(
        &self,
        password: &str,
        client: Option<IpAddr>,
        now: u64,
        mono: Instant,
    ) -> LoginOutcome {
        let Some(keys) = &self.inner else {
            return LoginOutcome::Disabled;
        };
        let mut throttle = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        let key = if throttle.contains_key(&client) || throttle.len() < THROTTLE_MAX_ADDRESSES {
            client
        } else {
            throttle.retain(|_, w| mono.duration_since(w.started) < LOGIN_WINDOW);
            if throttle.len() < THROTTLE_MAX_ADDRESSES {
                client
            } else {
                None
            }
        };
        let window = throttle.entry(key).or_insert(Window {
            started: mono,
            failures: 0,
        });
        if mono.duration_since(window.started) >= LOGIN_WINDOW {
            *window = Window {
                started: mono,
                failures: 0,
            };
        }
        if window.failures >= LOGIN_FAILURES_MAX {
            let left = LOGIN_WINDOW.saturating_sub(mono.duration_since(window.started));
            return LoginOutcome::Throttled(left.max(Duration::from_secs(1)));
        }
        let presented: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        if bool::from(presented.ct_eq(&keys.password_hash)) {
            LoginOutcome::Success(self.set_cookie(&self.issue(keys, now)))
        } else {
            window.failures += 1;
            LoginOutcome::Invalid
        }
    }

    /// A new cookie value expiring `ttl` after `now`.
    fn issue(&self, keys: &Keys, now: u64) -> String {
        let expires = now.saturating_add(self.ttl_secs);
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let payload = format!("v1.{expires}.{nonce}");
        let tag = hex::encode(hmac(&keys.mac_key, &[payload.as_bytes()]));
        format!("{payload}.{tag}")
    }

    /// The `Set-Cookie` value carrying `value`.
    fn set_cookie(&self, value: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.ttl_secs
        )
    }

    /// The `Set-Cookie` value that removes the cookie (logout).
    pub fn clear_cookie(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
    }

    /// The nonce and expiry of a valid session cookie value at `now`, else `None`: a wrong
    /// format, a MAC that does not match, an expiry past or beyond the TTL, or a logged-out
    /// nonce.
    fn check(&self, value: &str, now: u64) -> Option<(String, u64)> {
        let keys = self.inner.as_ref()?;
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        let expected = hmac(&keys.mac_key, &[payload.as_bytes()]);
        if !bool::from(expected.as_slice().ct_eq(&tag)) {
            return None;
        }
        let mut parts = payload.split('.');
        let (Some("v1"), Some(expires), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expires: u64 = expires.parse().ok()?;
        if expires <= now || expires > now.saturating_add(self.ttl_secs) {
            return None;
        }
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if revoked.contains_key(nonce) {
            return None;
        }
        Some((nonce.to_owned(), expires))
    }

    /// Whether any `Cookie` header in `cookie_headers` carries a valid session at `now`.
    pub fn verify<'a>(&self, cookie_headers: impl IntoIterator<Item = &'a [u8]>, now: u64) -> bool {
        self.enabled()
            && session_values(cookie_headers)
                .iter()
                .any(|v| self.check(v, now).is_some())
    }

    /// Logout: every valid session in `cookie_headers` stops working (remembered until it
    /// would have expired). Returns the `Set-Cookie` value that removes the cookie.
    pub fn logout<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        now: u64,
    ) -> String {
        let ended: Vec<(String, u64)> = session_values(cookie_headers)
            .iter()
            .filter_map(|v| self.check(v, now))
            .collect();
        if !ended.is_empty() {
            let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            revoked.retain(|_, exp| *exp > now);
            for (nonce, exp) in ended {
                if revoked.len() >= REVOKED_MAX {
                    let soonest = revoked
                        .iter()
                        .min_by_key(|(_, e)| **e)
                        .map(|(n, _)| n.clone());
                    if let Some(n) = soonest {
                        revoked.remove(&n);
                    }
                }
                revoked.insert(nonce, exp);
            }
        }
        self.clear_cookie()
    }
}

/// The values of every `wa_hub_session` cookie in these `Cookie` header values.
fn session_values<'a>(cookie_headers: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    cookie_headers
        .into_iter()
        .filter_map(|h| std::str::from_utf8(h).ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            (name.trim() == COOKIE_NAME).then(|| value.trim().trim_matches('"').to_owned())
        })
        .collect()
}

/// A `Cookie` header value without the session cookie, or `None` when nothing else is left;
/// the session cookie is the sidecar's and never goes to wa-hub.
pub fn strip_session_cookie(cookie_header: &str) -> Option<String> {
    let rest: Vec<&str> = cookie_header
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && pair
                    .split_once('=')
                    .is_none_or(|(name, _)| name.trim() != COOKIE_NAME)
        })
        .collect();
    (!rest.is_empty()).then(|| rest.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn sessions(secret: Option<&str>) -> Sessions {
        Sessions::new(&DashboardAuthConfig {
            password: Some(Secret::from("open sesame")),
            session_secret: secret.map(Secret::from),
            secure_cookies: true,
            session_ttl_secs: std::num::NonZeroU64::new(3600).unwrap(),
        })
    }

    fn cookie_of(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap().to_owned()
    }

    fn login(s: &Sessions, pw: &str, now: u64) -> LoginOutcome {
        s.login(pw, Some([10, 0, 0, 1].into()), now, Instant::now())
    }

    #[test]
    fn right_password_gets_a_strict_httponly_secure_cookie_that_verifies() {
        let s = sessions(Some("0123456789abcdef"));
        let LoginOutcome::Success(set) = login(&s, "open sesame", 1000) else {
            panic!("login failed")
        };
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=3600",
            "Secure",
        ] {
            assert!(set.contains(part), "{set}");
        }
        let c = cookie_of(&set);
        assert!(s.verify([format!("other=1; {c}").as_bytes()], 1001));
        assert!(!s.verify([c.as_bytes()], 1000 + 3600), "expired at the TTL");
    }

    #[test]
    fn wrong_password_is_invalid_and_no_password_disables_login() {
        let s = sessions(None);
        assert_eq!(login(&s, "open sesam", 1), LoginOutcome::Invalid);
        assert_eq!(login(&s, "", 1), LoginOutcome::Invalid);
        let off = Sessions::new(&DashboardAuthConfig::default());
        assert_eq!(login(&off, "x", 1), LoginOutcome::Disabled);
        assert!(!off.verify([b"wa_hub_session=v1.9.x.y".as_slice()], 1));
    }

    #[test]
    fn tampered_cookie_or_one_from_another_secret_is_refused() {
        let s = sessions(Some("0123456789abcdef"));
        let LoginOutcome::Success(set) = login(&s, "open sesame", 1000) else {
            panic!()
        };
        let c = cookie_of(&set);
        // Push the expiry later: the MAC no longer matches.
        let tampered = c.replacen("v1.4600", "v1.9600", 1);
        assert_ne!(tampered, c);
        assert!(!s.verify([tampered.as_bytes()], 1001));
        let other = sessions(Some("fedcba9876543210"));
        assert!(!other.verify([c.as_bytes()], 1001));
        assert!(!s.verify([b"wa_hub_session=garbage".as_slice()], 1001));
    }

    #[test]
    fn logout_revokes_the_session_even_for_a_kept_copy() {
        let s = sessions(None);
        let LoginOutcome::Success(set) = login(&s, "open sesame", 1000) else {
            panic!()
        };
        let c = cookie_of(&set);
        let cleared = s.logout([c.as_bytes()], 1001);
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        assert!(!s.verify([c.as_bytes()], 1002));
    }

    #[test]
    fn failures_are_throttled_per_address_then_the_window_resets() {
        let s = sessions(None);
        let start = Instant::now();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..LOGIN_FAILURES_MAX {
            assert_eq!(s.login("bad", a, 1, start), LoginOutcome::Invalid);
        }
        assert!(matches!(
            s.login("open sesame", a, 1, start),
            LoginOutcome::Throttled(_)
        ));
        assert!(matches!(
            s.login("open sesame", b, 1, start),
            LoginOutcome::Success(_)
        ));
        assert!(matches!(
            s.login("open sesame", a, 1, start + LOGIN_WINDOW),
            LoginOutcome::Success(_)
        ));
    }

    #[test]
    fn session_cookie_is_stripped_from_what_goes_upstream() {
        assert_eq!(
            strip_session_cookie("a=1; wa_hub_session=v1.x; b=2").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(strip_session_cookie("wa_hub_session=v1.x"), None);
    }
}
