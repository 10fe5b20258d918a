//! The operator console (issue 11): a static page embedded in the binary at compile time
//! (`src/console/assets/`, with `rust-embed`), served at `GET /console/` with `GET /` redirecting
//! there. The page only calls the public routes (`/api/instances`, `/api/stream`, `/api/sinks`,
//! `/api/wahub/*`, ...), like any other client; these routes are open because the files hold no
//! data (DESIGN.md "console").
//!
//! Caching: `index.html` is `Cache-Control: no-cache` with an `ETag`. It loads its scripts and
//! styles from `/console/v/<version>/<file>`, where `<version>` is a hash of every embedded
//! file, so those answers can be cached for a year (`immutable`) and a new binary is picked up at
//! the next page load. `/console/<file>` without the version also works (`no-cache`). Every
//! answer carries an `ETag` (SHA-256 of the file) and honours `If-None-Match` with 304.
//!
//! Every console answer has the Content-Security-Policy [`CSP`]: scripts, styles and
//! connections only from the sidecar itself, images also from `data:` URLs (wa-hub's base64 PNG
//! QR codes), no inline script.

use std::sync::OnceLock;

use bytes::Bytes;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use crate::response::LocalResponse;

/// The embedded files (paths relative to `src/console/assets/`).
#[derive(RustEmbed)]
#[folder = "src/console/assets/"]
struct Assets;

/// Path prefix of the console.
pub const PREFIX: &str = "/console/";

/// Content-Security-Policy of every console answer.
pub const CSP: &str = "default-src 'self'; img-src 'self' data:; script-src 'self'; \
style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'none'";

/// `Cache-Control` of versioned asset URLs.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Placeholder in `index.html` replaced by [`version`].
const VERSION_PLACEHOLDER: &str = "__CONSOLE_VERSION__";

/// A hash of every embedded file (16 hex digits), stable for one build: the `<version>` of
/// asset URLs.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut names: Vec<_> = Assets::iter().collect();
        names.sort();
        let mut h = Sha256::new();
        for name in names {
            if let Some(f) = Assets::get(&name) {
                h.update(name.as_bytes());
                h.update(f.metadata.sha256_hash());
            }
        }
        hex::encode(&h.finalize()[..8])
    })
}

/// `index.html` with the version filled in, and its ETag.
fn index() -> &'static (Bytes, String) {
    static I: OnceLock<(Bytes, String)> = OnceLock::new();
    I.get_or_init(|| {
        let raw = Assets::get("index.html")
            .map(|f| f.data)
            .unwrap_or_default();
        let html = String::from_utf8_lossy(&raw).replace(VERSION_PLACEHOLDER, version());
        let etag = format!(
            "\"{}\"",
            &hex::encode(Sha256::digest(html.as_bytes()))[..32]
        );
        (Bytes::from(html), etag)
    })
}

/// `Content-Type` for an embedded file name.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`).
fn matches_etag(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag
        })
    })
}

/// `GET /` (and `GET /console` without the slash): 302 to `/console/`.
pub fn redirect() -> LocalResponse {
    LocalResponse::empty(302).with_header("location", PREFIX)
}

