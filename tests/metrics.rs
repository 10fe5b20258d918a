//! `/metrics` over real traffic through the real binary (metrics issue).

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// Scrapes `url` and parses it with a Prometheus text parser.
fn scrape(url: &str) -> (String, prometheus_parse::Scrape) {
    let r = client().get(url).send().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text().unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("exposition text parses");
    (text, parsed)
}

/// Sum of `name`'s samples whose labels include all of `labels`.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            // A histogram counts as its number of observations (the +Inf bucket).
            prometheus_parse::Value::Histogram(ref buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count)
                .unwrap_or(0.0),
            _ => 0.0,
        })
        .sum()
}

#[test]
fn counters_match_fixture_traffic() {
    let dead = dead_upstream_url();
    let sc = Sidecar::start(
        &dead,
        &format!(
            "{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 0\nsinks:\n  - type: sse\n  - type: stdout\n    name: out\n"
        ),
    );
    for w in webhook_fixtures() {
        assert_eq!(post_signed(&sc, &w.body).status().as_u16(), 200);
    }
    let bad = post_webhook(
        &sc,
        &webhook_fixtures()[4].body,
        &[
            ("x-wa-hub-signature", &[b'0'; 64][..]),
            (
                "authorization",
                format!("Bearer {WEBHOOK_TOKEN}").as_bytes(),
            ),
        ],
    );
    assert_eq!(bad.status().as_u16(), 401);
    assert_eq!(
        client()
            .get(sc.url("/api/wahub/instances"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        502
    );

    let stdout_delivered = eventually(std::time::Duration::from_secs(10), || {
        let (_, s) = scrape(&sc.url("/metrics"));
        let v = value(
            &s,
            "wa_hub_sidecar_sink_deliveries_total",
            &[("sink", "out"), ("outcome", "delivered")],
        );
        (v > 0.0).then_some(s)
    })
    .expect("stdout sink deliveries counted");
    let s = stdout_delivered;
    assert_eq!(
        value(&s, "wa_hub_sidecar_webhooks_received_total", &[]),
        13.0
    );
    assert_eq!(
        value(
            &s,
            "wa_hub_sidecar_webhooks_received_total",
            &[("event", "qr"), ("signature", "valid")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &s,
            "wa_hub_sidecar_webhooks_rejected_total",
            &[("reason", "signature_invalid")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "wa_hub_sidecar_proxy_requests_total",
            &[("route", "/instances"), ("status_class", "5xx")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &s,
            "wa_hub_sidecar_upstream_errors_total",
            &[("kind", "connect_refused")]
        ),
        1.0
    );
    assert_eq!(value(&s, "wa_hub_sidecar_webhook_body_bytes", &[]), 14.0);
    assert_eq!(
        value(
            &s,
            "wa_hub_sidecar_instance_lifecycle_rank",
            &[("instance_id", "WASP-beta_shop")]
        ),
        0.0
    );
    assert_eq!(value(&s, "wa_hub_sidecar_instances", &[]), 2.0);
    assert!(
        value(
            &s,
            "wa_hub_sidecar_instance_seconds_since_last_event",
            &[("instance_id", "WASP-beta_shop")]
        ) >= 0.0
    );
    assert_eq!(value(&s, "wa_hub_sidecar_build_info", &[]), 1.0);
    assert!(value(&s, "wa_hub_sidecar_start_time_seconds", &[]) > 1.0e9);
    assert!(value(&s, "process_resident_memory_bytes", &[]) > 0.0);
    assert_eq!(
        value(&s, "wa_hub_sidecar_sink_queue_depth", &[("sink", "sse")]),
        0.0
    );
    assert_eq!(value(&s, "wa_hub_sidecar_sse_clients", &[]), 0.0);
}

#[test]
fn promtool_accepts_a_live_scrape() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    client()
        .get(sc.url("/api/wahub/instances/WASP-test_shop/client/status"))
        .send()
        .unwrap();
    let (text, _) = scrape(&sc.url("/metrics"));
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/alerts.yml");
    let out = Command::new(promtool())
        .args(["check", "rules", rules])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn upstream_up_follows_the_health_probe() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start_with(&up.base_url(), "  health_interval_ms: 100\n", "", &[]);
    let s = eventually(std::time::Duration::from_secs(10), || {
        let (_, s) = scrape(&sc.url("/metrics"));
        (value(&s, "wa_hub_sidecar_upstream_up", &[]) == 1.0).then_some(s)
    });
    assert!(s.is_some(), "upstream_up never became 1");
    let dead = Sidecar::start_with(&dead_upstream_url(), "  health_interval_ms: 100\n", "", &[]);
    let s = eventually(std::time::Duration::from_secs(10), || {
        let (_, s) = scrape(&dead.url("/metrics"));
        (value(&s, "wa_hub_sidecar_upstream_up", &[]) == 0.0).then_some(s)
    });
    assert!(s.is_some(), "upstream_up never became 0");
}

fn promtool() -> String {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "/usr/bin/promtool".into());
    assert!(
        std::path::Path::new(&promtool).exists(),
        "promtool not found at {promtool}: run ./scripts/setup.sh (installs Debian's prometheus)"
    );
    promtool
}

#[test]
fn route_labels_do_not_grow_with_distinct_paths() {
    let up = FakeUpstream::start();
    let sc = Sidecar::start(&up.base_url(), "");
    let c = client();
    for i in 0..300 {
        c.get(sc.url(&format!("/api/wahub/instances/inst-{i}/client/status")))
            .send()
            .unwrap();
        c.get(sc.url(&format!("/api/wahub/path{i}/x{i}")))
            .send()
            .unwrap();
        c.get(sc.url(&format!(
                "/api/wahub/{}",
                "abcdefghijklmnopqrstuvwxyz"
                    .chars()
                    .cycle()
                    .skip(i)
                    .take(1 + i % 20)
                    .collect::<String>()
            )))
        .send()
        .unwrap();
    }
    let (_, s) = scrape(&sc.url("/metrics"));
    let labels: HashSet<String> = s
        .samples
        .iter()
        .filter(|x| x.metric == "wa_hub_sidecar_proxy_requests_total")
        .filter_map(|x| x.labels.get("route").map(str::to_owned))
        .collect();
    assert!(
        labels.contains("/instances/:id/client/status"),
        "{labels:?}"
    );
    assert!(
        labels.len() <= 65,
        "{} route labels: {labels:?}",
        labels.len()
    );
    assert_eq!(
        value(
            &s,
            "wa_hub_sidecar_proxy_requests_total",
            &[("route", "/instances/:id/client/status")]
        ),
        300.0
    );
    assert_eq!(value(&s, "wa_hub_sidecar_proxy_requests_total", &[]), 900.0);
}

#[test]
fn metrics_listen_serves_only_metrics_without_client_token() {
    let port = free_port();
    let sc = Sidecar::start(
        &dead_upstream_url(),
        &format!("metrics_listen: 127.0.0.1:{port}\nauth:\n  client_tokens: [t]\n"),
    );
    let (_, s) = scrape(&format!("http://127.0.0.1:{port}/metrics"));
    assert_eq!(value(&s, "wa_hub_sidecar_build_info", &[]), 1.0);
    let r = client()
        .get(format!("http://127.0.0.1:{port}/api/wahub/instances"))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // On the main listener, /metrics honours client tokens.
    assert_eq!(
        client()
            .get(sc.url("/metrics"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let r = client()
        .get(sc.url("/metrics"))
        .bearer_auth("t")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
