//! Forward-sink throughput, and what a dead forward target costs webhook ingest.
//!
//! ```sh
//! cargo bench --bench forward
//! ```
//!
//! 1. **Forward throughput** (the sink behind its router, in process, to a loopback axum
//!    receiver that answers 200 at once): how fast webhooks get into the outbox (batched,
//!    fsynced commits, target down), how fast a pre-filled outbox is sent, and both together.
//! 2. **Ingest with the target down**: the release binary twice, with no sink and with one
//!    forward sink whose URL is a closed port, each loaded for a fixed time with signed
//!    `message` webhooks from the fixtures over keep-alive connections; accepted webhooks/s.
//!
//! Environment: `FORWARD_BENCH_EVENTS` (default 5000), `FORWARD_BENCH_SECS` per ingest run
//! (default 5), `FORWARD_BENCH_CONCURRENCY` (default 16), `FORWARD_BENCH_ROUNDS` (default 2).
//! Every loop is bounded in count or time; traffic stays on 127.0.0.1.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wa_hub_sinks::forward::{ForwardConfig, ForwardSink};
use wa_hub_sinks::{
    supervise, Bus, Filter, Payload, Router, Sink, SinkSpec, SinkStats, WebhookRecord,
};

const SECRET: &str = "wa-hub-fixture-secret";
const TOKEN: &str = "fixture-bearer-token";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The body of the first `message` webhook fixture (else the first fixture).
fn fixture_body() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/wa-hub/webhooks.jsonl");
    let text = std::fs::read_to_string(&path).expect("fixtures");
    let bodies: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("fixture line");
            v["body"].as_str().expect("body").to_owned()
        })
        .collect();
    bodies
        .iter()
        .find(|b| b.contains("\"event\":\"message\""))
        .unwrap_or(&bodies[0])
        .clone()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --all-targets` there is none: do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("forward bench: run with `cargo bench --bench forward`");
        return;
    }
    let events = env_num("FORWARD_BENCH_EVENTS", 5000);
    let secs = env_num("FORWARD_BENCH_SECS", 5);
    let concurrency = env_num("FORWARD_BENCH_CONCURRENCY", 16);
    let rounds = env_num("FORWARD_BENCH_ROUNDS", 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let body = fixture_body();
    println!("fixture body: {} bytes", body.len());
    rt.block_on(forward_throughput(events, &body));
    rt.block_on(ingest(secs, concurrency, rounds, &body));
}

async fn forward_throughput(n: u64, body: &str) {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().fallback(move || {
        let c = counter.clone();
        async move {
            c.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let config = |url: &str| {
        let mut cfg = ForwardConfig::new(url.parse().expect("url"));
        cfg.secret = Some(SECRET.into());
        cfg.outbox_path = Some(dir.path().join("bench.redb"));
        cfg.max_pending = (10 * n).max(1).try_into().expect("non-zero");
        cfg.backoff_initial_ms = 60_000.try_into().expect("non-zero");
        cfg
    };
    let raw = Bytes::from(body.to_owned());
    let payload: serde_json::Value = serde_json::from_str(body).expect("json");
    let record = |i: u64| {
        Payload::Webhook(WebhookRecord {
            id: format!("bench-{i}"),
            timestamp: "2026-11-29T00:00:00.000Z".into(),
            instance_id: Some(format!("WASP-{}", i % 8)),
            event: "message".into(),
            payload: payload.clone(),
            signature_valid: Some(true),
            summary: "message".into(),
            raw: raw.clone(),
            content_type: "application/json".into(),
        })
    };
    // Runs `sink` behind a router as the service does; returns the bus and the supervisor.
    let run = |sink: ForwardSink| {
        let (router, mut tasks) = Router::new(vec![SinkSpec {
            name: "bench".into(),
            kind: "forward",
            filter: Filter::default(),
            queue_capacity: n as usize,
            sink: Box::new(sink),
            stats: Arc::new(SinkStats::default()),
        }]);
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(supervise(tasks.remove(0), shutdown, Duration::from_secs(5)));
        (Bus::new(router), stop, task)
    };

    // A: ingest into the outbox through the router (batched, fsynced commits); target down.
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let stats = Arc::new(SinkStats::default());
    let sink = ForwardSink::new("bench", config(&dead), stats.clone()).expect("sink");
    let handle = sink.handle();
    let (bus, stop, task) = run(sink);
    let t = Instant::now();
    for i in 0..n {
        bus.router().dispatch(&bus.publish(record(i)));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while handle.pending() < n {
        assert!(Instant::now() < deadline, "outbox did not fill");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let persist = t.elapsed();
    let _ = stop.send(true);
    task.await.expect("supervisor");
    drop((handle, bus));

    // B: send a pre-filled outbox (POST, answer, remove).
    let stats = Arc::new(SinkStats::default());
    let mut sink = ForwardSink::new("bench", config(&url), stats.clone()).expect("sink");
    let handle = sink.handle();
    let t = Instant::now();
    sink.start().await.expect("start");
    wait_for(&received, n, &handle).await;
    let drain = t.elapsed();
    sink.stop().await;
    drop(sink);
    drop(handle);

    // C: both at once, through the router.
    let sink = ForwardSink::new("bench", config(&url), stats.clone()).expect("sink");
    let handle = sink.handle();
    let (bus, stop, task) = run(sink);
    let t = Instant::now();
    for i in n..2 * n {
        bus.router().dispatch(&bus.publish(record(i)));
    }
    wait_for(&received, 2 * n, &handle).await;
    let both = t.elapsed();
    let _ = stop.send(true);
    task.await.expect("supervisor");

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "\nforward sink, {n} events of {} bytes, receiver on loopback answering 200:",
        body.len()
    );
    println!(
        "  into the outbox via the router   {:>9.0} events/s  ({:.2} s)",
        rate(persist),
        persist.as_secs_f64()
    );
    println!(
        "  send from outbox (POST + remove) {:>9.0} events/s  ({:.2} s)",
        rate(drain),
        drain.as_secs_f64()
    );
    println!(
        "  store and send together          {:>9.0} events/s  ({:.2} s)",
        rate(both),
        both.as_secs_f64()
    );
    println!(
        "  retries {} dead letters {} dropped {}",
        stats.retries.load(Ordering::Relaxed),
        stats.dead_letters.load(Ordering::Relaxed),
        stats.dropped.load(Ordering::Relaxed)
    );
}

async fn wait_for(received: &AtomicU64, n: u64, handle: &wa_hub_sinks::forward::ForwardHandle) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < n || handle.pending() > 0 {
        assert!(Instant::now() < deadline, "forward bench did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sidecar(dir: &std::path::Path, sinks_yaml: &str) -> (Proc, u16) {
    let port = free_port();
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nthreads: 2\nupstream:\n  base_url: http://127.0.0.1:{}\n  token: k\nwebhook:\n  secret: {SECRET}\n  auth_token: {TOKEN}\nstatus:\n  qr_poll_interval_ms: 0\nlog:\n  level: error\n{sinks_yaml}",
        free_port()
    );
    let path = dir.join(format!("bench-{port}.yaml"));
    std::fs::write(&path, yaml).expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_wa-hub-sidecar"))
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sidecar");
    let proc = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sidecar did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (proc, port)
}

/// Posts signed `body` from `concurrency` keep-alive clients for `secs`; accepted per second.
async fn load(port: u16, pid: u32, body: &str, secs: u64, concurrency: u64) -> (f64, u64, f64) {
    let url = format!("http://127.0.0.1:{port}/api/wahub/webhook");
    let sig = wa_hub_sidecar::signature::sign(SECRET.as_bytes(), body.as_bytes());
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let run = |d: Duration| {
        let mut tasks = Vec::new();
        let stop = Instant::now() + d;
        for _ in 0..concurrency {
            let (client, url, sig, body) =
                (client.clone(), url.clone(), sig.clone(), body.to_owned());
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut bad) = (0u64, 0u64);
                while Instant::now() < stop {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-wa-hub-signature", &sig)
                        .bearer_auth(TOKEN)
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 200 => ok += 1,
                        _ => bad += 1,
                    }
                }
                (ok, bad)
            }));
        }
        tasks
    };
    for t in run(Duration::from_secs(1)) {
        let _ = t.await; // warm-up
    }
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let (mut ok, mut bad) = (0, 0);
    for t in run(Duration::from_secs(secs)) {
        let (o, b) = t.await.expect("load task");
        ok += o;
        bad += b;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    // CPU the sidecar spent per accepted webhook, µs (clock ticks are 10 ms).
    let cpu_us = (cpu_ticks(pid) - cpu0) as f64 * 10_000.0 / ok.max(1) as f64;
    (ok as f64 / elapsed, bad, cpu_us)
}

/// utime + stime of process `pid`, in clock ticks (Linux `/proc/<pid>/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    num(11) + num(12)
}

