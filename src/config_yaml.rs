//! Reading the YAML config text into the config type (`RawConfig`, via [`WithSinks`]), with
//! errors that name the key path
//! (`sinks[2].keep_alive_secs`) and that key's own line (issue 14, item 5).
//!
//! Three passes over the text:
//! 1. a YAML event walk ([`yaml_rust2`], which reports positions) records the line of every
//!    key path and refuses syntax errors, duplicate keys (at the duplicate's line, at any
//!    depth) and keys that are not plain scalars;
//! 2. `serde_yaml` reads the text into a [`serde_yaml::Value`] and applies YAML merge keys
//!    (`<<: *anchor`, the YAML 1.1 merge type), so merged keys count as written there;
//! 3. the value is deserialized with [`serde_path_to_error`], which knows the failing key's
//!    path. Each `sinks[i]` entry is deserialized on its own, by its `type`, so that the
//!    sink's own keys get their path too (serde's `flatten` would lose it).
//!
//! Error messages never contain the value of a secret key (`token`, `secret`, `auth_token`,
//! `client_tokens`, `password`): for those, serde's "invalid type: string `…`" is cut down to
//! the expected type. Unknown keys stay errors (`deny_unknown_fields` on every section).

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use wa_hub_sinks::Kind;
use wa_hub_sinks::{SinkConfig, SinkKind};
use yaml_rust2::parser::{Event, Parser};

/// A config document whose `sinks:` list is read entry by entry, by each entry's `type`.
pub trait WithSinks: DeserializeOwned + Default {
    /// Puts the sink list read from `sinks:` in place.
    fn set_sinks(&mut self, sinks: Vec<SinkConfig>);
}

/// Keys whose values are secrets: never quoted in an error.
pub const SECRET_KEYS: &[&str] = &["token", "secret", "auth_token", "client_tokens", "password"];

/// The `type` values of a `sinks:` entry.
pub const SINK_TYPES: &[&str] = &["sse", "stdout", "mqtt", "forward"];

/// Keys every `sinks:` entry may have besides `type` and its type's own keys.
const COMMON_SINK_KEYS: &[&str] = &["name", "kinds", "events", "instances", "queue_capacity"];

/// A config text that was refused: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}: {message}", if path.is_empty() { "(top level)" } else { path }, line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct YamlError {
    /// Key path, e.g. `sinks[2].keep_alive_secs`; empty for the document itself.
    pub path: String,
    /// 1-based line of that key in the text, when known.
    pub line: Option<usize>,
    /// What is wrong, with the allowed values when there is a fixed set.
    pub message: String,
}

/// Parses config text. Blank or comment-only text gives the defaults.
///
/// # Errors
/// [`YamlError`] naming the key path and its line: YAML syntax, a duplicate key, a key that is
/// not a plain scalar, a merge key whose value is not a mapping, an unknown key, a value of
/// the wrong type or out of range, a sink entry without a known `type`.
pub fn parse<T: WithSinks>(text: &str) -> Result<T, YamlError> {
    let lines = key_lines(text)?;
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| value_error(&e, &lines))?;
    value.apply_merge().map_err(|e| YamlError {
        path: String::new(),
        line: lines.get("<<").copied(),
        message: format!("merge key `<<`: {e}"),
    })?;
    // Merges in nested mappings (apply_merge handles the top level and what it visits).
    apply_merges_everywhere(&mut value, &lines)?;
    let mut top = match value {
        Value::Null => return Ok(T::default()),
        Value::Mapping(m) => m,
        other => {
            return Err(YamlError {
                path: String::new(),
                line: Some(1),
                message: format!("expected a mapping of config keys, got {}", kind_of(&other)),
            })
        }
    };
    let sinks = top.remove("sinks");
    let mut raw: T = typed(Value::Mapping(top), "", &lines)?;
    if let Some(sinks) = sinks {
        raw.set_sinks(parse_sinks(sinks, &lines)?);
    }
    Ok(raw)
}

