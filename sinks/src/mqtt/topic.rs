//! Topic layout and the reversible mapping of instance ids and event names to one topic level.
//!
//! Layout, with `<prefix>` the configured `topic_prefix` (default `wa-hub`):
//!
//! | topic | payload | retained |
//! |---|---|---|
//! | `<prefix>/<instance>/events/<event>` | the original webhook body, byte for byte | no |
//! | `<prefix>/<instance>/status` | the display status JSON (`InstanceStatus`) | yes |
//! | `<prefix>/sidecar/availability` | `online` / `offline` (also the Last Will) | yes |
//!
//! `<instance>` and `<event>` are each exactly one level, written by [`encode_level`]:
//! - `%` → `%25`, `/` → `%2F`, `+` → `%2B`, `#` → `%23`;
//! - `$` as the first character → `%24` (a leading `$` marks broker topics such as `$SYS`);
//! - control characters (U+0000–U+001F, U+007F–U+009F) and Unicode non-characters
//!   (U+FDD0–U+FDEF, U+xFFFE, U+xFFFF) → `%XX` for each byte of their UTF-8 encoding;
//! - every other character, non-ASCII included, is kept as is (MQTT topics are UTF-8);
//! - the empty string (and a webhook without `instanceId`) → the level `%` alone, which no
//!   non-empty id can produce since an encoded `%` is always followed by two hex digits.
//!
//! [`decode_level`] inverts it: `decode_level(&encode_level(s)) == s` for every string.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Longest topic name MQTT allows, bytes (its length is a 16-bit prefix).
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// The level that stands for an empty (or missing) id.
pub const EMPTY_LEVEL: &str = "%";

/// Whether `c` must be percent-encoded wherever it stands.
fn must_escape(c: char) -> bool {
    let cp = c as u32;
    matches!(c, '%' | '/' | '+' | '#')
        || c.is_control()
        || (0xFDD0..=0xFDEF).contains(&cp)
        || (cp & 0xFFFE) == 0xFFFE
}

/// Maps `id` to one legal MQTT topic level by the rule in the module docs.
///
/// Returns the input unchanged (borrowed) when nothing needs escaping.
///
/// ```
/// use wa_hub_sinks::mqtt::encode_level;
/// assert_eq!(encode_level("WASP-shop"), "WASP-shop");
/// assert_eq!(encode_level("a/b+c#d%"), "a%2Fb%2Bc%23d%25");
/// assert_eq!(encode_level("$SYS"), "%24SYS");
/// assert_eq!(encode_level(""), "%");
/// ```
pub fn encode_level(id: &str) -> Cow<'_, str> {
    if id.is_empty() {
        return Cow::Borrowed(EMPTY_LEVEL);
    }
    if !id.starts_with('$') && !id.chars().any(must_escape) {
        return Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len() + 8);
    for (i, c) in id.chars().enumerate() {
        if must_escape(c) || (i == 0 && c == '$') {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                // Writing to a String cannot fail.
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A topic level that [`encode_level`] cannot have produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits.
    #[error("`%` at byte {0} is not followed by two hex digits")]
    BadEscape(usize),
    /// The escapes decode to bytes that are not UTF-8.
    #[error("escaped bytes are not UTF-8")]
    NotUtf8,
    /// The level contains `/`, so it is more than one level.
    #[error("`/` inside a level")]
    Slash,
}

/// Inverts [`encode_level`]: the instance id or event name a topic level stands for.
///
/// # Errors
/// [`DecodeError`] for a level no id maps to (a bad escape, a `/`, non-UTF-8 escapes).
///
/// ```
/// use wa_hub_sinks::mqtt::{decode_level, encode_level};
/// let id = "WASP-ü/1+#";
/// assert_eq!(decode_level(&encode_level(id)).unwrap(), id);
/// assert_eq!(decode_level("%").unwrap(), "");
/// ```
pub fn decode_level(level: &str) -> Result<String, DecodeError> {
    if level == EMPTY_LEVEL {
        return Ok(String::new());
    }
    let bytes = level.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' => return Err(DecodeError::Slash),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(DecodeError::BadEscape(i))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| DecodeError::NotUtf8)
}

/// Builds the sink's topic names under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (already validated: no wildcards, no empty level, no leading `$`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// `<prefix>/<instance>/events/<event>`; a missing instance id is the empty level `%`.
    pub fn event(&self, instance: Option<&str>, event: &str) -> String {
        format!(
            "{}/{}/events/{}",
            self.prefix,
            encode_level(instance.unwrap_or("")),
            encode_level(event)
        )
    }

    /// `<prefix>/<instance>/status` (retained).
    pub fn status(&self, instance: &str) -> String {
        format!("{}/{}/status", self.prefix, encode_level(instance))
    }

    /// `<prefix>/sidecar/availability` (retained, and the Last Will).
    pub fn availability(&self) -> String {
        format!("{}/sidecar/availability", self.prefix)
    }
}

