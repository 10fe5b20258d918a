//! The MQTT sink through the real binary, against a real broker, with real subscriber clients
//! (MQTT issue).
//!
//! The broker is rumqttd, embedded in a child process (this test binary started again with
//! `MQTT_EMBEDDED_BROKER_PORT`; see [`embedded_broker_process`]), so it can be killed and
//! restarted on the same port. With `MQTT_TEST_URL=mqtt://host:port` set, the tests use that
//! broker instead (unique topic prefixes per test), except the broker-outage scenario, which
//! always starts its own embedded broker on a free port so that it can stop and restart it.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rumqttc::{Client, Event, MqttOptions, Packet, Publish, QoS};
use serde_json::{json, Value};
use wa_hub_sinks::mqtt::{decode_level, encode_level};

const T: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Broker

/// The broker the tests use: rumqttd in a child process, or `MQTT_TEST_URL`.
struct Broker {
    host: String,
    port: u16,
    embedded: Option<Child>,
    /// Forwarded publishes seen by the embedded broker's own subscriber (when asked for).
    seen: Option<mpsc::Receiver<(String, Vec<u8>)>>,
}

impl Broker {
    /// `MQTT_TEST_URL`'s broker, else a new embedded one.
    fn start() -> Self {
        match external_url() {
            Some((host, port)) => Self {
                host,
                port,
                embedded: None,
                seen: None,
            },
            None => Self::embedded(free_port(), None),
        }
    }

    /// An embedded broker on `port`; with `watch`, its in-process subscriber to that filter
    /// (subscribed before the listener opens) reports every publish on [`Broker::seen`].
    fn embedded(port: u16, watch: Option<&str>) -> Self {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.args([
            "--exact",
            "embedded_broker_process",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("MQTT_EMBEDDED_BROKER_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if let Some(filter) = watch {
            cmd.env("MQTT_EMBEDDED_BROKER_WATCH", filter);
        }
        let mut child = cmd.spawn().expect("spawn embedded broker");
        let stdout = child.stdout.take().expect("broker stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut parts = line.splitn(3, '\t');
                if parts.next() != Some("FWD") {
                    continue;
                }
                let (Some(topic), Some(payload)) = (parts.next(), parts.next()) else {
                    continue;
                };
                let payload: String = serde_json::from_str(payload).unwrap_or_default();
                if tx.send((topic.to_owned(), payload.into_bytes())).is_err() {
                    return;
                }
            }
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let up = eventually(T, || listening(addr).then_some(()));
        assert!(up.is_some(), "embedded broker did not listen on {port}");
        Self {
            host: "127.0.0.1".into(),
            port,
            embedded: Some(child),
            seen: watch.map(|_| rx),
        }
    }

    fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host, self.port)
    }

