//! The MQTT sink: webhooks, display statuses and the sidecar's availability, published to an
//! MQTT broker with rumqttc in Zigbee2MQTT's manner (state topics retained, a Last Will).
//! Topic layout and the id-to-level mapping: [`topic`]; settings: [`MqttConfig`].

mod build;
mod config;
mod connection;
mod message;
mod sink;
pub mod topic;

pub use config::{default_client_id, MqttConfig, MqttConfigError, MqttSettings};
pub use sink::{MqttSink, MAX_OVERFLOW_STATUSES};
pub use topic::{decode_level, encode_level, publish_packet_bytes, DecodeError, Topics};
