//! `Secret`: a string that never shows itself. `Debug` and `Serialize` print `********`, so
//! neither logs, errors nor `check-config` output can reveal it. Used for every secret in the
//! configuration (API key, webhook secret and tokens, MQTT password, forward-sink keys).

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// A secret string, masked in `Debug` and when serialized.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret in clear, for the one place that needs it (signing, an outgoing header,
    /// a CONNECT packet).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // An empty secret is shown as empty, so `check-config` tells "not set" from "set".
        s.serialize_str(if self.0.is_empty() { "" } else { "********" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_masked_in_debug_and_serialization() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s:?}"), "\"********\"");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"********\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
