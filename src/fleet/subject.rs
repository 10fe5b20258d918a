//! Subjects of the fleet's events and the reversible mapping of ids to one subject token.
//!
//! Layout: `<prefix>.<node>.<instance>.<kind>`, with `<prefix>` `fleet.subject_prefix`
//! (default `wahub`) and `<kind>` one of `webhook`, `apiLog`, `qr`, `status` (the envelope's
//! `type`). The stream listens on `<prefix>.>`.
//!
//! `<node>` and `<instance>` are each one token, written by [`encode_token`]:
//! - `A-Z a-z 0-9 - _` are kept;
//! - every other byte of the id's UTF-8 (`.`, `*`, `>`, spaces, `=`, non-ASCII, ...) becomes
//!   `=XX`, two upper-case hex digits;
//! - the empty id (and an event without instance) becomes `=` alone, which no non-empty id
//!   can produce since an encoded `=` is always followed by two hex digits.
//!
//! The same tokens are legal JetStream KV keys, so the status bucket uses them as keys.
//! [`decode_token`] inverts the rule: `decode_token(&encode_token(s)) == Some(s)`.

use std::fmt::Write as _;

/// The default first token of every fleet subject (`fleet.subject_prefix`).
pub const DEFAULT_PREFIX: &str = "wahub";

/// The stream's subject filter: every fleet subject under `prefix`.
pub fn stream_subjects(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// The token of an empty or missing id.
pub const EMPTY_TOKEN: &str = "=";

fn kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Maps `id` to one subject token (and KV key) by the rule in the module docs.
pub fn encode_token(id: &str) -> String {
    if id.is_empty() {
        return EMPTY_TOKEN.to_owned();
    }
    let mut out = String::with_capacity(id.len());
    for &b in id.as_bytes() {
        if kept(b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
    out
}

/// The id a token stands for; `None` when `token` is not one [`encode_token`] writes.
pub fn decode_token(token: &str) -> Option<String> {
    if token == EMPTY_TOKEN {
        return Some(String::new());
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                let b = u8::from_str_radix(hex, 16).ok()?;
                if kept(b) || hex.chars().any(|c| c.is_ascii_lowercase()) {
                    return None; // not canonical: encode_token never writes it
                }
                out.push(b);
                i += 3;
            }
            b if kept(b) => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    if out.is_empty() {
        return None;
    }
    String::from_utf8(out).ok()
}

/// `<prefix>.<node>.<instance>.<kind>`; `instance` `None` for events of no instance.
pub fn subject(prefix: &str, node: &str, instance: Option<&str>, kind: &str) -> String {
    format!(
        "{prefix}.{}.{}.{kind}",
        encode_token(node),
        encode_token(instance.unwrap_or(""))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_kept_and_others_escaped() {
        assert_eq!(encode_token("WASP-shop_1"), "WASP-shop_1");
        assert_eq!(encode_token("a.b*c>d e"), "a=2Eb=2Ac=3Ed=20e");
        assert_eq!(encode_token("x=y"), "x=3Dy");
        assert_eq!(encode_token(""), "=");
        assert_eq!(encode_token("é"), "=C3=A9");
    }

    #[test]
    fn decoding_inverts_encoding() {
        for s in [
            "",
            "a",
            "a.b",
            "=",
            "==41",
            "é ü/ß",
            "$SYS.>",
            "tab\there",
            "x=3D",
        ] {
            assert_eq!(decode_token(&encode_token(s)).as_deref(), Some(s), "{s}");
        }
    }

    #[test]
    fn tokens_not_written_by_the_rule_are_refused() {
        for t in ["a.b", "=4", "=41", "=c3=a9", "a b", "=ZZ", "=FF"] {
            assert_eq!(decode_token(t), None, "{t}");
        }
    }

    #[test]
    fn subject_has_four_tokens() {
        assert_eq!(
            subject("wahub", "node-a", Some("inst.1"), "webhook"),
            "wahub.node-a.inst=2E1.webhook"
        );
        assert_eq!(subject("wahub", "n", None, "apiLog"), "wahub.n.=.apiLog");
    }
}
