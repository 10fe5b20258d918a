//! Start-up against NATS: the connection options, and the stream and KV bucket created when
//! missing and checked when present (stream: see [`stream_mismatch`]; bucket: no TTL, file
//! storage). A mismatch is a start-up error that names each setting, the value found, the
//! value wanted and how to fix it.

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
    #[error("JetStream stream {stream} exists with settings fleet mode cannot use: {what}")]
    StreamMismatch {
        /// Stream name.
        stream: String,
        /// What differs.
        what: String,
    },
    /// The KV bucket exists with settings fleet mode cannot use.
    #[error("JetStream KV bucket {bucket} exists with {what}; use another fleet.status_bucket, or delete the bucket (`nats kv rm {bucket}`) and the sidecar creates it again")]
    BucketMismatch {
        /// Bucket name.
        bucket: String,
        /// What differs.
        what: String,
    },
    /// Another live process uses this `fleet.node_id` (see [`super::presence`]).
    #[error("fleet.node_id {node} is in use by another live sidecar ({holder}; its presence key in KV bucket {bucket} is being refreshed); give every node its own fleet.node_id (default: the host name). If that process is gone, start again after 5 s")]
    NodeIdInUse {
        /// The node id.
        node: String,
        /// Who holds it (pid and host).
        holder: String,
        /// The bucket holding the presence key.
        bucket: String,
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
        duplicate_window: settings.duplicate_window,
        ..Default::default()
    }
}

