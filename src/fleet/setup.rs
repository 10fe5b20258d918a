//! Start-up against NATS: the connection options, and the stream and KV bucket created when
//! missing and checked when present (stream: subjects, limits, retention; bucket: no TTL). A
//! mismatch is a start-up error that says what differs.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use super::config::FleetSettings;
use super::subject::stream_subjects;

/// Why fleet mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The fleet's own runtime could not be built.
    #[error("cannot start the fleet runtime: {0}")]
    Runtime(std::io::Error),
    /// The NATS client refused the options.
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    /// The stream exists with other settings.
    #[error("JetStream stream {stream} exists with {what}; change the config (fleet.*) or the stream (`nats stream edit {stream}`)")]
    StreamMismatch {
        /// Stream name.
        stream: String,
        /// What differs.
        what: String,
    },
    /// The KV bucket exists with settings fleet mode cannot use.
    #[error("JetStream KV bucket {bucket} exists with {what}; use another fleet.status_bucket or recreate the bucket")]
    BucketMismatch {
        /// Bucket name.
        bucket: String,
        /// What differs.
        what: String,
    },
    /// A JetStream call failed (stream, bucket or consumer).
    #[error("JetStream: {0}")]
    JetStream(String),
}

/// The connect options for `settings`: name, credentials, and retries forever in the
/// background (also when NATS is down at start). Every (re)connection bumps `connections`.
pub fn connect_options(
    settings: &FleetSettings,
    connections: tokio::sync::watch::Sender<u64>,
) -> async_nats::ConnectOptions {
    let raw = &settings.raw;
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("wa-hub-sidecar {}", settings.node_id))
        .connection_timeout(Duration::from_millis(raw.connect_timeout_ms.get()))
        .retry_on_initial_connect()
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).min(1000))
        })
        .event_callback(move |event| {
            if matches!(event, async_nats::Event::Connected) {
                connections.send_modify(|n| *n += 1);
            }
            async {}
        });
    if let Some(token) = &raw.token {
        opts = opts.token(token.expose().to_owned());
    }
    if let (Some(user), Some(password)) = (&raw.user, &raw.password) {
        opts = opts.user_and_password(user.clone(), password.expose().to_owned());
    }
    opts
}

/// The stream config this node wants.
pub fn stream_config(settings: &FleetSettings) -> stream::Config {
    stream::Config {
        name: settings.raw.stream.clone(),
        subjects: vec![stream_subjects(&settings.raw.subject_prefix)],
        max_age: Duration::from_secs(settings.raw.max_age_secs.get()),
        max_bytes: i64::try_from(settings.raw.max_bytes.get()).unwrap_or(i64::MAX),
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// What differs between the stream's config and the wanted one; `None` when they agree.
pub fn stream_mismatch(have: &stream::Config, want: &stream::Config) -> Option<String> {
    let mut diffs = Vec::new();
    if have.subjects != want.subjects {
        diffs.push(format!(
            "subjects {:?} (wanted {:?})",
            have.subjects, want.subjects
        ));
    }
    if have.max_age != want.max_age {
        diffs.push(format!(
            "max_age {}s (fleet.max_age_secs is {})",
            have.max_age.as_secs(),
            want.max_age.as_secs()
        ));
    }
    if have.max_bytes != want.max_bytes {
        diffs.push(format!(
            "max_bytes {} (fleet.max_bytes is {})",
            have.max_bytes, want.max_bytes
        ));
    }
    if have.retention != want.retention {
        diffs.push(format!("retention {:?} (wanted Limits)", have.retention));
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// Creates the stream and the KV bucket when missing, checks them when present, and returns
/// the bucket.
///
/// # Errors
/// [`FleetError::StreamMismatch`] when the stream has other settings,
/// [`FleetError::BucketMismatch`] when the bucket has a TTL; [`FleetError::JetStream`] when
/// JetStream cannot be reached or refuses.
pub async fn ensure(
    js: &jetstream::Context,
    settings: &FleetSettings,
) -> Result<kv::Store, FleetError> {
    let want = stream_config(settings);
    let mut stream = js
        .get_or_create_stream(want.clone())
        .await
        .map_err(|e| FleetError::JetStream(format!("stream {}: {e}", want.name)))?;
    let info = stream
        .info()
        .await
        .map_err(|e| FleetError::JetStream(format!("stream {}: {e}", want.name)))?;
    if let Some(what) = stream_mismatch(&info.config, &want) {
        return Err(FleetError::StreamMismatch {
            stream: want.name,
            what,
        });
    }
    let bucket = &settings.raw.status_bucket;
    match js.get_key_value(bucket.clone()).await {
        Ok(store) => {
            let config = store
                .status()
                .await
                .map_err(|e| FleetError::JetStream(format!("KV bucket {bucket}: {e}")))?
                .info
                .config;
            // A bucket with a TTL would forget the status of a quiet instance.
            if !config.max_age.is_zero() {
                return Err(FleetError::BucketMismatch {
                    bucket: bucket.clone(),
                    what: format!(
                        "a TTL of {}s (statuses must not expire)",
                        config.max_age.as_secs()
                    ),
                });
            }
            Ok(store)
        }
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: bucket.clone(),
                description: "wa-hub-sidecar fleet: instance statuses and routes".into(),
                history: 1,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| FleetError::JetStream(format!("KV bucket {bucket}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::config::FleetConfig;

    #[test]
    fn a_stream_with_other_limits_is_a_mismatch_naming_the_keys() {
        let s = FleetConfig {
            node_id: Some("n".into()),
            ..Default::default()
        }
        .validate()
        .unwrap();
        let want = stream_config(&s);
        assert_eq!(stream_mismatch(&want, &want), None);
        let mut have = want.clone();
        have.max_age = Duration::from_secs(60);
        have.subjects = vec!["other.>".into()];
        let what = stream_mismatch(&have, &want).unwrap();
        assert!(what.contains("fleet.max_age_secs"), "{what}");
        assert!(what.contains("other.>"), "{what}");
    }
}