    /// Kills the embedded broker (all its state is gone) and waits until the port is closed.
    fn kill(&mut self) {
        if let Some(mut c) = self.embedded.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let down = eventually(T, || TcpStream::connect(addr).is_err().then_some(()));
        assert!(down.is_some(), "broker port still open after kill");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.embedded.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn external_url() -> Option<(String, u16)> {
    let raw = std::env::var("MQTT_TEST_URL")
        .ok()
        .filter(|s| !s.is_empty())?;
    let rest = raw
        .strip_prefix("mqtt://")
        .unwrap_or_else(|| panic!("MQTT_TEST_URL must be mqtt://host:port, got {raw}"));
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
    Some((
        host.to_owned(),
        port.trim_end_matches('/')
            .parse()
            .expect("MQTT_TEST_URL port"),
    ))
}

/// Not a test: the body of the embedded broker's process. Does nothing unless started by
/// [`Broker::embedded`] (which sets `MQTT_EMBEDDED_BROKER_PORT`).
#[test]
#[ignore = "the embedded broker's process; started by the MQTT tests themselves"]
fn embedded_broker_process() {
    let Some(port) = std::env::var("MQTT_EMBEDDED_BROKER_PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
    else {
        return;
    };
    let mut v4 = HashMap::new();
    v4.insert(
        "1".to_owned(),
        rumqttd::ServerSettings {
            name: "v4".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            tls: None,
            next_connection_delay_ms: 1,
            connections: rumqttd::ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: 20 * 1024 * 1024,
                max_inflight_count: 1000,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        },
    );
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 10_000,
            max_segment_size: 64 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(v4),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    if let Ok(filter) = std::env::var("MQTT_EMBEDDED_BROKER_WATCH") {
        let (mut link_tx, mut link_rx) = broker.link("embedded-watcher").expect("link");
        link_tx.subscribe(filter).expect("subscribe");
        // The subscription is in place before any client can connect.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match link_rx.recv_deadline(deadline) {
                Ok(Some(rumqttd::Notification::DeviceAck(_))) => {
                    println!("WATCHING");
                    break;
                }
                Ok(_) => continue,
                Err(_) => {
                    println!("NOT ACKNOWLEDGED");
                    break;
                }
            }
        }
        std::thread::spawn(move || {
            use std::io::Write;
            let out = std::io::stdout();
            loop {
                match link_rx.recv() {
                    Ok(Some(rumqttd::Notification::Forward(f))) => {
                        let topic = String::from_utf8_lossy(&f.publish.topic).into_owned();
                        let payload = String::from_utf8_lossy(&f.publish.payload).into_owned();
                        let line = format!(
                            "FWD\t{topic}\t{}\n",
                            serde_json::to_string(&payload).unwrap_or_default()
                        );
                        let mut lock = out.lock();
                        let _ = lock.write_all(line.as_bytes());
                        let _ = lock.flush();
                    }
                    // The router's buffer for this link filled while the watcher was behind (a
                    // busy machine): it stops forwarding until told the link is ready again.
                    Ok(Some(rumqttd::Notification::Unschedule)) => {
                        if link_rx.ready().is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
    }
    // Blocks for the life of the process; the tests kill it.
    let _ = broker.start();
}

// ---------------------------------------------------------------------------------------
// Subscriber

/// A real MQTT subscriber (rumqttc), connected and subscribed when returned.
struct Subscriber {
    client: Client,
    rx: mpsc::Receiver<Publish>,
    closing: Arc<AtomicBool>,
}

impl Subscriber {
    fn connect(broker: &Broker, filters: &[&str]) -> Self {
        let id = format!("test-sub-{}-{:08x}", std::process::id(), rand_u32());
        let mut opts = MqttOptions::new(id, broker.host.clone(), broker.port);
        opts.set_max_packet_size(32 * 1024 * 1024, 32 * 1024 * 1024);
        opts.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(opts, 1000);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).expect("subscribe");
        }
        let (tx, rx) = mpsc::channel();
        let (ack_tx, ack_rx) = mpsc::channel();
        let closing = Arc::new(AtomicBool::new(false));
        let closing2 = closing.clone();
        std::thread::spawn(move || {
            for ev in connection.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = ack_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => {
                        if closing2.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        });
        for _ in filters {
            ack_rx
                .recv_timeout(T)
                .expect("SUBACK from the broker within 15 s");
        }
        Self {
            client,
            rx,
            closing,
        }
    }

    /// The next publish whose topic satisfies `pred`, skipping others; `None` after `timeout`.
    fn next_where(&self, timeout: Duration, pred: impl Fn(&Publish) -> bool) -> Option<Publish> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(p) if pred(&p) => return Some(p),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Waits for a publish on exactly `topic`.
    fn next_on(&self, topic: &str, timeout: Duration) -> Option<Publish> {
        self.next_where(timeout, |p| p.topic == topic)
    }

    /// Everything received within `d`.
    fn drain_for(&self, d: Duration) -> Vec<Publish> {
        let deadline = Instant::now() + d;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(p) => out.push(p),
                Err(_) => break,
            }
        }
        out
    }

    /// Removes retained messages (empty retained publish), so an external broker is left clean.
    fn clear_retained(&self, topics: &[String]) {
        for t in topics {
            let _ = self
                .client
                .publish(t.as_str(), QoS::AtLeastOnce, true, Vec::new());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }
}

/// Ends the sidecar (its Last Will goes out) before a test clears its retained topics.
fn stop_before_cleanup(sc: Sidecar) {
    drop(sc);
    std::thread::sleep(Duration::from_millis(300));
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u32
}

// ---------------------------------------------------------------------------------------
// Sidecar with an MQTT sink

/// A topic prefix no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    format!(
        "wa-hub-test/{test}-{}-{:08x}",
        std::process::id(),
        rand_u32()
    )
}

fn dead_upstream() -> String {
    dead_upstream_url()
}

/// A sidecar whose only sinks are an MQTT sink (with `mqtt_yaml` keys added, 4-space indent)
/// and `extra_sinks` entries.
fn sidecar(broker: &Broker, prefix: &str, mqtt_yaml: &str, extra_sinks: &str) -> Sidecar {
    let defaults: String = [
        "keep_alive_secs: 2",
        "reconnect_min_ms: 100",
        "reconnect_max_ms: 1000",
    ]
    .iter()
    .filter(|kv| !mqtt_yaml.contains(kv.split(':').next().unwrap_or_default()))
    .map(|kv| format!("    {kv}\n"))
    .collect();
    Sidecar::start(
        &dead_upstream(),
        &format!(
            "{FIXTURE_WEBHOOK_YAML}status:\n  qr_poll_interval_ms: 0\nsinks:\n  - type: mqtt\n    url: {}\n    topic_prefix: {prefix}\n{defaults}{mqtt_yaml}{extra_sinks}",
            broker.url()
        ),
    )
}

fn availability(prefix: &str) -> String {
    format!("{prefix}/sidecar/availability")
}

fn fixture_bodies() -> Vec<String> {
    webhook_fixtures().into_iter().map(|w| w.body).collect()
}

fn instance_and_event(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).expect("fixture JSON");
    (
        v["instanceId"].as_str().unwrap_or_default().to_owned(),
        v["event"].as_str().unwrap_or("unknown").to_owned(),
    )
}

fn api_status(sc: &Sidecar, instance: &str) -> Value {
    let (code, v) = get_json(
        sc,
        &format!("/api/instances/{}/status", encode_path(instance)),
    );
    assert_eq!(code, 200, "status of {instance}: {v}");
    v
}

fn encode_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests

#[test]
fn fixture_webhooks_arrive_on_their_event_topics_byte_for_byte() {
    let broker = Broker::start();
    let prefix = unique_prefix("fixtures");
    let sub = Subscriber::connect(&broker, &[&format!("{prefix}/#")]);
    let sc = sidecar(&broker, &prefix, "", "");
    let online = sub.next_on(&availability(&prefix), T).expect("online");
    assert_eq!(online.payload.as_ref(), b"online");

    let bodies = fixture_bodies();
    for b in &bodies {
        assert_eq!(post_signed(&sc, b).status().as_u16(), 200);
    }
    let mut events = Vec::new();
    let mut statuses: HashMap<String, Value> = HashMap::new();
    while events.len() < bodies.len() {
        let p = sub
            .next_where(T, |p| {
                p.topic.contains("/events/") || p.topic.ends_with("/status")
            })
            .unwrap_or_else(|| {
                panic!(
                    "only {} of {} events arrived:\n{}",
                    events.len(),
                    bodies.len(),
                    sc.log()
                )
            });
        if p.topic.ends_with("/status") {
            assert!(
                p.qos == QoS::AtLeastOnce,
                "statuses are published at the configured QoS 1"
            );
            statuses.insert(
                p.topic.clone(),
                serde_json::from_slice(&p.payload).expect("status JSON"),
            );
        } else {
            events.push(p);
        }
    }
    for (p, body) in events.iter().zip(&bodies) {
        let (instance, event) = instance_and_event(body);
        assert_eq!(
            p.topic,
            format!("{prefix}/{instance}/events/{event}"),
            "topic of {event}"
        );
        assert_eq!(
            p.payload.as_ref(),
            body.as_bytes(),
            "payload of {event} is the original body"
        );
    }
    // The last status of each instance equals what the API reports (both are final once the
    // webhooks were answered; the statuses may still be on their way).
    let want: HashMap<String, Value> = ["WASP-acme-store_myshopify_com", "WASP-beta_shop"]
        .iter()
        .map(|i| (format!("{prefix}/{i}/status"), api_status(&sc, i)))
        .collect();
    let deadline = Instant::now() + T;
    while want.iter().any(|(t, v)| statuses.get(t) != Some(v)) && Instant::now() < deadline {
        if let Some(p) =
            sub.next_where(Duration::from_millis(200), |p| p.topic.ends_with("/status"))
        {
            statuses.insert(p.topic.clone(), serde_json::from_slice(&p.payload).unwrap());
        }
    }
    for (topic, v) in &want {
        assert_eq!(statuses.get(topic), Some(v), "{topic}");
    }
    stop_before_cleanup(sc);
    sub.clear_retained(&[
        availability(&prefix),
        format!("{prefix}/WASP-acme-store_myshopify_com/status"),
        format!("{prefix}/WASP-beta_shop/status"),
    ]);
}

#[test]
fn late_subscriber_gets_the_retained_status_and_availability() {
    let broker = Broker::start();
    let prefix = unique_prefix("retained");
    let live = Subscriber::connect(&broker, &[&format!("{prefix}/#")]);
    let sc = sidecar(&broker, &prefix, "", "");
    live.next_on(&availability(&prefix), T).expect("online");
    for b in &fixture_bodies() {
        assert_eq!(post_signed(&sc, b).status().as_u16(), 200);
    }
    // Wait until the final status of both instances went out.
    let acme = "WASP-acme-store_myshopify_com";
    let final_acme = api_status(&sc, acme);
    let acme_topic = format!("{prefix}/{acme}/status");
    let beta_topic = format!("{prefix}/WASP-beta_shop/status");
    let mut pending: HashMap<String, Value> = HashMap::from([
        (acme_topic.clone(), final_acme.clone()),
        (beta_topic.clone(), api_status(&sc, "WASP-beta_shop")),
    ]);
    let deadline = Instant::now() + T;
    while !pending.is_empty() && Instant::now() < deadline {
        if let Some(p) =
            live.next_where(Duration::from_millis(200), |p| p.topic.ends_with("/status"))
        {
            let v: Value = serde_json::from_slice(&p.payload).unwrap();
            if pending.get(&p.topic) == Some(&v) {
                pending.remove(&p.topic);
            }
        }
    }
    assert!(
        pending.is_empty(),
        "final statuses published:\n{}",
        sc.log()
    );

    let late = Subscriber::connect(
        &broker,
        &[&format!("{prefix}/+/status"), &availability(&prefix)],
    );
    let got = late.drain_for(Duration::from_secs(2));
    let retained: HashMap<&str, &Publish> = got.iter().map(|p| (p.topic.as_str(), p)).collect();
    for (topic, want) in [
        (acme_topic.as_str(), final_acme),
        (beta_topic.as_str(), api_status(&sc, "WASP-beta_shop")),
    ] {
        let p = retained
            .get(topic)
            .unwrap_or_else(|| panic!("no retained {topic}; got {got:?}"));
        assert!(p.retain, "{topic} is retained");
        assert_eq!(serde_json::from_slice::<Value>(&p.payload).unwrap(), want);
    }
    let avail = retained
        .get(availability(&prefix).as_str())
        .expect("availability");
    assert!(avail.retain);
    assert_eq!(avail.payload.as_ref(), b"online");
    stop_before_cleanup(sc);
    late.clear_retained(&[availability(&prefix), acme_topic, beta_topic]);
}

#[test]
fn abrupt_kill_leaves_a_retained_offline_through_the_last_will() {
    let broker = Broker::start();
    let prefix = unique_prefix("lwt");
    let sub = Subscriber::connect(&broker, &[&availability(&prefix)]);
    let mut sc = sidecar(&broker, &prefix, "    keep_alive_secs: 1\n", "");
    let online = sub.next_on(&availability(&prefix), T).expect("online");
    assert_eq!(online.payload.as_ref(), b"online");

    sc.child.kill().expect("SIGKILL the sidecar");
    let _ = sc.child.wait();
    let offline = sub
        .next_on(&availability(&prefix), T)
        .expect("the Last Will within 15 s");
    assert_eq!(offline.payload.as_ref(), b"offline");

    let late = Subscriber::connect(&broker, &[&availability(&prefix)]);
    let p = late
        .next_on(&availability(&prefix), Duration::from_secs(5))
        .expect("retained availability");
    assert!(p.retain);
    assert_eq!(p.payload.as_ref(), b"offline");
    late.clear_retained(&[availability(&prefix)]);
}

#[test]
fn clean_shutdown_delivers_what_is_held_then_publishes_offline() {
    let broker = Broker::start();
    let prefix = unique_prefix("shutdown");
    let sub = Subscriber::connect(&broker, &[&format!("{prefix}/#")]);
    let mut sc = sidecar(&broker, &prefix, "", "");
    sub.next_on(&availability(&prefix), T).expect("online");
    let bodies = fixture_bodies();
    for b in &bodies {
        assert_eq!(post_signed(&sc, b).status().as_u16(), 200);
    }
    sc.terminate();
    let status = sc.wait_exit(T).expect("exits after SIGTERM");
    assert!(status.success());
    let got = sub.drain_for(Duration::from_secs(2));
    let events = got.iter().filter(|p| p.topic.contains("/events/")).count();
    assert_eq!(events, bodies.len(), "every event delivered before exit");
    let last = got
        .iter()
        .filter(|p| p.topic == availability(&prefix))
        .last()
        .expect("availability at shutdown");
    assert_eq!(last.payload.as_ref(), b"offline");
    assert!(
        sc.log().contains("published offline and disconnected"),
        "offline came from the sink, not the Last Will:\n{}",
        sc.log()
    );
    sub.clear_retained(&[
        availability(&prefix),
        format!("{prefix}/WASP-acme-store_myshopify_com/status"),
        format!("{prefix}/WASP-beta_shop/status"),
    ]);
}

#[test]
fn awkward_instance_ids_and_event_names_become_one_reversible_level() {
    let broker = Broker::start();
    let prefix = unique_prefix("levels");
    // `+` wildcards: each id must be exactly one level to match.
    let sub = Subscriber::connect(
        &broker,
        &[
            &format!("{prefix}/+/events/+"),
            &format!("{prefix}/+/status"),
        ],
    );
    let sc = sidecar(&broker, &prefix, "", "");
    let ids = [
        "WASP-a/b+c#d",
        "$SYS-like",
        "WASP-مرحبا-😀-ü",
        "100%/",
        "tab\tand\u{7f}",
    ];
    for id in ids {
        let body = json!({"event": "ready", "instanceId": id, "data": {}}).to_string();
        assert_eq!(post_signed(&sc, &body).status().as_u16(), 200, "{id}");
    }
    let body = json!({"event": "odd/event+#", "instanceId": "WASP-x", "data": {}}).to_string();
    assert_eq!(post_signed(&sc, &body).status().as_u16(), 200);

    let mut events = Vec::new();
    let mut statuses = BTreeSet::new();
    let deadline = Instant::now() + T;
    while (events.len() < ids.len() + 1 || statuses.len() < ids.len()) && Instant::now() < deadline
    {
        let Some(p) = sub.next_where(Duration::from_secs(1), |_| true) else {
            continue;
        };
        let levels: Vec<&str> = p
            .topic
            .strip_prefix(&format!("{prefix}/"))
            .unwrap()
            .split('/')
            .collect();
        match levels.as_slice() {
            [instance, "events", event] => events.push((
                decode_level(instance).unwrap(),
                decode_level(event).unwrap(),
            )),
            [instance, "status"] => {
                let id = decode_level(instance).unwrap();
                let v: Value = serde_json::from_slice(&p.payload).unwrap();
                assert_eq!(v["instanceId"], id.as_str());
                statuses.insert(id);
            }
            other => panic!("unexpected topic levels {other:?}"),
        }
    }
    for id in ids {
        assert!(
            events.contains(&(id.to_owned(), "ready".to_owned())),
            "{id:?} in {events:?}"
        );
        assert!(statuses.contains(id), "status of {id:?} in {statuses:?}");
    }
    assert!(events.contains(&("WASP-x".to_owned(), "odd/event+#".to_owned())));
    // The exact topic of one, by the documented rule.
    assert_eq!(encode_level("WASP-a/b+c#d"), "WASP-a%2Fb%2Bc%23d");
    assert_eq!(encode_level("$SYS-like"), "%24SYS-like");
    let mut retained: Vec<String> = ids
        .iter()
        .map(|id| format!("{prefix}/{}/status", encode_level(id)))
        .collect();
    retained.push(availability(&prefix));
    stop_before_cleanup(sc);
    sub.clear_retained(&retained);
}

#[test]
fn payload_over_the_limit_is_dropped_and_the_next_one_arrives() {
    let broker = Broker::start();
    let prefix = unique_prefix("limit");
    let sub = Subscriber::connect(&broker, &[&format!("{prefix}/+/events/#")]);
    let sc = sidecar(&broker, &prefix, "    max_packet_bytes: 4096\n", "");
    let big =
        json!({"event": "message", "instanceId": "WASP-big", "data": {"body": "x".repeat(10_000)}})
            .to_string();
    let small = json!({"event": "message", "instanceId": "WASP-big", "data": {"body": "small"}})
        .to_string();
    assert_eq!(post_signed(&sc, &big).status().as_u16(), 200);
    assert_eq!(post_signed(&sc, &small).status().as_u16(), 200);
    let p = sub
        .next_where(T, |_| true)
        .unwrap_or_else(|| panic!("the small event did not arrive:\n{}", sc.log()));
    assert_eq!(
        p.payload.as_ref(),
        small.as_bytes(),
        "the big one was dropped"
    );
    assert!(
        sc.log().contains("packet larger than max_packet_bytes"),
        "the drop is logged:\n{}",
        sc.log()
    );
    // And the sink keeps working (another body: a re-sent one would be a duplicate).
    let next =
        json!({"event": "message", "instanceId": "WASP-big", "data": {"body": "next"}}).to_string();
    assert_eq!(post_signed(&sc, &next).status().as_u16(), 200);
    assert!(sub.next_where(T, |_| true).is_some());
    drop(sub);
    let cleaner = Subscriber::connect(&broker, &[&availability(&prefix)]);
    stop_before_cleanup(sc);
    cleaner.clear_retained(&[availability(&prefix), format!("{prefix}/WASP-big/status")]);
}

#[test]
fn broker_outage_keeps_ingest_fast_and_buffered_qos1_events_arrive_after_restart() {
    // Always the embedded broker in a child process on a free port, even with MQTT_TEST_URL
    // set: the test must stop and restart the broker, which it cannot do to an external one.
    let prefix = unique_prefix("outage");
    let port = free_port();
    let mut broker = Broker::embedded(port, Some(&format!("{prefix}/#")));
    let sc = sidecar(
        &broker,
        &prefix,
        "    reconnect_max_ms: 500\n",
        "  - type: stdout\n    kinds: [webhook]\n",
    );
    let seen = broker.seen.take().expect("watcher");
    let online = seen
        .recv_timeout(T)
        .unwrap_or_else(|_| panic!("online before the outage:\n{}", sc.log()));
    assert_eq!(online.0, availability(&prefix));

    broker.kill();
    let instance = "WASP-outage";
    let post = |event: &str, i: usize| {
        let body = json!({"event": event, "instanceId": instance, "data": {"i": i}}).to_string();
        let t = Instant::now();
        let r = post_signed(&sc, &body);
        assert_eq!(r.status().as_u16(), 200);
        t.elapsed()
    };
    let started = Instant::now();
    let mut slowest = post("authenticated", 0).max(post("ready", 0));
    for i in 0..1000 {
        slowest = slowest.max(post("message", i));
    }
    slowest = slowest.max(post("disconnected", 0));
    let total = started.elapsed();
    println!("1003 webhooks during the outage: {total:?}, slowest {slowest:?}");
    // Bounds loose enough for a busy 2-core machine running a debug build; a receiver that
    // waited on the broker would take connect timeouts (seconds) per webhook.
    assert!(
        slowest < Duration::from_secs(2),
        "a webhook took {slowest:?} while the broker was down"
    );
    assert!(
        total < Duration::from_secs(60),
        "1003 webhooks took {total:?}"
    );
    // Other sinks are unaffected: stdout has every webhook while the broker is still down.
    let lines = eventually(T, || {
        let n = sc.stdout().lines().count();
        (n >= 1003).then_some(n)
    });
    assert_eq!(lines, Some(1003), "stdout sink kept up during the outage");

    // Broker back on the same port, with fresh state: the sink reconnects and delivers.
    let mut broker = Broker::embedded(port, Some(&format!("{prefix}/#")));
    let seen = broker.seen.take().expect("watcher");
    let mut messages = BTreeSet::new();
    let mut last_status = None;
    let mut duplicates = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Until every message and the final status (`disconnected`, queued last) went out.
    while messages.len() < 1000 || last_status.as_deref() != Some("disconnected") {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| {
                panic!(
                    "{} of 1000 messages, last status {last_status:?} after the restart:\n{}",
                    messages.len(),
                    sc.log()
                )
            });
        let Ok((topic, payload)) = seen.recv_timeout(left) else {
            continue;
        };
        if topic == format!("{prefix}/{instance}/events/message") {
            let v: Value = serde_json::from_slice(&payload).unwrap();
            if !messages.insert(v["data"]["i"].as_u64().unwrap()) {
                duplicates += 1;
            }
        } else if topic == format!("{prefix}/{instance}/status") {
            let v: Value = serde_json::from_slice(&payload).unwrap();
            last_status = Some(v["displayStatus"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(messages, (0..1000).collect::<BTreeSet<u64>>());
    println!("after restart: 1000 distinct messages, {duplicates} duplicates");
    // The retained status is the latest one.
    let late = Subscriber::connect(&broker, &[&format!("{prefix}/{instance}/status")]);
    let status = late
        .next_where(Duration::from_secs(5), |p| p.retain)
        .expect("retained status after restart");
    let v: Value = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!(v, api_status(&sc, instance));
    assert_eq!(v["displayStatus"], "disconnected");
    assert!(sc.log().contains("mqtt: connection lost"), "{}", sc.log());
}