/// The line of `path` (`webhook.signature`, `sinks[2].kinds`) in `text`, when written there;
/// `None` for text that does not parse or a key it does not have.
pub fn line_of(text: &str, path: &str) -> Option<usize> {
    key_lines(text).ok()?.get(path).copied()
}

/// A text that is YAML but not a value `serde_yaml` holds: an integer beyond 64 bits (serde's
/// "invalid type: integer `…` as u128, expected any YAML value"). The error names the key
/// written on the error's line, never quotes a secret key's value, and says what numbers a
/// setting can take.
fn value_error(e: &serde_yaml::Error, lines: &HashMap<String, usize>) -> YamlError {
    let line = e.location().map(|l| l.line());
    // The deepest key path written on that line (a flow mapping puts several there).
    let path = line
        .and_then(|l| {
            lines
                .iter()
                .filter(|(_, at)| **at == l)
                .map(|(path, _)| path.as_str())
                .max_by_key(|path| (path.len(), *path))
        })
        .unwrap_or_default()
        .to_owned();
    let message = e.to_string();
    let secret = path
        .split(['.', '['])
        .any(|seg| SECRET_KEYS.contains(&seg.trim_end_matches(']')));
    let message = if message.contains(" as u128") || message.contains(" as i128") {
        if secret {
            "wrong value type (not shown: this key holds a secret), expected a string: \
             write it in quotes"
                .to_owned()
        } else if message.contains("integer `-") {
            "number out of range: too far below zero for any setting (text goes in quotes)"
                .to_owned()
        } else {
            format!(
                "number out of range: no setting takes a number above {} (text goes in quotes)",
                u64::MAX
            )
        }
    } else {
        clean_message(&message, secret)
    };
    YamlError {
        path,
        line,
        message,
    }
}

/// `serde_yaml` applies merge keys only where `apply_merge` walks; do every mapping.
fn apply_merges_everywhere(
    value: &mut Value,
    lines: &HashMap<String, usize>,
) -> Result<(), YamlError> {
    match value {
        Value::Mapping(m) => {
            if m.contains_key("<<") {
                let mut v = Value::Mapping(std::mem::take(m));
                v.apply_merge().map_err(|e| YamlError {
                    path: String::new(),
                    line: lines.get("<<").copied(),
                    message: format!("merge key `<<`: {e}"),
                })?;
                if let Value::Mapping(merged) = v {
                    *m = merged;
                }
            }
            for (_, v) in m.iter_mut() {
                apply_merges_everywhere(v, lines)?;
            }
        }
        Value::Sequence(s) => {
            for v in s {
                apply_merges_everywhere(v, lines)?;
            }
        }
        Value::Tagged(t) => apply_merges_everywhere(&mut t.value, lines)?,
        _ => {}
    }
    Ok(())
}

/// Keys every `sinks:` entry shares; its type's own keys are read separately.
#[derive(Deserialize)]
#[serde(default)]
struct CommonKeys {
    name: Option<String>,
    kinds: Vec<Kind>,
    events: Vec<String>,
    instances: Vec<String>,
    queue_capacity: usize,
}

impl Default for CommonKeys {
    fn default() -> Self {
        Self {
            name: None,
            kinds: Vec::new(),
            events: Vec::new(),
            instances: Vec::new(),
            queue_capacity: wa_hub_sinks::config::DEFAULT_QUEUE_CAPACITY,
        }
    }
}