/// Size on the wire of an MQTT 3.1.1 PUBLISH packet, bytes: fixed header, topic with its
/// length prefix, the packet id for QoS 1, and the payload. This is the size rumqttc checks
/// against its maximum outgoing packet size.
pub fn publish_packet_bytes(topic_bytes: usize, payload_bytes: usize, qos1: bool) -> usize {
    let remaining = 2 + topic_bytes + payload_bytes + if qos1 { 2 } else { 0 };
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) {
        let level = encode_level(s);
        assert!(!level.contains('/'), "{s:?} -> {level:?} has a slash");
        assert!(!level.contains('+') && !level.contains('#'), "{level:?}");
        assert!(!level.starts_with('$'), "{level:?}");
        assert!(!level.is_empty(), "empty level for {s:?}");
        assert!(!level.chars().any(char::is_control), "{level:?}");
        assert_eq!(decode_level(&level).as_deref(), Ok(s), "via {level:?}");
    }

    #[test]
    fn plain_ids_are_kept_as_they_are() {
        assert!(matches!(
            encode_level("WASP-acme-store_myshopify_com"),
            Cow::Borrowed("WASP-acme-store_myshopify_com")
        ));
        assert_eq!(encode_level("change_state"), "change_state");
        assert_eq!(encode_level("a$b"), "a$b");
        assert_eq!(encode_level("with space"), "with space");
    }

    #[test]
    fn reserved_characters_are_percent_encoded() {
        assert_eq!(encode_level("a/b"), "a%2Fb");
        assert_eq!(encode_level("+#"), "%2B%23");
        assert_eq!(encode_level("100%"), "100%25");
        assert_eq!(encode_level("$SYS/x"), "%24SYS%2Fx");
        assert_eq!(encode_level("nul\0tab\t"), "nul%00tab%09");
        assert_eq!(encode_level("\u{7f}\u{85}"), "%7F%C2%85");
        assert_eq!(encode_level("\u{FFFF}\u{FDD0}"), "%EF%BF%BF%EF%B7%90");
    }

    #[test]
    fn non_ascii_text_is_kept_as_utf8() {
        assert_eq!(encode_level("WASP-مرحبا-😀-ü"), "WASP-مرحبا-😀-ü");
    }

    #[test]
    fn empty_id_becomes_a_lone_percent_level() {
        assert_eq!(encode_level(""), "%");
        assert_eq!(decode_level("%"), Ok(String::new()));
        // No non-empty id encodes to `%`.
        assert_eq!(encode_level("%"), "%25");
    }

    #[test]
    fn mapping_round_trips_for_awkward_ids() {
        for s in [
            "",
            "%",
            "%25",
            "a/b/c",
            "/",
            "//",
            "+",
            "#",
            "$",
            "$$",
            "a$",
            "\0",
            "WASP-ä/+#%$-😀",
            "\u{1}\u{1f}\u{7f}\u{80}\u{9f}",
            "\u{FFFE}\u{10FFFF}",
            "plain",
        ] {
            round_trip(s);
        }
    }

    #[test]
    fn mapping_round_trips_for_every_char_in_a_sweep() {
        let chars: String = (0u32..0x3000)
            .chain(0xFDC0..0xFE10)
            .chain(0xFFF0..0x10010)
            .filter_map(char::from_u32)
            .collect();
        round_trip(&chars);
        for c in chars.chars() {
            round_trip(&c.to_string());
        }
    }

    #[test]
    fn bad_levels_are_refused_by_decode() {
        assert_eq!(decode_level("%2"), Err(DecodeError::BadEscape(0)));
        assert_eq!(decode_level("a%zz"), Err(DecodeError::BadEscape(1)));
        assert_eq!(decode_level("a/b"), Err(DecodeError::Slash));
        assert_eq!(decode_level("%FF"), Err(DecodeError::NotUtf8));
        assert_eq!(decode_level("%2f").as_deref(), Ok("/"));
    }

    #[test]
    fn topics_follow_the_layout() {
        let t = Topics::new("home/wa-hub");
        assert_eq!(
            t.event(Some("WASP-a/b"), "message"),
            "home/wa-hub/WASP-a%2Fb/events/message"
        );
        assert_eq!(t.event(None, "qr"), "home/wa-hub/%/events/qr");
        assert_eq!(t.status("x#"), "home/wa-hub/x%23/status");
        assert_eq!(t.availability(), "home/wa-hub/sidecar/availability");
    }

    #[test]
    fn packet_size_matches_what_rumqttc_checks() {
        for (topic, payload) in [
            (1, 0),
            (10, 100),
            (100, 16_300),
            (3, 2_097_140),
            (500, 5000),
        ] {
            for qos in [rumqttc::QoS::AtMostOnce, rumqttc::QoS::AtLeastOnce] {
                let mut p = rumqttc::Publish::new("t".repeat(topic), qos, vec![0u8; payload]);
                if qos == rumqttc::QoS::AtLeastOnce {
                    p.pkid = 1;
                }
                assert_eq!(
                    publish_packet_bytes(topic, payload, qos == rumqttc::QoS::AtLeastOnce),
                    p.size(),
                    "topic {topic} payload {payload} {qos:?}"
                );
            }
        }
    }
}
