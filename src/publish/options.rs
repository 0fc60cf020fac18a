//! `[mqtt]` turned once into ready-to-use client settings: rumqttc options (client id, login,
//! TLS, last will, limits) and the QoS of results. Everything that can be wrong in the config
//! fails here, at start, with the key named.
//!
//! Session choice: clean session. The durable outbox, not the broker session, is what makes
//! alarms survive, and rumqttc discards its own unacknowledged publishes on a clean reconnect
//! anyway, so the publisher replays the outbox itself after every connect. The price is that
//! an ack published while this node is disconnected is not queued for it; the gateway sees
//! `alarm/state` still unacknowledged and the node `online` again, and can repeat the ack.

use std::time::Duration;

use rumqttc::{LastWill, MqttOptions, QoS, Transport};

use crate::config::{MqttConfig, NodeConfig};
use crate::publish::credentials::Credentials;
use crate::publish::error::PublishError;
use crate::publish::tls;

/// Largest packet sent or accepted. A result with many regions is a few KiB; the limit is
/// checked before publishing, because rumqttc drops the connection on an oversized packet.
pub(crate) const MAX_PACKET_BYTES: usize = 256 * 1024;

/// Requests between the publish loop and the event loop. Small: the publish loop only hands
/// over what can go out soon, and everything queued here is lost when the connection drops.
pub(crate) const REQUEST_CAPACITY: usize = 64;

/// Seconds to set up TCP (and TLS) and get a CONNACK before the attempt counts as failed.
const CONNECT_TIMEOUT_S: u64 = 10;

/// Client settings derived from `[mqtt]` and `[node]`.
pub(crate) struct ClientSettings {
    pub options: MqttOptions,
    pub connect_timeout_s: u64,
    pub result_qos: QoS,
}

impl ClientSettings {
    /// `will` is the retained offline status the broker publishes if the connection dies.
    pub fn new(cfg: &MqttConfig, node: &NodeConfig, will: LastWill) -> Result<ClientSettings, PublishError> {
        let client_id = cfg.client_id.clone().unwrap_or_else(|| format!("inspectd-{}", node.id));
        if client_id.is_empty() {
            return Err(config_err("client_id", "must not be empty".into()));
        }
        let mut options = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
        options
            .set_keep_alive(keep_alive(cfg.keep_alive_s)?)
            .set_clean_session(true)
            .set_last_will(will)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_request_channel_capacity(REQUEST_CAPACITY);
        if let Some(creds) = Credentials::from_config(cfg)? {
            options.set_credentials(creds.username, creds.password.expose());
        }
        if let Some(tls_cfg) = &cfg.tls {
            let client_config = tls::client_config(tls_cfg)?;
            options.set_transport(Transport::tls_with_config(client_config.into()));
        }
        Ok(ClientSettings {
            options,
            connect_timeout_s: CONNECT_TIMEOUT_S,
            result_qos: qos(cfg.results.qos)?,
        })
    }
}

/// MQTT carries the keep-alive as 16-bit seconds; zero turns pings off, which would leave a
/// dead connection (and the alarms behind it) unnoticed, so it is refused.
fn keep_alive(seconds: u64) -> Result<Duration, PublishError> {
    match seconds {
        1..=65_535 => Ok(Duration::from_secs(seconds)),
        _ => Err(config_err("keep_alive_s", format!("{seconds} is outside 1..=65535 seconds"))),
    }
}

fn qos(level: u8) -> Result<QoS, PublishError> {
    match level {
        0 => Ok(QoS::AtMostOnce),
        1 => Ok(QoS::AtLeastOnce),
        2 => Ok(QoS::ExactlyOnce),
        _ => Err(config_err("results.qos", format!("{level} is not an MQTT QoS (0, 1 or 2)"))),
    }
}

fn config_err(key: &'static str, reason: String) -> PublishError {
    PublishError::Config { key, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn node() -> NodeConfig {
        NodeConfig {
            id: "station-1".into(),
            state_dir: PathBuf::from("/tmp"),
            shutdown_deadline_s: 1.0,
            readiness_timeout_s: 1.0,
        }
    }

    fn will() -> LastWill {
        LastWill::new("inspectd/station-1/status", b"{}".to_vec(), QoS::AtLeastOnce, true)
    }

    #[test]
    fn defaults_give_a_clean_session_with_the_node_client_id_and_a_retained_will() {
        let settings = ClientSettings::new(&MqttConfig::default(), &node(), will()).expect("valid");
        assert_eq!(settings.options.client_id(), "inspectd-station-1");
        assert!(settings.options.clean_session());
        assert_eq!(settings.options.keep_alive(), Duration::from_secs(15));
        let will = settings.options.last_will().expect("will");
        assert!(will.retain && will.qos == QoS::AtLeastOnce);
        assert_eq!(settings.result_qos, QoS::AtMostOnce);
        assert_eq!(settings.options.credentials(), None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad_qos = MqttConfig {
            results: crate::config::ResultPolicy { qos: 3, ..Default::default() },
            ..Default::default()
        };
        let err = ClientSettings::new(&bad_qos, &node(), will()).err().expect("qos 3");
        assert!(err.to_string().contains("mqtt.results.qos"), "{err}");
        let no_pings = MqttConfig { keep_alive_s: 0, ..Default::default() };
        let err = ClientSettings::new(&no_pings, &node(), will()).err().expect("keep-alive 0");
        assert!(err.to_string().contains("mqtt.keep_alive_s"), "{err}");
    }

    #[test]
    fn credentials_reach_the_connect_packet() {
        let cfg = MqttConfig { username: Some("u".into()), password: Some("p".into()), ..Default::default() };
        let settings = ClientSettings::new(&cfg, &node(), will()).expect("valid");
        let login = settings.options.credentials().expect("login");
        assert_eq!((login.username.as_str(), login.password.as_str()), ("u", "p"));
    }
}
