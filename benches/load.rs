//! End-to-end load tool: drives the release sidecar over loopback and prints a JSON summary.
//!
//! Run: `./scripts/bench.sh` (installs wrk, nginx and Node when missing, then
//! `cargo bench --bench load -- --bench`). Options after `--`:
//! `--duration SECS` (10), `--connections N` (64), `--threads N` (2, sidecar and nginx workers),
//! `--sse-clients 1000,10000`, `--only proxy,webhook,sse`, `--rounds N` (3, proxy scenario),
//! `--out FILE` (also write the JSON).
//!
//! Scenarios, measured side by side in one run:
//! - **proxy**: for the status route, `/health` and a 50 KiB body: wrk GETs straight at a Node
//!   upstream, then through nginx configured alike (keep-alive upstream, `Authorization` set,
//!   same worker count) when installed, the bare Pingora proxy of `examples/bare_proxy.rs`
//!   (the floor: path rewrite and `Authorization`, nothing else) and the sidecar, one after
//!   another, `--rounds` times over; requests/s, latency percentiles, CPU µs per request of
//!   each proxy's process tree (from /proc/<pid>/stat), each the median over the rounds, and
//!   the ratios sidecar/bare and sidecar/nginx of the medians. Rounds interleave the proxies
//!   so a noisy spell on a shared machine lands on all three, not on one of them. The sidecar
//!   runs its shipped sinks and log settings (access log on, buffered); nginx logs access in a
//!   64 KiB buffer too.
//! - **webhook**: wrk POSTs of a signed fixture-shaped webhook with sinks `sse` and `stdout`
//!   (to /dev/null); webhooks/s and CPU µs per webhook (from /proc/<pid>/stat). wrk sends one
//!   body over and over, so the bench config turns the dedup window off (`dedup_window_secs:
//!   0`): every POST is stored and routed, as distinct webhooks are.
//! - **sse**: N clients connected to `/api/stream`; webhooks carrying a send timestamp are
//!   posted and every client's delivery latency is recorded (p50/p99), plus clients held and
//!   RSS per idle client.
//! - **idle RSS** of the sidecar right after start.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it does nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

const SECRET: &str = "wa-hub-fixture-secret";
const TOKEN: &str = "fixture-bearer-token";

struct Opts {
    duration: u64,
    connections: u32,
    threads: u32,
    sse_clients: Vec<usize>,
    only: Vec<String>,
    rounds: usize,
    out: Option<PathBuf>,
}

