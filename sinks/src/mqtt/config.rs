//! `sinks: [{type: mqtt, ...}]` settings, and their validation into [`MqttSettings`].

use std::fmt;
use std::num::{NonZeroU16, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::secret::Secret;
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use serde::{Deserialize, Serialize};

use super::topic::{publish_packet_bytes, Topics, MAX_TOPIC_BYTES};

/// Default broker: a local plain-TCP broker.
pub const DEFAULT_URL: &str = "mqtt://127.0.0.1:1883";
/// Default `topic_prefix`.
pub const DEFAULT_TOPIC_PREFIX: &str = "wa-hub";
/// Default `max_packet_bytes`: 1 MiB, the largest packet EMQX accepts by default.
pub const DEFAULT_MAX_PACKET_BYTES: usize = 1024 * 1024;
/// Smallest `max_packet_bytes` accepted.
pub const MIN_MAX_PACKET_BYTES: usize = 128;
/// Largest MQTT packet there is: 268,435,455 bytes of remaining length plus 5 of header.
pub const MAX_MAX_PACKET_BYTES: usize = 268_435_460;

/// Settings of one MQTT sink, as written in YAML. [`MqttConfig::validate`] checks them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker, `mqtt://host[:port]` (TCP, port 1883 by default) or `mqtts://host[:port]`
    /// (TLS, 8883). No user, path or query. Default `mqtt://127.0.0.1:1883`.
    pub url: String,
    /// MQTT client id. Default `wa-hub-sidecar-<8 random hex digits>`, new each start; set
    /// one when `clean_session` is false.
    pub client_id: Option<String>,
    /// User name for the broker. Default none.
    pub username: Option<String>,
    /// Secret for the broker (needs `username`). Masked in every output. Default none.
    pub password: Option<Secret>,
    /// PEM file with the CA certificates to trust for `mqtts://`; default: the system's.
    pub ca_file: Option<PathBuf>,
    /// QoS of every publish, 0 or 1. Default 1.
    pub qos: u8,
    /// Keep-alive interval, seconds; 0 turns pings off. The broker declares the sidecar gone
    /// (and publishes the Last Will) after 1.5 times this without traffic. Default 30.
    pub keep_alive_secs: u64,
    /// MQTT clean session. Default true; the sink keeps and resends what the broker has not
    /// acknowledged itself, so a persistent session is not needed.
    pub clean_session: bool,
    /// First level(s) of every topic. Default `wa-hub`.
    pub topic_prefix: String,
    /// Largest PUBLISH packet sent (topic + payload + headers), bytes; larger events are
    /// dropped and counted. Also the largest packet accepted from the broker.
    /// Default 1048576 (1 MiB).
    pub max_packet_bytes: usize,
    /// Messages held while the broker is slow or away, beyond those in flight; when full,
    /// further events are dropped and counted. Default 10000.
    pub buffer_capacity: NonZeroUsize,
    /// Publishes sent and not yet acknowledged, at most. Default 100.
    pub max_inflight: NonZeroU16,
    /// TCP + TLS + CONNACK timeout of one connection attempt, seconds. Default 5.
    pub connect_timeout_secs: NonZeroU64,
    /// First delay before reconnecting after a failure, ms; doubles per failure. Default 500.
    pub reconnect_min_ms: NonZeroU64,
    /// Largest delay between reconnection attempts, ms. Default 30000.
    pub reconnect_max_ms: NonZeroU64,
    /// At shutdown, how long to keep delivering held messages before publishing `offline`,
    /// ms. Default 3000.
    pub flush_timeout_ms: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_URL.to_owned(),
            client_id: None,
            username: None,
            password: None,
            ca_file: None,
            qos: 1,
            keep_alive_secs: 30,
            clean_session: true,
            topic_prefix: DEFAULT_TOPIC_PREFIX.to_owned(),
            max_packet_bytes: DEFAULT_MAX_PACKET_BYTES,
            buffer_capacity: NonZeroUsize::new(10_000).expect("non-zero"),
            max_inflight: NonZeroU16::new(100).expect("non-zero"),
            connect_timeout_secs: NonZeroU64::new(5).expect("non-zero"),
            reconnect_min_ms: NonZeroU64::new(500).expect("non-zero"),
            reconnect_max_ms: NonZeroU64::new(30_000).expect("non-zero"),
            flush_timeout_ms: 3000,
        }
    }
}