fn parse_sinks(value: Value, lines: &HashMap<String, usize>) -> Result<Vec<SinkConfig>, YamlError> {
    let entries = match value {
        Value::Sequence(s) => s,
        other => {
            return Err(at(
                "sinks",
                lines,
                format!(
                    "expected a list of sink entries (`- type: sse`), got {}",
                    kind_of(&other)
                ),
            ))
        }
    };
    let allowed = SINK_TYPES
        .iter()
        .map(|t| format!("`{t}`"))
        .collect::<Vec<_>>()
        .join(", ");
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = format!("sinks[{i}]");
            let Value::Mapping(mut map) = entry else {
                return Err(at(
                    &path,
                    lines,
                    format!("expected a mapping with `type` (one of {allowed})"),
                ));
            };
            let type_path = format!("{path}.type");
            let kind = match map.remove("type") {
                None => {
                    return Err(at(
                        &path,
                        lines,
                        format!("missing key `type`: one of {allowed}"),
                    ))
                }
                Some(Value::String(t)) if SINK_TYPES.contains(&t.as_str()) => t,
                Some(other) => {
                    let shown = match &other {
                        Value::String(s) => format!("`{s}`"),
                        v => kind_of(v).to_owned(),
                    };
                    return Err(at(
                        &type_path,
                        lines,
                        format!("unknown sink type {shown}: one of {allowed}"),
                    ));
                }
            };
            let mut common = Mapping::new();
            for key in COMMON_SINK_KEYS {
                if let Some(v) = map.remove(*key) {
                    common.insert(Value::String((*key).to_owned()), v);
                }
            }
            let common: CommonKeys = typed(Value::Mapping(common), &path, lines)?;
            let own = Value::Mapping(map);
            let kind = match kind.as_str() {
                "sse" => SinkKind::Sse(typed(own, &path, lines)?),
                "stdout" => SinkKind::Stdout(typed(own, &path, lines)?),
                "mqtt" => SinkKind::Mqtt(typed(own, &path, lines)?),
                _ => SinkKind::Forward(typed(own, &path, lines)?),
            };
            Ok(SinkConfig {
                name: common.name,
                kinds: common.kinds,
                events: common.events,
                instances: common.instances,
                queue_capacity: common.queue_capacity,
                kind,
            })
        })
        .collect()
}

/// Deserializes `value` (found at `prefix`) into `T`, turning serde's error into a
/// [`YamlError`] with the full key path and its line.
fn typed<T: DeserializeOwned>(
    value: Value,
    prefix: &str,
    lines: &HashMap<String, usize>,
) -> Result<T, YamlError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let mut path = join(prefix, if inner == "." { "" } else { &inner });
        let message = e.inner().to_string();
        // An unknown key: point at the key itself.
        if let Some(field) = backticked_after(&message, "unknown field ") {
            let candidate = join(&path, &field);
            if lines.contains_key(&candidate) {
                path = candidate;
            }
        }
        let secret = path
            .split(['.', '['])
            .any(|seg| SECRET_KEYS.contains(&seg.trim_end_matches(']')));
        at(&path, lines, clean_message(&message, secret))
    })
}