fn parse_opts() -> Option<Opts> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        return None;
    }
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Some(Opts {
        duration: get("--duration").and_then(|v| v.parse().ok()).unwrap_or(10),
        connections: get("--connections")
            .and_then(|v| v.parse().ok())
            .unwrap_or(64),
        threads: get("--threads").and_then(|v| v.parse().ok()).unwrap_or(2),
        sse_clients: get("--sse-clients")
            .unwrap_or_else(|| "1000,10000".into())
            .split(',')
            .filter_map(|v| v.trim().parse().ok())
            .collect(),
        only: get("--only")
            .map(|v| v.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        rounds: get("--rounds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
            .max(1),
        out: get("--out").map(PathBuf::from),
    })
}

fn main() {
    let Some(opts) = parse_opts() else {
        println!("load tool: run with `cargo bench --bench load` (skipped under cargo test)");
        return;
    };
    raise_fd_limit();
    let wants = |s: &str| opts.only.is_empty() || opts.only.iter().any(|o| o == s);
    let dir = tempfile::tempdir().expect("temp dir");
    let fixtures = fixtures_dir();
    let mut summary = json!({
        "machine": machine(),
        "duration_secs": opts.duration,
        "connections": opts.connections,
        "threads": opts.threads,
    });

    let node_port = free_port();
    let _node = Proc::spawn(
        "node",
        Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/upstream.js"))
            .arg(node_port.to_string())
            .arg(fixtures.join("api-responses.jsonl")),
    );
    wait_port(node_port);

    let sidecar = Sidecar::start(dir.path(), node_port, &opts);
    std::thread::sleep(Duration::from_millis(500));
    summary["idle_rss_kib"] = json!(rss_kib(sidecar.pid()));

    if wants("proxy") {
        summary["proxy"] = proxy_scenario(dir.path(), node_port, &sidecar, &opts);
        summary["rss_after_proxy_kib"] = json!(rss_kib(sidecar.pid()));
    }

    if wants("webhook") {
        let body = webhook_body("WASP-acme-store_myshopify_com", 0);
        let script = dir.path().join("webhook.lua");
        std::fs::write(&script, lua_post(&body)).unwrap();
        let before = cpu_ticks_tree(sidecar.pid());
        let mut result = wrk(
            &format!("http://127.0.0.1:{}/api/wahub/webhook", sidecar.port),
            &opts,
            Some(&script),
            &[],
        );
        let ticks = cpu_ticks_tree(sidecar.pid()).saturating_sub(before);
        let requests = result["requests"].as_f64().unwrap_or(0.0);
        result["cpu_us_per_webhook"] =
            json!(ticks as f64 * 1e6 / clock_ticks() / requests.max(1.0));
        summary["webhook_ingest"] = result;
        summary["rss_after_webhooks_kib"] = json!(rss_kib(sidecar.pid()));
    }

    if wants("sse") && !opts.sse_clients.is_empty() {
        // A fresh sidecar per run: clients then get an empty `initial`, and the RSS delta is
        // the clients' alone.
        drop(sidecar);
        let mut runs = Vec::new();
        for &n in &opts.sse_clients {
            let fresh = Sidecar::start(dir.path(), node_port, &opts);
            std::thread::sleep(Duration::from_millis(300));
            runs.push(sse_fanout(&fresh, n));
        }
        summary["sse_fanout"] = json!(runs);
    }

    let text = serde_json::to_string_pretty(&summary).unwrap();
    println!("{text}");
    if let Some(out) = &opts.out {
        std::fs::write(out, format!("{text}\n")).expect("write --out");
    }
}

/// The routes the proxy scenario drives: the status route (the reference), `/health`
/// (a tiny body) and a 50 KiB JSON body.
const PROXY_ROUTES: &[(&str, &str)] = &[
    ("status", "/instances/WASP-test_shop/client/status"),
    ("health", "/health"),
    ("body_50k", "/big"),
];

/// For each route: Node direct, then nginx, bare Pingora and the sidecar one after another,
/// `opts.rounds` times, each with req/s, latency p50/p99 and the proxy's CPU µs per request
/// (from /proc/<pid>/stat, the whole process tree). Per proxy: the round with the median CPU
/// per request (its wrk figures), the median req/s, every round's CPU and req/s; and the
/// ratios sidecar/bare and sidecar/nginx of the medians.
fn proxy_scenario(dir: &Path, node_port: u16, sidecar: &Sidecar, opts: &Opts) -> Value {
    let nginx = Nginx::start(dir, node_port, opts.threads);
    let bare = BareProxy::start(node_port, opts.threads);
    let mut out = json!({ "rounds": opts.rounds });
    for (name, path) in PROXY_ROUTES {
        let mut row = json!({});
        row["direct_node"] = wrk(
            &format!("http://127.0.0.1:{node_port}{path}"),
            opts,
            None,
            &["-H", "Authorization: Bearer testkey"],
        );
        let mut targets: Vec<(&str, u16, u32)> = Vec::new();
        if let Some(n) = &nginx {
            targets.push(("nginx", n.port, n.pid()));
        }
        if let Some(b) = &bare {
            targets.push(("bare_pingora", b.port, b.proc.0.id()));
        }
        targets.push(("sidecar", sidecar.port, sidecar.pid()));
        let mut runs: Vec<Vec<Value>> = vec![Vec::new(); targets.len()];
        for _ in 0..opts.rounds {
            for ((_, port, pid), runs) in targets.iter().zip(&mut runs) {
                let before = cpu_ticks_tree(*pid);
                let mut r = wrk(
                    &format!("http://127.0.0.1:{port}/api/wahub{path}"),
                    opts,
                    None,
                    &[],
                );
                let ticks = cpu_ticks_tree(*pid).saturating_sub(before);
                let requests = r["requests"].as_f64().unwrap_or(0.0);
                r["cpu_us_per_request"] =
                    json!(ticks as f64 * 1e6 / clock_ticks() / requests.max(1.0));
                runs.push(r);
            }
        }
        for ((label, _, _), runs) in targets.iter().zip(runs) {
            row[*label] = median_run(runs);
        }
        let ratio = |a: &str, b: &str, field: &str| match (
            row[a][field].as_f64(),
            row[b][field].as_f64(),
        ) {
            (Some(x), Some(y)) if y > 0.0 => json!(x / y),
            _ => Value::Null,
        };
        row["ratios"] = json!({
            "cpu_sidecar_vs_bare": ratio("sidecar", "bare_pingora", "cpu_us_per_request"),
            "cpu_sidecar_vs_nginx": ratio("sidecar", "nginx", "cpu_us_per_request"),
            "rps_sidecar_vs_bare": ratio("sidecar", "bare_pingora", "requests_per_sec"),
            "rps_sidecar_vs_nginx": ratio("sidecar", "nginx", "requests_per_sec"),
            "rps_bare_vs_nginx": ratio("bare_pingora", "nginx", "requests_per_sec"),
        });
        out[*name] = row;
    }
    out
}

/// One proxy's rounds as one result: the wrk figures of the round with the median CPU per
/// request, `requests_per_sec` replaced by the median over the rounds, and every round's
/// `cpu_us_per_request_rounds` and `requests_per_sec_rounds`.
fn median_run(mut runs: Vec<Value>) -> Value {
    let field = |r: &Value, f: &str| r[f].as_f64().unwrap_or(f64::NAN);
    let cpu: Vec<f64> = runs
        .iter()
        .map(|r| field(r, "cpu_us_per_request"))
        .collect();
    let rps: Vec<f64> = runs.iter().map(|r| field(r, "requests_per_sec")).collect();
    let mut rps_sorted = rps.clone();
    rps_sorted.sort_by(f64::total_cmp);
    runs.sort_by(|a, b| field(a, "cpu_us_per_request").total_cmp(&field(b, "cpu_us_per_request")));
    let mut median = runs.swap_remove(runs.len() / 2);
    median["requests_per_sec"] = json!(rps_sorted[rps_sorted.len() / 2]);
    median["cpu_us_per_request_rounds"] = json!(cpu);
    median["requests_per_sec_rounds"] = json!(rps);
    median
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU ticks of `pid` and its children (nginx's workers), from /proc.
fn cpu_ticks_tree(pid: u32) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for e in entries.flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) start at its closing ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ppid: u32 = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        if p == pid || ppid == pid {
            let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
            let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
            total += utime + stime;
        }
    }
    total
}