/// A setting of an MQTT sink is not acceptable. Each message names the key.
#[derive(Debug, thiserror::Error)]
pub enum MqttConfigError {
    /// `url` is not `mqtt://host[:port]` or `mqtts://host[:port]`.
    #[error("url `{url}`: {reason}")]
    Url {
        /// The URL as written (it can hold no credentials: those are refused).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Any other key.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, e.g. `qos`.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> MqttConfigError {
    MqttConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Validated settings, ready to connect with.
#[derive(Clone)]
pub struct MqttSettings {
    /// rumqttc options: address, transport, client id, credentials, keep-alive, clean session,
    /// packet sizes, in-flight limit and the Last Will (`offline`, retained).
    pub options: MqttOptions,
    /// Connection timeout, seconds (rumqttc's network option).
    pub connect_timeout_secs: u64,
    /// QoS of every publish.
    pub qos: QoS,
    /// Topic names.
    pub topics: Topics,
    /// Largest PUBLISH packet, bytes.
    pub max_packet_bytes: usize,
    /// Held messages beyond those in flight.
    pub buffer_capacity: usize,
    /// Publishes in flight at most.
    pub max_inflight: usize,
    /// First reconnect delay.
    pub reconnect_min: Duration,
    /// Largest reconnect delay.
    pub reconnect_max: Duration,
    /// Flush time at shutdown.
    pub flush_timeout: Duration,
    /// `host:port` (for logs).
    pub broker: String,
}

impl fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // MqttOptions' Debug would print the password.
        f.debug_struct("MqttSettings")
            .field("broker", &self.broker)
            .field("client_id", &self.options.client_id())
            .field("qos", &self.qos)
            .field("topics", &self.topics)
            .field("max_packet_bytes", &self.max_packet_bytes)
            .field("buffer_capacity", &self.buffer_capacity)
            .field("max_inflight", &self.max_inflight)
            .finish_non_exhaustive()
    }
}

/// A client id for this process: `wa-hub-sidecar-` and 8 random hex digits (23 characters,
/// the length every MQTT 3.1.1 broker must accept).
pub fn default_client_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("wa-hub-sidecar-{:08x}", h.finish() as u32)
}

fn check_prefix(prefix: &str) -> Result<(), MqttConfigError> {
    let bad = |reason: &str| Err(invalid("topic_prefix", format!("`{prefix}`: {reason}")));
    if prefix.is_empty() {
        return bad("must not be empty");
    }
    if prefix.contains(['+', '#']) {
        return bad("must not contain the wildcards `+` or `#`");
    }
    if prefix.contains('\0') {
        return bad("must not contain NUL");
    }
    if prefix.starts_with('$') {
        return bad("must not start with `$` (reserved for broker topics)");
    }
    if prefix.split('/').any(str::is_empty) {
        return bad("must not start or end with `/` or contain `//` (empty topic levels)");
    }
    if prefix.len() > 1024 {
        return bad("is longer than 1024 bytes");
    }
    Ok(())
}

/// `(tls, host, port)` of an `mqtt://` / `mqtts://` URL.
fn parse_url(raw: &str) -> Result<(bool, String, u16), MqttConfigError> {
    let parsed = url::Url::parse(raw);
    // Never echo credentials written into the URL.
    let shown = match &parsed {
        Ok(u) if !u.username().is_empty() || u.password().is_some() => {
            let mut u = u.clone();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            format!("{u} (credentials removed)")
        }
        Ok(_) => raw.to_owned(),
        Err(_) if raw.contains('@') => "<unparsable URL with `@`>".to_owned(),
        Err(_) => raw.to_owned(),
    };
    let err = |reason: &str| MqttConfigError::Url {
        url: shown.clone(),
        reason: reason.to_owned(),
    };
    let url = parsed.map_err(|e| err(&e.to_string()))?;
    let (tls, default_port) = match url.scheme() {
        "mqtt" | "tcp" => (false, 1883),
        "mqtts" | "ssl" => (true, 8883),
        _ => return Err(err("scheme must be mqtt:// or mqtts://")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err(
            "must not hold credentials; use the username and password keys",
        ));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(err("must be scheme://host[:port] with no path or query"));
    }
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Err(err("has no host")),
    };
    Ok((tls, host, url.port().unwrap_or(default_port)))
}