/// Rewrites serde's wording: integer types as the numbers they allow, and for a secret key
/// the value left out.
fn clean_message(message: &str, secret: bool) -> String {
    let mut m = message.to_owned();
    if secret {
        if let Some(rest) = m
            .strip_prefix("invalid type: ")
            .or_else(|| m.strip_prefix("invalid value: "))
        {
            let expected = rest
                .find(", expected ")
                .map(|i| rest[i + 2..].to_owned())
                .unwrap_or_else(|| "expected a string".into());
            m = format!("wrong value type (not shown: this key holds a secret), {expected}");
        } else if m.contains('`') || m.contains('"') {
            m = "invalid value (not shown: this key holds a secret)".into();
        }
    }
    for (from, to) in [
        ("expected a nonzero u64", "expected a whole number from 1"),
        ("expected a nonzero u32", "expected a whole number from 1"),
        ("expected a nonzero u16", "expected a whole number from 1"),
        ("expected a nonzero usize", "expected a whole number from 1"),
        ("expected u64", "expected a whole number from 0"),
        ("expected u32", "expected a whole number from 0"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected usize", "expected a whole number from 0"),
    ] {
        if let Some(i) = m.find(from) {
            // Whole words only: `u16` must not match inside `u164`.
            let end = i + from.len();
            if !m[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                m.replace_range(i..end, to);
            }
        }
    }
    m
}

/// `prefix.inner`, `prefix[0]`, or either alone.
fn join(prefix: &str, inner: &str) -> String {
    match (prefix.is_empty(), inner.is_empty()) {
        (true, _) => inner.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
        _ => format!("{prefix}.{inner}"),
    }
}

/// The text between the backticks that follow `marker` in `message`.
fn backticked_after(message: &str, marker: &str) -> Option<String> {
    let rest = &message[message.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('`')?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// An error at `path`, with the line of the nearest key on that path that has one.
fn at(path: &str, lines: &HashMap<String, usize>, message: String) -> YamlError {
    let mut p = path.to_owned();
    let line = loop {
        if let Some(l) = lines.get(&p) {
            break Some(*l);
        }
        match p.rfind(['.', '[']) {
            Some(i) => p.truncate(i),
            None => break lines.get(&p).copied(),
        }
    };
    YamlError {
        path: path.to_owned(),
        line,
        message,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// One open container of the event walk.
enum Frame {
    Map {
        path: String,
        /// Keys seen so far and their lines.
        keys: HashMap<String, usize>,
        /// The key whose value comes next, or `None` when a key comes next.
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

/// Walks the YAML events: the 1-based line of every key path (`upstream.token`,
/// `sinks[1]`, `sinks[1].url`); `<<` maps to the first merge key's line.
///
/// # Errors
/// YAML syntax errors, duplicate keys, and keys that are not plain scalars.
fn key_lines(text: &str) -> Result<HashMap<String, usize>, YamlError> {
    let mut lines = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| YamlError {
            path: String::new(),
            line: Some(e.marker().line()),
            message: format!("YAML syntax: {}", e.info()),
        })?;
        let line = mark.line();
        // The path of a node starting here, when inside a container.
        let node_path = |stack: &mut Vec<Frame>| -> Result<Option<String>, YamlError> {
            match stack.last_mut() {
                None => Ok(Some(String::new())),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    Ok(Some(p))
                }
                Some(Frame::Map { path, key, .. }) => match key.take() {
                    Some(k) => Ok(Some(join(path, &k))),
                    None => Ok(None),
                },
            }
        };
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError {
                        path: String::new(),
                        line: Some(line),
                        message: "more than one YAML document (`---`); use one".into(),
                    });
                }
            }
            Event::Scalar(s, ..) => match node_path(&mut stack)? {
                Some(p) => {
                    lines.entry(p).or_insert(line);
                }
                None => {
                    // A key of the innermost mapping.
                    if let Some(Frame::Map { path, keys, key }) = stack.last_mut() {
                        let full = join(path, &s);
                        if let Some(first) = keys.get(&s) {
                            return Err(YamlError {
                                path: full,
                                line: Some(line),
                                message: format!(
                                    "duplicate key `{s}` (first at line {first}); keep one"
                                ),
                            });
                        }
                        keys.insert(s.clone(), line);
                        if s == "<<" {
                            lines.entry("<<".to_owned()).or_insert(line);
                        }
                        lines.entry(full).or_insert(line);
                        *key = Some(s);
                    }
                }
            },
            Event::Alias(_) if node_path(&mut stack)?.is_none() => {
                return Err(non_scalar_key(&stack, line));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                let Some(path) = node_path(&mut stack)? else {
                    return Err(non_scalar_key(&stack, line));
                };
                lines.entry(path.clone()).or_insert(line);
                stack.push(if is_map {
                    Frame::Map {
                        path,
                        keys: HashMap::new(),
                        key: None,
                    }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    Ok(lines)
}

fn non_scalar_key(stack: &[Frame], line: usize) -> YamlError {
    let path = match stack.last() {
        Some(Frame::Map { path, .. }) | Some(Frame::Seq { path, .. }) => path.clone(),
        None => String::new(),
    };
    YamlError {
        path,
        line: Some(line),
        message: "a key must be a plain word, not a list, mapping or alias".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn err(text: &str) -> YamlError {
        parse::<RawConfig>(text).expect_err("refused")
    }

    const THREE_SINKS: &str = "listen: 127.0.0.1:3001\nsinks:\n  - type: sse\n  - type: stdout\n    kinds: [webhook]\n  - type: mqtt\n    url: mqtt://127.0.0.1:1883\n";

    #[test]
    fn a_fractional_keep_alive_names_the_sink_key_and_its_own_line() {
        let e = err(&format!("{THREE_SINKS}    keep_alive_secs: 0.5\n"));
        assert_eq!(e.path, "sinks[2].keep_alive_secs", "{e}");
        assert_eq!(e.line, Some(8), "{e}");
        assert!(e.message.contains("whole number"), "{e}");
    }

    #[test]
    fn a_zero_where_one_is_the_least_names_the_key_line_and_the_range() {
        let e = err(&format!(
            "{THREE_SINKS}    topic_prefix: x\n    max_inflight: 0\n"
        ));
        assert_eq!(
            (e.path.as_str(), e.line),
            ("sinks[2].max_inflight", Some(9)),
            "{e}"
        );
        assert!(e.message.contains("from 1"), "{e}");
        let e = err("upstream:\n  read_timeout_ms: 0\n");
        assert_eq!(
            (e.path.as_str(), e.line),
            ("upstream.read_timeout_ms", Some(2)),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_are_named_at_their_line_with_the_allowed_keys() {
        let e = err("listen: 127.0.0.1:1\nupstream:\n  base_ur: http://x\n");
        assert_eq!(
            (e.path.as_str(), e.line),
            ("upstream.base_ur", Some(3)),
            "{e}"
        );
        assert!(e.message.contains("expected one of"), "{e}");
        let e = err(&format!("{THREE_SINKS}    retries: 3\n"));
        assert_eq!(
            (e.path.as_str(), e.line),
            ("sinks[2].retries", Some(8)),
            "{e}"
        );
        let e = err("bogus: 1\n");
        assert_eq!((e.path.as_str(), e.line), ("bogus", Some(1)), "{e}");
    }

    #[test]
    fn a_sink_type_missing_or_unknown_lists_the_types() {
        let e = err("sinks:\n  - name: a\n");
        assert_eq!((e.path.as_str(), e.line), ("sinks[0]", Some(2)), "{e}");
        assert!(
            e.message.contains("`sse`, `stdout`, `mqtt`, `forward`"),
            "{e}"
        );
        let e = err("sinks:\n  - type: sse\n  - type: kafka\n");
        assert_eq!((e.path.as_str(), e.line), ("sinks[1].type", Some(3)), "{e}");
        assert!(
            e.message.contains("`kafka`") && e.message.contains("`forward`"),
            "{e}"
        );
    }

    #[test]
    fn an_enum_value_error_lists_the_allowed_values() {
        let e = err("webhook:\n  secret: s\n  signature: maybe\n");
        assert_eq!(
            (e.path.as_str(), e.line),
            ("webhook.signature", Some(3)),
            "{e}"
        );
        assert!(e.message.contains("`required`, `optional`"), "{e}");
        let e = err("sinks:\n  - type: stdout\n    kinds: [webhook, nope]\n");
        assert_eq!(e.path, "sinks[0].kinds[1]", "{e}");
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn merge_keys_are_applied_in_sink_entries_and_sections() {
        let raw: RawConfig = parse(
            "sinks:\n  - &base\n    type: mqtt\n    url: mqtt://127.0.0.1:1883\n    keep_alive_secs: 7\n  - <<: *base\n    name: second\n    topic_prefix: other\n",
        )
        .unwrap();
        assert_eq!(raw.sinks.len(), 2);
        let SinkKind::Mqtt(m) = &raw.sinks[1].kind else {
            panic!("{:?}", raw.sinks[1].kind)
        };
        assert_eq!(m.keep_alive_secs.to_string(), "7");
        assert_eq!(m.topic_prefix, "other");
        assert_eq!(raw.sinks[1].name.as_deref(), Some("second"));
        // A merged key that is wrong is still named by its path.
        let e = err("sinks:\n  - &base\n    type: mqtt\n    url: mqtt://h:1\n  - <<: *base\n    keep_alive_secs: x\n");
        assert_eq!(
            (e.path.as_str(), e.line),
            ("sinks[1].keep_alive_secs", Some(6)),
            "{e}"
        );
        let e = err("upstream:\n  <<: 5\n");
        assert!(e.message.contains("merge key `<<`"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn duplicate_keys_report_their_own_line_at_any_depth() {
        let e = err("listen: 127.0.0.1:1\nthreads: 2\nlisten: 127.0.0.1:2\n");
        assert_eq!((e.path.as_str(), e.line), ("listen", Some(3)), "{e}");
        assert!(e.message.contains("first at line 1"), "{e}");
        let e = err("sinks:\n  - type: mqtt\n    url: mqtt://h:1\n    qos: 1\n    qos: 0\n");
        assert_eq!((e.path.as_str(), e.line), ("sinks[0].qos", Some(5)), "{e}");
    }

    #[test]
    fn a_wrong_type_secret_is_never_echoed() {
        for (text, secret, path) in [
            ("auth:\n  client_tokens: TOKEN-abc\n", "TOKEN-abc", "auth.client_tokens"),
            ("upstream:\n  token: [tok-1, tok-2]\n", "tok-1", "upstream.token"),
            ("webhook:\n  secret: {k: hmac-42}\n", "hmac-42", "webhook.secret"),
            (
                "sinks:\n  - type: mqtt\n    url: mqtt://h:1\n    username: u\n    password: [987654]\n",
                "987654",
                "sinks[0].password",
            ),
            (
                "sinks:\n  - type: forward\n    url: http://h/\n    auth_token: {x: fwd-tok}\n",
                "fwd-tok",
                "sinks[0].auth_token",
            ),
        ] {
            let e = err(text);
            assert_eq!(e.path, path, "{e}");
            assert!(e.line.is_some(), "{e}");
            assert!(!e.to_string().contains(secret), "leaked: {e}");
            assert!(e.message.contains("secret"), "{e}");
        }
    }

    #[test]
    fn a_number_beyond_64_bits_names_its_key_and_the_range_and_never_echoes_a_secret() {
        let e = err("listen: 127.0.0.1:3001\nlog:\n  access_buffer_bytes: 99999999999999999999\n");
        assert_eq!(
            (e.path.as_str(), e.line),
            ("log.access_buffer_bytes", Some(3)),
            "{e}"
        );
        assert!(e.message.contains("out of range"), "{e}");
        assert!(e.message.contains("18446744073709551615"), "{e}");
        let e = err("upstream: {token: 123456789012345678901234567}\n");
        assert_eq!(e.path, "upstream.token", "{e}");
        assert!(!e.to_string().contains("1234567890"), "{e}");
        assert!(e.message.contains("quotes"), "{e}");
        let e = err("status:\n  max_instances: -99999999999999999999\n");
        assert_eq!(e.path, "status.max_instances", "{e}");
        assert!(e.message.contains("below zero"), "{e}");
    }

    #[test]
    fn syntax_errors_and_odd_documents_give_a_line() {
        let e = err("listen: [\n");
        assert!(e.line.is_some(), "{e}");
        let e = err("listen: 127.0.0.1:1\n---\nlisten: 127.0.0.1:2\n");
        assert!(e.message.contains("more than one"), "{e}");
        let e = err("- a\n- b\n");
        assert!(e.message.contains("mapping of config keys"), "{e}");
        let e = err("? [a, b]\n: 1\n");
        assert!(e.message.contains("plain word"), "{e}");
    }
}