/// The bare Pingora proxy of `examples/bare_proxy.rs` (built by `scripts/bench.sh`); `None`
/// when its binary is missing.
struct BareProxy {
    proc: Proc,
    port: u16,
}

impl BareProxy {
    fn start(node_port: u16, threads: u32) -> Option<Self> {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        let bin = target.join("release/examples/bare_proxy");
        if !bin.exists() {
            eprintln!(
                "load: {} missing (cargo build --release --example bare_proxy)",
                bin.display()
            );
            return None;
        }
        let port = free_port();
        let proc = Proc::spawn(
            "bare_proxy",
            Command::new(bin).args([
                format!("127.0.0.1:{port}"),
                format!("127.0.0.1:{node_port}"),
                "testkey".to_owned(),
                threads.to_string(),
            ]),
        );
        wait_port(port);
        Some(BareProxy { proc, port })
    }
}

fn fixtures_dir() -> PathBuf {
    std::env::var_os("WA_HUB_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/wa-hub"))
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    json!({ "cpu": cpu, "cores": cores, "memory": mem })
}

fn raise_fd_limit() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        // A connect to a port nothing listens on can connect to itself (the kernel may pick
        // that port as the source port): that is not the server.
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect(addr).is_ok_and(|s| s.local_addr().is_ok_and(|l| l != addr))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

/// A child process killed on drop.
struct Proc(Child);

