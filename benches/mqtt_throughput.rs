//! MQTT publish throughput of the MQTT sink to a local broker, at QoS 0 and QoS 1, in events/s.
//!
//! `cargo bench --bench mqtt_throughput` (broker `MQTT_BENCH_URL`, default
//! `mqtt://127.0.0.1:1883`; events per run `MQTT_BENCH_EVENTS`, default 100000).
//!
//! Each run goes the production path: `Bus::publish` of webhook events → router queue →
//! `MqttSink` → rumqttc → broker, with a rumqttc subscriber on the same broker counting what
//! arrives. Reported per QoS (median of 3 runs): "confirmed" = every event confirmed to the
//! sink (PUBACK at QoS 1, written at QoS 0), "received" = every event seen by the subscriber.
//! Under `cargo test --all-targets` (no `--bench` argument) it only prints how to run it.

use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::watch;
use wa_hub_sinks::config::build;
use wa_hub_sinks::mqtt::MqttConfig;
use wa_hub_sinks::{Bus, Payload, SinkConfig, SinkKind, WebhookRecord};

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("mqtt_throughput: run with `cargo bench --bench mqtt_throughput`");
        return;
    }
    let url = std::env::var("MQTT_BENCH_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".into());
    let events: u64 = std::env::var("MQTT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let hostport = url.trim_start_matches("mqtt://").to_owned();
    if TcpStream::connect(&hostport).is_err() {
        println!("mqtt_throughput: no broker at {url}; skipped");
        return;
    }
    let body = sample_body();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "mqtt_throughput: {events} webhook events of {} bytes to {url}",
        body.len()
    );
    for qos in [0u8, 1] {
        let mut confirmed = Vec::new();
        let mut received = Vec::new();
        for run in 0..3 {
            let (c, r) = runtime.block_on(one_run(&url, &hostport, qos, events, body.clone(), run));
            confirmed.push(c);
            received.push(r);
        }
        confirmed.sort_by(f64::total_cmp);
        received.sort_by(f64::total_cmp);
        println!(
            "QoS {qos}: confirmed {:>8.0} events/s, received by subscriber {:>8.0} events/s (median of 3; runs {:?} / {:?})",
            confirmed[1],
            received[1],
            confirmed.iter().map(|v| *v as u64).collect::<Vec<_>>(),
            received.iter().map(|v| *v as u64).collect::<Vec<_>>(),
        );
    }
}

/// The fixture `message` webhook body when the fixtures are there, else a similar one.
fn sample_body() -> Bytes {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/wa-hub/webhooks.jsonl");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["body"].as_str().map(str::to_owned))
                .find(|b| b.contains("\"event\":\"message\""))
        })
        .map(Bytes::from)
        .unwrap_or_else(|| {
            Bytes::from(
                serde_json::json!({"event": "message", "instanceId": "WASP-bench", "data": {"message": {"body": "x".repeat(400)}}})
                    .to_string(),
            )
        })
}

/// One run; returns (confirmed events/s, received events/s; 0 when the subscriber missed some).
async fn one_run(
    url: &str,
    hostport: &str,
    qos: u8,
    events: u64,
    body: Bytes,
    run: u32,
) -> (f64, f64) {
    let prefix = format!("wa-hub-bench/{}-{qos}-{run}", std::process::id());
    let cfg: MqttConfig = serde_json::from_value(serde_json::json!({
        "url": url,
        "qos": qos,
        "topic_prefix": prefix,
        "buffer_capacity": events,
    }))
    .expect("bench config");
    let sinks = build(&[SinkConfig {
        name: Some("mqtt".into()),
        kinds: Vec::new(),
        events: Vec::new(),
        instances: Vec::new(),
        queue_capacity: events as usize,
        kind: SinkKind::Mqtt(cfg),
    }])
    .expect("sink builds");
    let stats = sinks.router.snapshot()[0].stats.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for t in sinks.tasks {
        tasks.push(tokio::spawn(wa_hub_sinks::supervise(
            t,
            stop_rx.clone(),
            Duration::from_secs(10),
        )));
    }
    let bus = Bus::new(sinks.router);

    // Subscriber.
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    let mut opts = MqttOptions::new(
        format!("bench-sub-{}-{qos}-{run}", std::process::id()),
        host,
        port.parse().expect("port"),
    );
    opts.set_max_packet_size(1 << 24, 1 << 24);
    opts.set_inflight(1000);
    let (sub, mut sub_loop) = AsyncClient::new(opts, 100);
    let sub_qos = if qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    sub.subscribe(format!("{prefix}/+/events/#"), sub_qos)
        .await
        .expect("subscribe");
    let received = Arc::new(AtomicU64::new(0));
    let (subacked_tx, subacked_rx) = tokio::sync::oneshot::channel();
    let counter = received.clone();
    let sub_task = tokio::spawn(async move {
        let mut subacked = Some(subacked_tx);
        loop {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subacked.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(10), subacked_rx).await;
    // Sink connected.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.connected() != Some(true) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    for i in 0..events {
        bus.publish(Payload::Webhook(WebhookRecord {
            id: i.to_string(),
            timestamp: "2026-11-29T00:00:00.000Z".into(),
            instance_id: Some("WASP-bench".into()),
            event: "message".into(),
            payload: serde_json::Value::Null,
            signature_valid: Some(true),
            summary: String::new(),
            raw: body.clone(),
            content_type: "application/json".into(),
        }));
        if i % 1024 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let mut confirmed_at = None;
    let mut received_at = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    // The subscriber's broker queue can drop messages (mosquitto: max_queued_messages): stop
    // waiting for it 2 s after its count last moved.
    let mut last_count = (0, Instant::now());
    while (confirmed_at.is_none() || received_at.is_none()) && Instant::now() < deadline {
        let count = received.load(Ordering::Relaxed);
        if count != last_count.0 {
            last_count = (count, Instant::now());
        } else if confirmed_at.is_some() && last_count.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        if confirmed_at.is_none()
            && stats.delivered.load(Ordering::Relaxed) + stats.dropped.load(Ordering::Relaxed)
                >= events
            && stats.pending.load(Ordering::Relaxed) == 0
        {
            confirmed_at = Some(started.elapsed());
        }
        if received_at.is_none() && received.load(Ordering::Relaxed) >= events {
            received_at = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let dropped = stats.dropped.load(Ordering::Relaxed);
    if dropped > 0 || received_at.is_none() || confirmed_at.is_none() {
        println!(
            "  run {run} QoS {qos}: dropped {dropped}, pending {}, received {} of {events}",
            stats.pending.load(Ordering::Relaxed),
            received.load(Ordering::Relaxed)
        );
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // Leave no retained availability behind on the broker.
    let _ = sub
        .publish(
            format!("{prefix}/sidecar/availability"),
            QoS::AtLeastOnce,
            true,
            Vec::new(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = sub.disconnect().await;
    sub_task.abort();
    let rate = |d: Option<Duration>| d.map_or(0.0, |d| events as f64 / d.as_secs_f64());
    (rate(confirmed_at), rate(received_at))
}