fn tls_config(ca_file: Option<&PathBuf>) -> Result<TlsConfiguration, MqttConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| invalid("ca_file", format!("cannot read {}: {e}", path.display())))?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("ca_file", format!("{}: {e}", path.display())))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(invalid(
                    "ca_file",
                    format!("{} holds no usable PEM certificate", path.display()),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "mqtt: problem loading the system's CA certificates");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(invalid(
                    "ca_file",
                    "mqtts:// needs CA certificates: none found in the system store; set ca_file",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("url", format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

impl MqttConfig {
    /// Checks every value and builds the connection options. Called at config time (before
    /// any port is bound); reads `ca_file` or the system's CA store for `mqtts://`.
    ///
    /// # Errors
    /// [`MqttConfigError`] naming the key: a bad URL, `qos` other than 0 or 1, a keep-alive
    /// over 65535 s, a bad topic prefix, `max_packet_bytes` outside 128..=268435460,
    /// `buffer_capacity` over [`crate::config::MAX_QUEUE_CAPACITY`],
    /// `password` without `username`, `clean_session: false` without a `client_id`,
    /// `reconnect_min_ms` above `reconnect_max_ms`, an unreadable `ca_file`.
    ///
    /// # Panics
    /// Never: values are checked before any rumqttc setter that asserts.
    pub fn validate(&self) -> Result<MqttSettings, MqttConfigError> {
        let checked = self.check()?;
        let options = self.options(&checked)?;
        Ok(MqttSettings {
            options,
            connect_timeout_secs: self.connect_timeout_secs.get(),
            qos: checked.qos,
            topics: checked.topics,
            max_packet_bytes: self.max_packet_bytes,
            buffer_capacity: self.buffer_capacity.get(),
            max_inflight: usize::from(self.max_inflight.get()),
            reconnect_min: Duration::from_millis(self.reconnect_min_ms.get()),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms.get()),
            flush_timeout: Duration::from_millis(self.flush_timeout_ms),
            broker: format!("{}:{}", checked.host, checked.port),
        })
    }

    /// The client id: the configured one (non-empty, at most 65535 bytes, no NUL), else a
    /// random one, which needs `clean_session: true`.
    fn client_id(&self) -> Result<String, MqttConfigError> {
        match &self.client_id {
            Some(id) if id.is_empty() => Err(invalid("client_id", "must not be empty when set")),
            Some(id) if id.contains('\0') || id.len() > 65_535 => {
                Err(invalid("client_id", "must be at most 65535 bytes, no NUL"))
            }
            Some(id) => Ok(id.clone()),
            None if !self.clean_session => Err(invalid(
                "client_id",
                "clean_session: false needs a fixed client_id (the default is random)",
            )),
            None => Ok(default_client_id()),
        }
    }

    /// Every value checked, before any rumqttc setter that asserts sees it.
    fn check(&self) -> Result<Checked, MqttConfigError> {
        let (tls, host, port) = parse_url(&self.url)?;
        let qos = match self.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            n => {
                return Err(invalid(
                    "qos",
                    format!("{n} is not supported; use 0 (at most once) or 1 (at least once)"),
                ))
            }
        };
        if self.keep_alive_secs > u64::from(u16::MAX) {
            return Err(invalid(
                "keep_alive_secs",
                format!("{} is over 65535 (MQTT's limit)", self.keep_alive_secs),
            ));
        }
        check_prefix(&self.topic_prefix)?;
        if !(MIN_MAX_PACKET_BYTES..=MAX_MAX_PACKET_BYTES).contains(&self.max_packet_bytes) {
            return Err(invalid(
                "max_packet_bytes",
                format!(
                    "{} is outside {MIN_MAX_PACKET_BYTES}..={MAX_MAX_PACKET_BYTES}",
                    self.max_packet_bytes
                ),
            ));
        }
        let topics = Topics::new(self.topic_prefix.clone());
        let availability = topics.availability();
        if publish_packet_bytes(availability.len(), "offline".len(), true) > self.max_packet_bytes
            || availability.len() > MAX_TOPIC_BYTES
        {
            return Err(invalid(
                "max_packet_bytes",
                "too small for the availability message",
            ));
        }
        let client_id = self.client_id()?;
        if self.password.is_some() && self.username.is_none() {
            return Err(invalid("password", "needs username"));
        }
        if self.reconnect_min_ms > self.reconnect_max_ms {
            return Err(invalid(
                "reconnect_min_ms",
                format!(
                    "{} is above reconnect_max_ms ({})",
                    self.reconnect_min_ms, self.reconnect_max_ms
                ),
            ));
        }
        if self.buffer_capacity.get() > crate::config::MAX_QUEUE_CAPACITY {
            return Err(invalid(
                "buffer_capacity",
                format!(
                    "{} is over {} (messages)",
                    self.buffer_capacity,
                    crate::config::MAX_QUEUE_CAPACITY
                ),
            ));
        }
        if self.ca_file.is_some() && !tls {
            return Err(invalid("ca_file", "only applies to mqtts:// URLs"));
        }

        Ok(Checked {
            tls,
            host,
            port,
            qos,
            client_id,
            availability,
            topics,
        })
    }

    /// rumqttc's options from checked values.
    fn options(&self, c: &Checked) -> Result<MqttOptions, MqttConfigError> {
        let mut options = MqttOptions::new(c.client_id.clone(), c.host.clone(), c.port);
        if c.tls {
            options.set_transport(Transport::tls_with_config(tls_config(
                self.ca_file.as_ref(),
            )?));
        }
        // Checked: 0 or 1..=65535 whole seconds, never the sub-second values that assert.
        options.set_keep_alive(Duration::from_secs(self.keep_alive_secs));
        // Checked: a non-empty client id whenever clean_session is false.
        options.set_clean_session(self.clean_session);
        if let Some(user) = &self.username {
            let pass = self.password.as_ref().map(Secret::expose).unwrap_or("");
            options.set_credentials(user.clone(), pass);
        }
        options.set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes);
        // Non-zero by type.
        options.set_inflight(self.max_inflight.get());
        // The sink never has more than `max_inflight` requests outstanding.
        options.set_request_channel_capacity(usize::from(self.max_inflight.get()));
        options.set_last_will(LastWill::new(
            c.availability.clone(),
            "offline",
            c.qos,
            true,
        ));
        Ok(options)
    }
}

/// Values [`MqttConfig::check`] derived, for building the options.
struct Checked {
    tls: bool,
    host: String,
    port: u16,
    qos: QoS,
    client_id: String,
    availability: String,
    topics: Topics,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> MqttConfig {
        serde_json::from_value(serde_yaml_value(yaml)).expect("parses")
    }

    /// A tiny YAML subset (`key: value` lines) to JSON, so this crate needs no YAML parser.
    fn serde_yaml_value(yaml: &str) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for line in yaml.lines().filter(|l| !l.trim().is_empty()) {
            let (k, v) = line.split_once(':').expect("key: value");
            let v = v.trim();
            let value = serde_json::from_str(v).unwrap_or_else(|_| v.into());
            map.insert(k.trim().to_owned(), value);
        }
        serde_json::Value::Object(map)
    }

    fn err(yaml: &str) -> String {
        parse(yaml).validate().expect_err(yaml).to_string()
    }

    #[test]
    fn defaults_are_a_local_broker_at_qos_1_with_a_random_client_id() {
        let s = MqttConfig::default().validate().unwrap();
        assert_eq!(s.broker, "127.0.0.1:1883");
        assert_eq!(s.qos, QoS::AtLeastOnce);
        assert_eq!(s.options.keep_alive(), Duration::from_secs(30));
        assert!(s.options.clean_session());
        assert_eq!(s.options.max_packet_size(), 1024 * 1024);
        assert_eq!(s.buffer_capacity, 10_000);
        let id = s.options.client_id();
        assert!(id.starts_with("wa-hub-sidecar-") && id.len() == 23, "{id}");
        let will = s.options.last_will().unwrap();
        assert_eq!(will.topic, "wa-hub/sidecar/availability");
        assert_eq!(&will.message[..], b"offline");
        assert!(will.retain);
    }

    #[test]
    fn urls_give_host_port_and_transport() {
        let s = parse("url: mqtt://broker.local").validate().unwrap();
        assert_eq!(s.options.broker_address(), ("broker.local".into(), 1883));
        assert!(matches!(s.options.transport(), Transport::Tcp));
        let s = parse("url: mqtt://[::1]:1999").validate().unwrap();
        assert_eq!(s.options.broker_address(), ("::1".into(), 1999));
        let cert = std::env::temp_dir().join(format!("mqtt-ca-{}.pem", std::process::id()));
        std::fs::write(&cert, TEST_CA_PEM).unwrap();
        let s = parse(&format!(
            "url: mqtts://broker.example:8884\nca_file: {}",
            cert.display()
        ))
        .validate()
        .unwrap();
        let _ = std::fs::remove_file(&cert);
        assert_eq!(s.options.broker_address(), ("broker.example".into(), 8884));
        assert!(matches!(s.options.transport(), Transport::Tls(_)));
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        assert!(err("url: http://x").contains("scheme must be mqtt:// or mqtts://"));
        let e = err("url: mqtt://u:secret@x");
        assert!(e.contains("must not hold credentials"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        assert!(err("url: mqtt://x/path").contains("no path or query"));
        assert!(err("url: not a url").starts_with("url `not a url`"));
        assert!(err("url: mqtt://x\nca_file: /nonexistent").contains("only applies to mqtts"));
        assert!(err("url: mqtts://x\nca_file: /nonexistent/ca.pem").contains("cannot read"));
    }

    #[test]
    fn qos_other_than_0_or_1_is_refused() {
        assert_eq!(
            err("qos: 2"),
            "qos: 2 is not supported; use 0 (at most once) or 1 (at least once)"
        );
        assert_eq!(parse("qos: 0").validate().unwrap().qos, QoS::AtMostOnce);
    }

    #[test]
    fn values_rumqttc_would_assert_on_are_errors_not_panics() {
        assert!(err("keep_alive_secs: 70000").starts_with("keep_alive_secs:"));
        assert_eq!(
            parse("keep_alive_secs: 0")
                .validate()
                .unwrap()
                .options
                .keep_alive(),
            Duration::ZERO
        );
        assert!(err("clean_session: false").starts_with("client_id:"));
        assert!(err("clean_session: false\nclient_id: \"\"").starts_with("client_id:"));
        let s = parse("clean_session: false\nclient_id: fixed")
            .validate()
            .unwrap();
        assert!(!s.options.clean_session());
        assert!(serde_json::from_value::<MqttConfig>(serde_yaml_value("max_inflight: 0")).is_err());
    }

    #[test]
    fn topic_prefix_must_be_levels_without_wildcards() {
        for bad in ["", "a/+", "#", "$SYS", "/a", "a/", "a//b"] {
            let e = err(&format!("topic_prefix: \"{bad}\""));
            assert!(e.starts_with("topic_prefix:"), "{bad}: {e}");
        }
        let s = parse("topic_prefix: home/wa").validate().unwrap();
        assert_eq!(s.topics.availability(), "home/wa/sidecar/availability");
    }

    #[test]
    fn packet_limit_is_range_checked_and_given_to_rumqttc() {
        assert!(err("max_packet_bytes: 10").starts_with("max_packet_bytes:"));
        assert!(err("max_packet_bytes: 300000000").starts_with("max_packet_bytes:"));
        let s = parse("max_packet_bytes: 4096").validate().unwrap();
        assert_eq!(s.max_packet_bytes, 4096);
        assert_eq!(s.options.max_packet_size(), 4096);
    }

    #[test]
    fn password_is_masked_and_needs_a_username() {
        assert!(err("password: hunter2").starts_with("password: needs username"));
        let c = parse("username: u\npassword: hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));
        let s = c.validate().unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.options.credentials().unwrap().password, "hunter2");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_json::from_value::<MqttConfig>(serde_yaml_value("retain: true")).is_err());
    }

    #[test]
    fn reconnect_bounds_must_be_ordered() {
        assert!(
            err("reconnect_min_ms: 5000\nreconnect_max_ms: 100").starts_with("reconnect_min_ms:")
        );
    }

    /// A self-signed CA certificate (EC P-256), for parsing only.
    const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUSdZbAZcEuV0TA2TEK+qLhbAtquQwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOd2EtaHViLXRlc3QtY2EwIBcNMjYxMTI5MTgxMDU4WhgPMjEy
NjExMDUxODEwNThaMBkxFzAVBgNVBAMMDndhLWh1Yi10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEtTCpHtFfLi0k9S9V/1lO1C3NjdQilaVcG5wI/2F5
ObtLzhujfD+qw0D6/deYhGDuUa5iWLW9vXeJ5LnYS3kE+6NTMFEwHQYDVR0OBBYE
FPqtEcg5C6pZx3L6DrQLZMO8uIXTMB8GA1UdIwQYMBaAFPqtEcg5C6pZx3L6DrQL
ZMO8uIXTMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAInsImg1
ebxYPZKbR1mckZ4Jcy2W6zoC0g1fHRSH70CsAiATQgpopd0xzwbpDprbmX/FOEDb
oH8/kuso55jxRzA42A==
-----END CERTIFICATE-----
";
}