impl Proc {
    fn spawn(what: &str, cmd: &mut Command) -> Self {
        Proc(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {what}: {e}")),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Sidecar {
    proc: Proc,
    port: u16,
}

impl Sidecar {
    fn start(dir: &Path, node_port: u16, opts: &Opts) -> Self {
        let port = free_port();
        let max_clients = opts.sse_clients.iter().max().copied().unwrap_or(0).max(100) * 2;
        let config = format!(
            "listen: 127.0.0.1:{port}\nmetrics_listen: null\nthreads: {threads}\n\
             upstream:\n  base_url: http://127.0.0.1:{node_port}\n  token: testkey\n  health_interval_ms: 0\n\
             webhook:\n  secret: {SECRET}\n  auth_token: {TOKEN}\n  dedup_window_secs: 0\n\
             status:\n  qr_poll_interval_ms: 0\n\
             sinks:\n  - type: sse\n    max_clients: {max_clients}\n    heartbeat_ms: 60000\n  - type: stdout\n    kinds: [webhook, status]\n",
            threads = opts.threads,
        );
        let path = dir.join("sidecar.yaml");
        std::fs::write(&path, config).unwrap();
        // `WA_HUB_SIDECAR_BIN`: another build to measure (e.g. a saved copy of an earlier
        // commit, for a before/after comparison in one run).
        let bin = std::env::var_os("WA_HUB_SIDECAR_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wa-hub-sidecar")));
        let proc = Proc::spawn(
            "wa-hub-sidecar",
            Command::new(bin).arg("--config").arg(&path),
        );
        wait_port(port);
        Sidecar { proc, port }
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

struct Nginx {
    proc: Proc,
    port: u16,
}

impl Nginx {
    /// The master's pid (its workers are its children).
    fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

/// nginx's master stops its workers only when asked: a SIGKILL (`Proc`'s drop) left both
/// workers running, holding their port and their memory, in every later run.
impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.pid()) {
            // SAFETY: a plain signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if matches!(self.proc.0.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Nginx {
    /// nginx configured like the sidecar: same worker count, keep-alive upstream, the
    /// `Authorization` header set, and an access log buffered like the sidecar's (64 KiB,
    /// flushed every second), written to `/dev/null` as the sidecar's stderr is. `None` when
    /// nginx is not installed.
    fn start(dir: &Path, node_port: u16, workers: u32) -> Option<Self> {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())?;
        let port = free_port();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs")).unwrap();
        let conf = format!(
            "worker_processes {workers};\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log warn;\n\
             events {{ worker_connections 16384; }}\n\
             http {{\n  access_log /dev/null combined buffer=64k flush=1s;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
               upstream wahub {{ server 127.0.0.1:{node_port}; keepalive 64; keepalive_timeout 4s; }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    location /api/wahub/ {{\n\
                 proxy_pass http://wahub/;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_set_header Authorization \"Bearer testkey\";\n\
                 proxy_connect_timeout 2s;\n      proxy_read_timeout 30s;\n    }}\n  }}\n}}\n",
            p = prefix.display()
        );
        let path = prefix.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        let proc = Proc::spawn(
            "nginx",
            Command::new(bin)
                .arg("-p")
                .arg(&prefix)
                .arg("-c")
                .arg(&path)
                .args(["-g", "daemon off;"]),
        );
        wait_port(port);
        Some(Nginx { proc, port })
    }
}

/// Runs wrk and returns requests/s and latency percentiles (ms).
fn wrk(url: &str, opts: &Opts, script: Option<&Path>, extra: &[&str]) -> Value {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t", "2", "-c"])
        .arg(opts.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", opts.duration))
        .arg("--latency");
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.args(extra).arg(url);
    let out = cmd.output().expect("run wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let find = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    let non2xx = find("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let errors = text
        .lines()
        .find(|l| l.trim().starts_with("Socket errors"))
        .map(str::trim)
        .map(str::to_owned);
    let requests = text
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    json!({
        "requests": requests,
        "requests_per_sec": find("Requests/sec:").and_then(|v| v.parse::<f64>().ok()),
        "latency_p50_ms": find("50%").map(|v| to_ms(&v)),
        "latency_p90_ms": find("90%").map(|v| to_ms(&v)),
        "latency_p99_ms": find("99%").map(|v| to_ms(&v)),
        "non_2xx": non2xx,
        "socket_errors": errors,
    })
}

fn to_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => n,
    }
}

fn webhook_body(instance: &str, sent_ns: u128) -> String {
    json!({
        "event": "message",
        "instanceId": instance,
        "data": {"message": {"from": "201000000001", "body": "Is my order #1042 shipped?",
            "text": "Is my order #1042 shipped?", "type": "chat", "timestamp": 1764400000,
            "id": "false_201000000001@c.us_3EB0A1B2C3D4E5F6", "sentNs": sent_ns.to_string()}}
    })
    .to_string()
}

fn lua_post(body: &str) -> String {
    let sig = wa_hub_sidecar::signature::sign(SECRET.as_bytes(), body.as_bytes());
    format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"x-wa-hub-signature\"] = \"{sig}\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\n"
    )
}

fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

