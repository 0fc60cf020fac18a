//! `[mqtt]` turned once into ready-to-use client settings: rumqttc options (client id, login,
//! TLS, limits), topics and the QoS of results. Everything that can be wrong in the config
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
use crate::publish::topics::Topics;

/// Largest packet sent or accepted. A result with many regions is a few KiB; the limit is
/// checked before publishing, because rumqttc drops the connection on an oversized packet.
pub(crate) const MAX_PACKET_BYTES: usize = 256 * 1024;

/// Requests between the publish loop and the event loop. Small: the publish loop only hands
/// over what can go out soon, and everything queued here is lost when the connection drops.
pub(crate) const REQUEST_CAPACITY: usize = 64;

/// Seconds to set up TCP (and TLS) and get a CONNACK before the attempt counts as failed.
const CONNECT_TIMEOUT_S: u64 = 10;

/// Everything `[mqtt]` and `[node]` say about the connection, converted once: rumqttc options
/// (without the last will, which carries the start time), topics, result QoS, outbox size.
#[derive(Clone)]
pub struct MqttSettings {
    pub options: MqttOptions,
    pub connect_timeout_s: u64,
    pub result_qos: QoS,
    pub topics: Topics,
    pub outbox_max_alarms: usize,
    /// `host:port`, for log lines.
    pub broker: String,
}

impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The options hold the password; show only what identifies the connection.
        f.debug_struct("MqttSettings")
            .field("broker", &self.broker)
            .field("client_id", &self.options.client_id())
            .field("result_qos", &self.result_qos)
            .finish_non_exhaustive()
    }
}

impl MqttSettings {
    /// Converts the config, reporting every problem (each error names its key).
    pub fn new(cfg: &MqttConfig, node: &NodeConfig) -> Result<MqttSettings, Vec<PublishError>> {
        let mut problems = Vec::new();
        let mut ok = Collect(&mut problems);
        let client_id = cfg.client_id.clone().unwrap_or_else(|| format!("inspectd-{}", node.id));
        ok.take(if client_id.is_empty() {
            Err(config_err("client_id", "must not be empty".into()))
        } else {
            Ok(())
        });
        let topics = ok.take(Topics::new(&cfg.prefix, &node.id));
        let keep_alive = ok.take(keep_alive(cfg.keep_alive_s));
        let credentials = ok.take(Credentials::from_config(cfg));
        let transport = match &cfg.tls {
            Some(tls_cfg) => {
                ok.take(tls::client_config(tls_cfg)).map(|c| Some(Transport::tls_with_config(c.into())))
            }
            None => Some(None),
        };
        let result_qos = ok.take(qos(cfg.results.qos));
        let outbox = ok.take(match cfg.outbox_max_alarms {
            0 => Err(config_err("outbox_max_alarms", "must be at least 1".into())),
            n => Ok(n),
        });
        let (
            Some(topics),
            Some(keep_alive),
            Some(credentials),
            Some(transport),
            Some(result_qos),
            Some(outbox),
        ) = (topics, keep_alive, credentials, transport, result_qos, outbox)
        else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut options = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
        options
            .set_keep_alive(keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_request_channel_capacity(REQUEST_CAPACITY);
        if let Some(creds) = credentials {
            options.set_credentials(creds.username, creds.password.expose());
        }
        if let Some(transport) = transport {
            options.set_transport(transport);
        }
        Ok(MqttSettings {
            options,
            connect_timeout_s: CONNECT_TIMEOUT_S,
            result_qos,
            topics,
            outbox_max_alarms: outbox,
            broker: format!("{}:{}", cfg.host, cfg.port),
        })
    }

    /// The client options with `will`, the retained offline status the broker publishes if
    /// the connection dies.
    pub fn options_with_will(&self, will: LastWill) -> MqttOptions {
        let mut options = self.options.clone();
        options.set_last_will(will);
        options
    }
}

/// Keeps the error of a conversion and goes on, so that every problem is reported at once.
struct Collect<'a>(&'a mut Vec<PublishError>);

impl Collect<'_> {
    fn take<T>(&mut self, r: Result<T, PublishError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
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
        let settings = MqttSettings::new(&MqttConfig::default(), &node()).expect("valid");
        let options = settings.options_with_will(will());
        assert_eq!(options.client_id(), "inspectd-station-1");
        assert!(options.clean_session());
        assert_eq!(options.keep_alive(), Duration::from_secs(15));
        let will = options.last_will().expect("will");
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
        let shown =
            |errs: Vec<PublishError>| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        let err = shown(MqttSettings::new(&bad_qos, &node()).expect_err("qos 3"));
        assert!(err.contains("mqtt.results.qos"), "{err}");
        // Every problem at once, not just the first.
        let no_pings = MqttConfig { keep_alive_s: 0, password: Some("p".into()), ..Default::default() };
        let err = shown(MqttSettings::new(&no_pings, &node()).expect_err("keep-alive 0"));
        assert!(err.contains("mqtt.keep_alive_s") && err.contains("mqtt.username is not"), "{err}");
    }

    #[test]
    fn credentials_reach_the_connect_packet() {
        let cfg = MqttConfig { username: Some("u".into()), password: Some("p".into()), ..Default::default() };
        let settings = MqttSettings::new(&cfg, &node()).expect("valid");
        let login = settings.options.credentials().expect("login");
        assert_eq!((login.username.as_str(), login.password.as_str()), ("u", "p"));
    }
}