async fn ingest(secs: u64, concurrency: u64, rounds: u64, body: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let dead = format!("http://127.0.0.1:{}/hook", free_port());
    let forward_yaml = format!(
        "sinks:\n  - type: forward\n    name: fwd\n    url: {dead}\n    secret: s\n    backoff_initial_ms: 500\n    outbox_path: {}\n",
        dir.path().join("ingest.redb").display()
    );
    let scenarios = [
        ("no sink", "sinks: []\n".to_owned()),
        ("forward -> dead port", forward_yaml),
        (
            "stdout (reference)",
            "sinks:\n  - type: stdout\n    kinds: [webhook]\n".to_owned(),
        ),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); scenarios.len()];
    println!("\ningest, {concurrency} keep-alive clients, {secs} s per run, {rounds} rounds:");
    for round in 0..rounds {
        for (i, (name, yaml)) in scenarios.iter().enumerate() {
            let _ = std::fs::remove_file(dir.path().join("ingest.redb"));
            let (proc, port) = start_sidecar(dir.path(), yaml);
            let (rate, bad, cpu_us) = load(port, proc.0.id(), body, secs, concurrency).await;
            let outbox = if i == 1 {
                let v: serde_json::Value = reqwest::get(format!(
                    "http://127.0.0.1:{port}/api/sinks/fwd/dead-letters?limit=0"
                ))
                .await
                .and_then(|r| r.error_for_status())
                .expect("dead-letter route")
                .json()
                .await
                .expect("json");
                format!("  (outbox pending {})", v["pending"])
            } else {
                String::new()
            };
            drop(proc);
            println!(
                "  round {round} {name:<22} {rate:>9.0} webhooks/s  {cpu_us:>5.1} µs CPU/webhook  errors {bad}{outbox}"
            );
            results[i].push(rate);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let base = mean(&results[0]);
    for (i, (name, _)) in scenarios.iter().enumerate() {
        let m = mean(&results[i]);
        println!(
            "  mean {name:<22} {m:>9.0} webhooks/s  {:+.1}% vs no sink",
            (m / base - 1.0) * 100.0
        );
    }
}
