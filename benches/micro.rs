//! Criterion micro-benchmarks: webhook signature verification (against raw SHA-256 of the same
//! bytes), one status-engine step, SSE frame encoding, and router fan-out.
//!
//! Run: `cargo bench --bench micro` (add a filter, e.g. `-- signature`).

use std::hint::black_box;
use std::sync::Arc;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::json;
use sha2::{Digest, Sha256};
use wa_hub_sidecar::signature::{sign, verify, Verifier};
use wa_hub_sidecar::status::StatusEngine;
use wa_hub_sinks::sse::encode_frame;
use wa_hub_sinks::{Bus, Filter, Kind, Payload, Router, Sink, SinkError, SinkSpec, WebhookRecord};

const SECRET: &[u8] = b"wa-hub-fixture-secret";

fn signature(c: &mut Criterion) {
    let mut g = c.benchmark_group("signature");
    for size in [1024usize, 64 * 1024] {
        let body = vec![b'x'; size];
        let sig = sign(SECRET, &body);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("verify", size), &body, |b, body| {
            b.iter(|| verify(SECRET, [sig.as_bytes()], black_box(body)))
        });
        let keyed = Verifier::new(SECRET);
        g.bench_with_input(BenchmarkId::new("verify_keyed", size), &body, |b, body| {
            b.iter(|| keyed.verify([sig.as_bytes()], black_box(body)))
        });
        g.bench_with_input(BenchmarkId::new("raw_sha256", size), &body, |b, body| {
            b.iter(|| Sha256::digest(black_box(body)))
        });
    }
    g.finish();
}

fn engine_step(c: &mut Criterion) {
    let mut e = StatusEngine::new(10_000);
    for i in 0..1000 {
        e.apply_webhook(&format!("WASP-{i}"), "ready", &json!({}), Utc::now());
    }
    let data = json!({"status": "CONNECTED"});
    let message = json!({"message": {"body": "Is my order #1042 shipped?"}});
    let now = Utc::now();
    let mut g = c.benchmark_group("engine");
    g.bench_function("lifecycle_change", |b| {
        let mut flip = false;
        b.iter(|| {
            flip = !flip;
            let (ev, d) = if flip {
                ("change_state", &data)
            } else {
                ("disconnected", &message)
            };
            black_box(e.apply_webhook("WASP-500", ev, d, now))
        })
    });
    g.bench_function("message_no_change", |b| {
        b.iter(|| black_box(e.apply_webhook("WASP-500", "message", &message, now)))
    });
    g.finish();
}

fn fixture_like_event(bus: &Bus, text: &str) -> Arc<wa_hub_sinks::Event> {
    let payload = json!({"event": "message", "instanceId": "WASP-acme-store_myshopify_com",
        "data": {"message": {"from": "201000000001", "body": text, "type": "chat"}}});
    let raw = bytes::Bytes::from(payload.to_string());
    bus.publish(Payload::Webhook(WebhookRecord {
        id: "0b9f6c1e-4d1f-4a3e-9d51-8a6b1f0e2c11".into(),
        timestamp: "2026-11-29T10:00:00.000Z".into(),
        instance_id: Some("WASP-acme-store_myshopify_com".into()),
        event: "message".into(),
        payload,
        signature_valid: Some(true),
        summary: "message @ WASP-acme-store_myshopify_com".into(),
        raw,
        content_type: "application/json".into(),
    }))
}

fn sse_frame(c: &mut Criterion) {
    let bus = Bus::new(Router::empty());
    let mut g = c.benchmark_group("sse_frame");
    g.bench_function("serialize_and_frame", |b| {
        b.iter(|| {
            // A fresh event each time: the envelope JSON is cached per event.
            let e = fixture_like_event(&bus, "Is my order #1042 shipped?");
            black_box(encode_frame(Some(e.id), e.envelope_json()))
        })
    });
    let e = fixture_like_event(&bus, "Is my order #1042 shipped?");
    g.bench_function("frame_cached_envelope", |b| {
        b.iter(|| black_box(encode_frame(Some(e.id), e.envelope_json())))
    });
    g.finish();
}

struct Null;

#[async_trait::async_trait]
impl Sink for Null {
    async fn deliver(&mut self, _: &Arc<wa_hub_sinks::Event>) -> Result<(), SinkError> {
        Ok(())
    }
}

fn router_fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("router_fanout");
    for sinks in [1usize, 4, 16] {
        let specs = (0..sinks)
            .map(|i| SinkSpec {
                name: format!("s{i}"),
                kind: "bench",
                // Half the sinks filter on event name and instance glob, as configs do.
                filter: if i % 2 == 0 {
                    Filter::default()
                } else {
                    Filter::new(&[Kind::Webhook], &["message".into()], &["WASP-*".into()]).unwrap()
                },
                queue_capacity: 1 << 16,
                sink: Box::new(Null),
                stats: Default::default(),
            })
            .collect();
        let (router, tasks) = Router::new(specs);
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        for t in tasks {
            rt.spawn(wa_hub_sinks::supervise(
                t,
                shutdown.clone(),
                std::time::Duration::from_secs(1),
            ));
        }
        // One prebuilt event: this measures the fan-out itself (filters and queue sends).
        let event = fixture_like_event(&Bus::new(Router::empty()), "hello");
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("dispatch", sinks), |b| {
            b.iter(|| router.dispatch(black_box(&event)))
        });
    }
    g.finish();
}

criterion_group!(benches, signature, engine_step, sse_frame, router_fanout);
criterion_main!(benches);
