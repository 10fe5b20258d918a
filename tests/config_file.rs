//! `config.yaml` at the repository root: it loads as it is, and it lists every key of the
//! configuration with its default (issue 14, item 13), commented out where it has no useful
//! value to show.

use std::collections::BTreeMap;

use serde_yaml::Value;
use wa_hub_sidecar::config::RawConfig;
use wa_hub_sinks::forward::ForwardConfig;
use wa_hub_sinks::mqtt::MqttConfig;
use wa_hub_sinks::sse::SseConfig;

const FILE: &str = include_str!("../config.yaml");

/// `(dotted path, default)` of every leaf of `v`; lists count as leaves.
fn leaves(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                let k = k.as_str().expect("string keys");
                let p = if prefix.is_empty() {
                    k.to_owned()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&p, v, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned(), v.clone());
        }
    }
}

/// A line of the file with indentation, comment marks and a list dash removed.
fn bare(line: &str) -> &str {
    let mut l = line.trim_start();
    while let Some(rest) = l.strip_prefix('#') {
        l = rest.trim_start();
    }
    l.strip_prefix("- ").unwrap_or(l)
}

/// The value written after `key:` on `line` (comment removed), as YAML.
fn written_value(line: &str, key: &str) -> Option<Value> {
    let rest = bare(line).strip_prefix(key)?.strip_prefix(':')?;
    let value = match rest.find(" #") {
        Some(i) => &rest[..i],
        None => rest,
    };
    Some(serde_yaml::from_str(value.trim()).unwrap_or(Value::Null))
}

/// Lines of the block that starts at the first line satisfying `start` and ends before the
/// next line satisfying `end`.
fn block<'a>(
    lines: &[&'a str],
    start: impl Fn(&str) -> bool,
    end: impl Fn(&str) -> bool,
) -> Vec<&'a str> {
    let Some(i) = lines.iter().position(|l| start(l)) else {
        return Vec::new();
    };
    lines[i + 1..]
        .iter()
        .take_while(|l| !end(l))
        .copied()
        .collect()
}

fn same(written: &Value, default: &Value) -> bool {
    match (written, default) {
        (_, Value::Null) => true,
        (Value::String(a), Value::String(b)) => a.trim_end_matches('/') == b.trim_end_matches('/'),
        // A secret's default is empty; the file shows `""`.
        (Value::Null, Value::String(b)) => b.is_empty(),
        (a, b) => a == b,
    }
}

/// Checks every key of `defaults` (a section's default value) against `block`.
fn check_block(section: &str, block: &[&str], defaults: &Value, missing: &mut Vec<String>) {
    let mut all = BTreeMap::new();
    leaves(section, defaults, &mut all);
    for (key, default) in all {
        // Looked up by its last part within the section's block.
        let last = key.rsplit('.').next().unwrap_or(&key);
        let found = block.iter().find_map(|l| written_value(l, last));
        match found {
            None => missing.push(format!("{key}: not listed")),
            Some(w) if !same(&w, &default) => missing.push(format!(
                "{key}: shows {} but the default is {}",
                serde_yaml::to_string(&w).unwrap().trim(),
                serde_yaml::to_string(&default).unwrap().trim()
            )),
            Some(_) => {}
        }
    }
}

#[test]
fn the_shipped_config_loads_as_it_is() {
    RawConfig::from_yaml(FILE).expect("config.yaml parses");
}

#[test]
fn every_key_is_listed_with_its_default() {
    let lines: Vec<&str> = FILE.lines().collect();
    let defaults = serde_yaml::to_value(RawConfig::default()).unwrap();
    let Value::Mapping(top) = &defaults else {
        panic!()
    };
    let top_keys: Vec<String> = top.keys().map(|k| k.as_str().unwrap().to_owned()).collect();
    let is_top = |l: &str, k: &str| {
        let t = l.trim_start_matches(['#', ' ']);
        // A top-level key: at column 0, or commented out at column 0.
        (l.starts_with(k) || l.starts_with('#') && !l.starts_with("#  "))
            && t.starts_with(&format!("{k}:"))
    };
    let mut missing = Vec::new();
    for (k, v) in top {
        let k = k.as_str().unwrap();
        if k == "sinks" {
            continue;
        }
        match v {
            Value::Mapping(_) => {
                let b = block(
                    &lines,
                    |l| is_top(l, k),
                    |l| top_keys.iter().any(|o| o != k && is_top(l, o)),
                );
                if b.is_empty() {
                    missing.push(format!("{k}: section not listed"));
                }
                check_block(k, &b, v, &mut missing);
            }
            _ => check_block(
                "",
                &lines,
                &Value::Mapping([(k.into(), v.clone())].into_iter().collect()),
                &mut missing,
            ),
        }
    }
    let sinks = block(&lines, |l| l.starts_with("sinks:"), |_| false);
    let sink_types: [(&str, Value); 3] = [
        ("sse", serde_yaml::to_value(SseConfig::default()).unwrap()),
        ("mqtt", serde_yaml::to_value(MqttConfig::default()).unwrap()),
        (
            "forward",
            serde_yaml::to_value(ForwardConfig::new(
                "https://crm.example/hooks/wa".parse().unwrap(),
            ))
            .unwrap(),
        ),
    ];
    for (t, v) in &sink_types {
        let b = block(
            &sinks,
            |l| bare(l) == format!("type: {t}") || bare(l).starts_with(&format!("type: {t} ")),
            |l| bare(l).starts_with("type: "),
        );
        check_block(&format!("sinks[type={t}]"), &b, v, &mut missing);
    }
    // The keys every sink entry takes.
    for key in ["name", "kinds", "events", "instances", "queue_capacity"] {
        if !sinks.iter().any(|l| written_value(l, key).is_some()) {
            missing.push(format!("sinks[].{key}: not listed"));
        }
    }
    assert!(missing.is_empty(), "config.yaml:\n{}", missing.join("\n"));
}
