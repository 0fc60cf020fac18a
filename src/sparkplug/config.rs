//! `[sparkplug]` as written, and the settings it becomes: the ids checked, and the MQTT
//! options of `[mqtt]` (broker, TLS, login, keep-alive) reused for the edge node's own
//! connection under its own client id.
//!
//! ```toml
//! [sparkplug]
//! group_id = "line-3"
//! # edge_node_id = "station-1"   # default: node.id
//! # enabled = false              # keep the table, turn the edge node off
//! ```

pub use crate::config::types::SparkplugConfig;
use crate::publish::MqttSettings;
use crate::sparkplug::topics::{check_id, Topics};
use rumqttc::MqttOptions;

/// A `[sparkplug]` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparkplugError {
    #[error("sparkplug.{key}: {value:?} is not a Sparkplug id: it {reason}")]
    InvalidId { key: &'static str, value: String, reason: &'static str },
}

impl SparkplugError {
    /// The config key the error is about (`sparkplug.group_id`).
    pub fn config_key(&self) -> String {
        match self {
            SparkplugError::InvalidId { key, .. } => format!("sparkplug.{key}"),
        }
    }
}

/// Everything the edge node needs, checked and converted once.
#[derive(Clone)]
pub struct SparkplugSettings {
    pub group_id: String,
    pub edge_node_id: String,
    /// `[mqtt]`'s options with the edge node's client id and a clean session; the NDEATH will
    /// is added for each connection, because it carries that connection's bdSeq.
    pub options: MqttOptions,
    pub connect_timeout_s: u64,
    /// `host:port`, for log lines.
    pub broker: String,
    pub(crate) topics: Topics,
}

impl std::fmt::Debug for SparkplugSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The options hold the password; show only what identifies the connection.
        f.debug_struct("SparkplugSettings")
            .field("group_id", &self.group_id)
            .field("edge_node_id", &self.edge_node_id)
            .field("client_id", &self.options.client_id())
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl SparkplugSettings {
    /// Checks the ids (every problem at once) and derives the connection from `mqtt`. It does
    /// not look at `enabled`: whether to start the edge node at all is the caller's decision.
    pub fn new(
        cfg: &SparkplugConfig,
        node_id: &str,
        mqtt: &MqttSettings,
    ) -> Result<SparkplugSettings, Vec<SparkplugError>> {
        let edge_node_id = cfg.edge_node_id.clone().unwrap_or_else(|| node_id.to_string());
        let problems: Vec<SparkplugError> = [("group_id", &cfg.group_id), ("edge_node_id", &edge_node_id)]
            .into_iter()
            .filter_map(|(key, value)| {
                check_id(value).err().map(|reason| SparkplugError::InvalidId {
                    key,
                    value: value.clone(),
                    reason,
                })
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut options = mqtt.options.clone();
        // A client id of its own: sharing the publisher's would make the broker drop one
        // connection whenever the other connects. Sparkplug requires a clean session.
        options.set_client_id(format!("{}-sparkplug", mqtt.options.client_id())).set_clean_session(true);
        Ok(SparkplugSettings {
            topics: Topics::new(&cfg.group_id, &edge_node_id),
            group_id: cfg.group_id.clone(),
            edge_node_id,
            options,
            connect_timeout_s: mqtt.connect_timeout_s,
            broker: mqtt.broker.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MqttConfig, NodeConfig};
    use std::path::PathBuf;

    fn mqtt() -> MqttSettings {
        let node = NodeConfig {
            id: "station-1".into(),
            state_dir: PathBuf::from("/tmp"),
            shutdown_deadline_s: 1.0,
            readiness_timeout_s: 1.0,
        };
        MqttSettings::new(&MqttConfig::default(), &node).expect("valid mqtt")
    }

    fn parse(text: &str) -> Result<SparkplugConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn the_table_alone_turns_it_on_with_the_node_id_and_an_own_client_id() {
        let cfg = parse("group_id = \"line-3\"").expect("parses");
        assert!(cfg.enabled);
        let s = SparkplugSettings::new(&cfg, "station-1", &mqtt()).expect("valid");
        assert_eq!((s.group_id.as_str(), s.edge_node_id.as_str()), ("line-3", "station-1"));
        assert_eq!(s.options.client_id(), "inspectd-station-1-sparkplug");
        assert!(s.options.clean_session());
        assert!(s.options.last_will().is_none(), "the will is set per connection");
        assert_eq!(s.topics.nbirth(), "spBv1.0/line-3/NBIRTH/station-1");
    }

    #[test]
    fn unknown_keys_and_a_missing_group_are_refused() {
        let typo = parse("group_id = \"g\"\nedge_node = \"e\"").expect_err("unknown key");
        assert!(typo.to_string().contains("edge_node"), "{typo}");
        let missing = parse("edge_node_id = \"e\"").expect_err("no group");
        assert!(missing.to_string().contains("group_id"), "{missing}");
    }

    #[test]
    fn every_bad_id_is_reported_with_its_key() {
        let cfg = SparkplugConfig { enabled: true, group_id: "line/3".into(), edge_node_id: Some("".into()) };
        let errors = SparkplugSettings::new(&cfg, "station-1", &mqtt()).expect_err("bad ids");
        let keys: Vec<String> = errors.iter().map(SparkplugError::config_key).collect();
        assert_eq!(keys, ["sparkplug.group_id", "sparkplug.edge_node_id"]);
        let shown = errors[0].to_string();
        assert!(shown.starts_with("sparkplug.group_id: \"line/3\"") && shown.contains("'/'"), "{shown}");
    }

    #[test]
    fn a_node_id_with_a_wildcard_is_refused_as_the_edge_node_id() {
        let cfg = SparkplugConfig { enabled: true, group_id: "g".into(), edge_node_id: None };
        let errors = SparkplugSettings::new(&cfg, "station+1", &mqtt()).expect_err("wildcard");
        assert_eq!(errors[0].config_key(), "sparkplug.edge_node_id");
    }
}