/// What differs between the stream's config `have` and the wanted one `want` (from
/// [`stream_config`]) in a way that breaks fleet mode: one entry per setting, each naming the
/// setting, the value found, the value wanted and how to fix it (the `fleet.*` key, or the
/// `nats` command that edits or deletes the stream). `None` when they agree.
///
/// Checked: subjects, `max_age` and `max_bytes` (equal to the config), retention (limits),
/// storage (file: a memory stream loses every event when nats-server restarts), `max_msgs` and
/// `max_msgs_per_subject` (unlimited: a count limit drops events before `max_age`), discard
/// (old: `new` makes a full stream refuse events, and the nodes' buffers stall),
/// `max_msg_size` (unlimited: a larger event would be refused and hold up the events behind
/// it), duplicate window (at least [`FleetSettings::duplicate_window`]).
pub fn stream_mismatch(have: &stream::Config, want: &stream::Config) -> Option<String> {
    let name = &want.name;
    let edit = |flag: &str| format!("`nats stream edit {name} {flag}`");
    let recreate = format!(
        "it cannot be edited: delete the stream (`nats stream rm {name}`; its events are lost) and the sidecar creates it again"
    );
    let mut diffs = Vec::new();
    if have.subjects != want.subjects {
        diffs.push(format!(
            "subjects {:?}, wanted {:?} (fleet.subject_prefix; {})",
            have.subjects,
            want.subjects,
            edit(&format!("--subjects '{}'", want.subjects.join(",")))
        ));
    }
    if have.max_age != want.max_age {
        diffs.push(format!(
            "max_age {}s, wanted {}s (fleet.max_age_secs is {}; {})",
            have.max_age.as_secs(),
            want.max_age.as_secs(),
            want.max_age.as_secs(),
            edit(&format!("--max-age {}s", want.max_age.as_secs()))
        ));
    }
    if have.max_bytes != want.max_bytes {
        diffs.push(format!(
            "max_bytes {}, wanted {} (fleet.max_bytes is {}; {})",
            have.max_bytes,
            want.max_bytes,
            want.max_bytes,
            edit(&format!("--max-bytes {}", want.max_bytes))
        ));
    }
    if have.retention != want.retention {
        diffs.push(format!(
            "retention {:?}, wanted {:?} ({recreate})",
            have.retention, want.retention
        ));
    }
    if have.storage != want.storage {
        diffs.push(format!(
            "storage {:?}, wanted {:?} (a memory stream loses the fleet's events when nats-server restarts; {recreate})",
            have.storage, want.storage
        ));
    }
    if have.max_messages > 0 {
        diffs.push(format!(
            "max_msgs {}, wanted -1 (unlimited: a message limit drops events before fleet.max_age_secs; {})",
            have.max_messages,
            edit("--max-msgs=-1")
        ));
    }
    if have.max_messages_per_subject > 0 {
        diffs.push(format!(
            "max_msgs_per_subject {}, wanted -1 (unlimited: a per-subject limit drops an instance's events; {})",
            have.max_messages_per_subject,
            edit("--max-msgs-per-subject=-1")
        ));
    }
    if have.max_message_size > 0 {
        diffs.push(format!(
            "max_msg_size {}, wanted -1 (unlimited: a larger event is refused and holds up every event queued behind it; nats-server's max_payload bounds messages, and the sidecar takes no webhook over it; {})",
            have.max_message_size,
            edit("--max-msg-size=-1")
        ));
    }
    if have.discard != stream::DiscardPolicy::Old {
        diffs.push(format!(
            "discard {:?}, wanted Old (with discard new a full stream refuses new events and every node's buffer stalls; {})",
            have.discard,
            edit("--discard old")
        ));
    }
    if have.duplicate_window < want.duplicate_window {
        diffs.push(format!(
            "duplicate_window {}s, wanted at least {}s (the fleet-wide webhook dedup and publish retries rely on it, see webhook.dedup_window_secs; {})",
            have.duplicate_window.as_secs(),
            want.duplicate_window.as_secs(),
            edit(&format!("--dupe-window {}s", want.duplicate_window.as_secs()))
        ));
    }
    (!diffs.is_empty()).then(|| diffs.join("; "))
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
                        "a TTL of {}s, wanted none (statuses must not expire)",
                        config.max_age.as_secs()
                    ),
                });
            }
            // A memory bucket forgets every status when nats-server restarts.
            if config.storage != stream::StorageType::File {
                return Err(FleetError::BucketMismatch {
                    bucket: bucket.clone(),
                    what: format!("storage {:?}, wanted File", config.storage),
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

    #[test]
    fn storage_count_limits_discard_and_a_short_duplicate_window_are_mismatches() {
        let s = FleetConfig {
            node_id: Some("n".into()),
            ..Default::default()
        }
        .validate()
        .unwrap()
        .with_webhook_dedup(300);
        let want = stream_config(&s);
        assert_eq!(want.duplicate_window, Duration::from_secs(300));
        // What the server reports for "no limit".
        let mut have = want.clone();
        have.max_messages = -1;
        have.max_messages_per_subject = -1;
        assert_eq!(stream_mismatch(&have, &want), None);
        have.duplicate_window = Duration::from_secs(600);
        assert_eq!(
            stream_mismatch(&have, &want),
            None,
            "a longer window is fine"
        );
        have.storage = stream::StorageType::Memory;
        have.max_messages = 1000;
        have.max_messages_per_subject = 10;
        have.discard = stream::DiscardPolicy::New;
        have.duplicate_window = Duration::from_secs(1);
        have.max_message_size = 400;
        let what = stream_mismatch(&have, &want).unwrap();
        for part in [
            "storage Memory, wanted File",
            "nats stream rm WAHUB_EVENTS",
            "max_msgs 1000, wanted -1",
            "--max-msgs=-1",
            "max_msgs_per_subject 10, wanted -1",
            "discard New, wanted Old",
            "--discard old",
            "duplicate_window 1s, wanted at least 300s",
            "--dupe-window 300s",
            "max_msg_size 400, wanted -1",
            "--max-msg-size=-1",
        ] {
            assert!(what.contains(part), "{part} not in {what}");
        }
    }

    #[test]
    fn the_duplicate_window_is_at_most_the_streams_age_limit() {
        let s = FleetConfig {
            node_id: Some("n".into()),
            max_age_secs: std::num::NonZeroU64::new(30).unwrap(),
            ..Default::default()
        }
        .validate()
        .unwrap()
        .with_webhook_dedup(60);
        assert_eq!(s.duplicate_window, Duration::from_secs(30));
    }
}