/// `GET`/`HEAD /console/<path>` (`path` is what follows `/console/`, still percent-encoded):
/// the page for `""` and `index.html`, else the embedded file. `v/<version>/<file>` serves
/// `<file>` with a year-long `immutable` cache when `<version>` is this binary's; any other
/// version still gets the file (an old page keeps working) but with `no-cache`, so a cache
/// never keeps this binary's file under another version's URL.
/// 304 when `If-None-Match` names the current ETag; 404 JSON for an unknown file. Pingora
/// leaves out the body of a HEAD answer.
pub fn serve(path: &str, if_none_match: Option<&str>) -> LocalResponse {
    let (name, cache) = match path.strip_prefix("v/").and_then(|r| r.split_once('/')) {
        Some((v, file)) if v == version() => (file, IMMUTABLE),
        Some((_other, file)) => (file, "no-cache"),
        None => (path, "no-cache"),
    };
    let (body, etag, ctype) = match name {
        "" | "index.html" => {
            let (body, etag) = index();
            (body.clone(), etag.clone(), content_type("index.html"))
        }
        _ => match Assets::get(name).filter(|_| !name.contains("..")) {
            Some(f) => {
                let etag = format!("\"{}\"", &hex::encode(f.metadata.sha256_hash())[..32]);
                let body = match f.data {
                    std::borrow::Cow::Borrowed(b) => Bytes::from_static(b),
                    std::borrow::Cow::Owned(v) => Bytes::from(v),
                };
                (body, etag, content_type(name))
            }
            None => {
                return LocalResponse::error(404, "Not found", "no such console file")
                    .with_header("content-security-policy", CSP)
            }
        },
    };
    // The page itself is never cached without revalidation.
    let cache = if ctype.starts_with("text/html") {
        "no-cache"
    } else {
        cache
    };
    let not_modified = matches_etag(if_none_match, &etag);
    let len = body.len();
    let resp = LocalResponse {
        status: if not_modified { 304 } else { 200 },
        body: if not_modified { Bytes::new() } else { body },
        headers: Vec::new(),
        content_type: ctype,
    };
    let resp = resp
        .with_header("etag", etag)
        .with_header("cache-control", cache)
        .with_header("content-security-policy", CSP)
        .with_header("x-content-type-options", "nosniff")
        .with_header("referrer-policy", "no-referrer");
    if not_modified {
        // A 304 has no body; its Content-Length, if any, must be the full answer's.
        resp.with_header("content-length", len.to_string())
    } else {
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a LocalResponse, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_page_is_html_with_no_cache_and_the_versioned_scripts() {
        let r = serve("", None);
        assert_eq!(r.status, 200);
        assert!(r.content_type.starts_with("text/html"));
        assert_eq!(header(&r, "cache-control"), Some("no-cache"));
        assert_eq!(header(&r, "content-security-policy"), Some(CSP));
        let html = String::from_utf8_lossy(&r.body);
        assert!(html.contains(&format!("v/{}/app.js", version())), "{html}");
        assert!(!html.contains(VERSION_PLACEHOLDER));
        assert_eq!(serve("index.html", None).body, r.body);
    }

    #[test]
    fn another_versions_url_is_never_cached_for_good() {
        let r = serve("v/0000/app.js", None);
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, "cache-control"), Some("no-cache"));
    }

    #[test]
    fn versioned_assets_are_immutable_and_plain_ones_revalidate() {
        let v = serve(&format!("v/{}/app.js", version()), None);
        assert_eq!(v.status, 200);
        assert!(v.content_type.starts_with("text/javascript"));
        assert_eq!(header(&v, "cache-control"), Some(IMMUTABLE));
        let plain = serve("app.js", None);
        assert_eq!(header(&plain, "cache-control"), Some("no-cache"));
        assert_eq!(plain.body, v.body);
        assert_eq!(
            serve("style.css", None).content_type,
            "text/css; charset=utf-8"
        );
    }

    #[test]
    fn a_matching_etag_gets_304_without_body() {
        let r = serve("app.js", None);
        let etag = header(&r, "etag").unwrap().to_owned();
        let again = serve("app.js", Some(&format!("W/{etag}, \"other\"")));
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        assert_eq!(serve("app.js", Some("\"nope\"")).status, 200);
    }

    #[test]
    fn unknown_files_are_404() {
        assert_eq!(serve("nope.js", None).status, 404);
        assert_eq!(serve("../Cargo.toml", None).status, 404);
        assert_eq!(serve("v/x/../../Cargo.toml", None).status, 404);
    }

    #[test]
    fn no_asset_has_inline_script_or_remote_urls() {
        for name in Assets::iter() {
            let f = Assets::get(&name).unwrap();
            let text = String::from_utf8_lossy(&f.data);
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name}"
            );
            if name.ends_with(".html") {
                assert!(!text.contains("<script>"), "{name}: inline script");
                for handler in ["onclick=", "onerror=", "onload=", "onsubmit="] {
                    assert!(!text.contains(handler), "{name}: inline {handler}");
                }
            }
        }
    }
}