/// Connects `n` SSE clients, posts timestamped webhooks, and measures delivery latency.
fn sse_fanout(sidecar: &Sidecar, n: usize) -> Value {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let port = sidecar.port;
    let events = 20usize;
    let rss_before = rss_kib(sidecar.pid()).unwrap_or(0);
    let (lat_tx, lat_rx) = std::sync::mpsc::channel::<(usize, Vec<f64>)>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<bool>();
    // Clients hold their connection until every latency is in: a client that closes as soon as
    // it has its last event would make the sidecar serve closes while it still fans that event
    // out to the rest, which measured the teardown, not the fan-out.
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let connect_started = Instant::now();
    for i in 0..n {
        let lat_tx = lat_tx.clone();
        let ready_tx = ready_tx.clone();
        let mut done = done_rx.clone();
        rt.spawn(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                let _ = ready_tx.send(false);
                return;
            };
            if s.write_all(b"GET /api/stream?scope=global HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .is_err()
            {
                let _ = ready_tx.send(false);
                return;
            }
            let mut r = tokio::io::BufReader::new(s);
            let mut line = String::new();
            let mut ready = false;
            let mut lats = Vec::with_capacity(events);
            loop {
                line.clear();
                match tokio::time::timeout(Duration::from_secs(120), r.read_line(&mut line)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => break,
                }
                if !ready && line.contains("\"type\":\"initial\"") {
                    ready = true;
                    let _ = ready_tx.send(true);
                }
                if !ready {
                    continue;
                }
                if let Some(pos) = line.find("\"sentNs\":\"") {
                    let rest = &line[pos + 10..];
                    if let Some(end) = rest.find('"') {
                        if let Ok(sent) = rest[..end].parse::<u128>() {
                            lats.push((now_ns().saturating_sub(sent)) as f64 / 1e6);
                            if lats.len() == events {
                                break;
                            }
                        }
                    }
                }
            }
            if !ready {
                let _ = ready_tx.send(false);
            }
            let _ = lat_tx.send((i, lats));
            let _ = done.wait_for(|d| *d).await;
        });
    }
    drop(lat_tx);
    let mut connected = 0;
    for _ in 0..n {
        match ready_rx.recv_timeout(Duration::from_secs(120)) {
            Ok(true) => connected += 1,
            Ok(false) => {}
            Err(_) => break,
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss_idle = rss_kib(sidecar.pid()).unwrap_or(0);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let cpu_before = cpu_ticks_tree(sidecar.pid());
    for _ in 0..events {
        let body = webhook_body("WASP-fanout", now_ns());
        let sig = wa_hub_sidecar::signature::sign(SECRET.as_bytes(), body.as_bytes());
        let _ = client
            .post(format!("http://127.0.0.1:{port}/api/wahub/webhook"))
            .header("content-type", "application/json")
            .header("x-wa-hub-signature", sig)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(body)
            .send();
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut all = Vec::with_capacity(n * events);
    let mut by_event: Vec<Vec<f64>> = (0..events).map(|_| Vec::with_capacity(n)).collect();
    let mut complete = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok((_, lats)) =
        lat_rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
    {
        if lats.len() == events {
            complete += 1;
        }
        for (k, l) in lats.iter().enumerate() {
            by_event[k].push(*l);
        }
        all.extend(lats);
        if complete == connected {
            break;
        }
    }
    // The sidecar's CPU over the posting loop (the 250 ms gaps included: it idles there).
    let cpu_ticks = cpu_ticks_tree(sidecar.pid()).saturating_sub(cpu_before);
    let _ = done_tx.send(true);
    rt.shutdown_timeout(Duration::from_secs(1));
    let delivered = all.len().max(1) as f64;
    // The p99 of each event on its own: shows whether the tail is one slow event or all.
    let p99_by_event: Vec<f64> = by_event
        .iter_mut()
        .map(|v| {
            v.sort_by(|a, b| a.total_cmp(b));
            v.get(((v.len() as f64 - 1.0) * 0.99).round() as usize)
                .copied()
                .unwrap_or(0.0)
        })
        .collect();
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize)
            .copied()
    };
    let per_client = (rss_idle.saturating_sub(rss_before) as f64) / (connected.max(1) as f64);
    json!({
        "clients": n,
        "clients_held": connected,
        "clients_received_all": complete,
        "connect_secs": connect_secs,
        "events": events,
        "latency_p50_ms": pct(0.5),
        "latency_p99_ms": pct(0.99),
        "latency_max_ms": all.last(),
        "latency_p99_ms_by_event": p99_by_event,
        "cpu_us_per_delivery": cpu_ticks as f64 * 1e6 / clock_ticks() / delivered,
        "rss_before_kib": rss_before,
        "rss_with_clients_kib": rss_idle,
        "rss_per_idle_client_kib": per_client,
    })
}
