//! Topic names of the MQTT contract (design.md §3), built in one place so publisher, tests and
//! documentation cannot disagree.

use crate::publish::error::PublishError;
use crate::publish::inbound::InboundKind;

/// The topics of one node: `{prefix}/{node}/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `{prefix}/{node}`, validated once so per-message topics only check the camera segment.
    base: String,
}

impl Topics {
    /// Checks the prefix (it may span levels, `plant/line3`) and the node id (one level).
    pub fn new(prefix: &str, node: &str) -> Result<Topics, PublishError> {
        for level in prefix.split('/') {
            check_level("mqtt.prefix", prefix, level)?;
        }
        check_level("node.id", node, node)?;
        Ok(Topics { base: format!("{prefix}/{node}") })
    }

    /// `{prefix}/{node}/status`: online/offline, retained, and the last will.
    pub fn node_status(&self) -> String {
        format!("{}/status", self.base)
    }

    pub fn camera_status(&self, camera: &str) -> Result<String, PublishError> {
        self.camera(camera, "status")
    }

    pub fn result(&self, camera: &str) -> Result<String, PublishError> {
        self.camera(camera, "result")
    }

    pub fn alarm(&self, camera: &str) -> Result<String, PublishError> {
        self.camera(camera, "alarm")
    }

    /// The camera-health alarm (frame health), beside the defect alarm.
    pub fn health_alarm(&self, camera: &str) -> Result<String, PublishError> {
        self.camera(camera, "health/alarm")
    }

    pub fn alarm_state(&self, camera: &str) -> Result<String, PublishError> {
        self.camera(camera, "alarm/state")
    }

    pub fn alarm_ack(&self, camera: &str) -> Result<String, PublishError> {
        self.camera(camera, "alarm/ack")
    }

    pub fn threshold_state(&self, camera: &str) -> Result<String, PublishError> {
        self.camera(camera, "threshold/state")
    }

    pub fn threshold_set(&self, camera: &str) -> Result<String, PublishError> {
        self.camera(camera, InboundKind::ThresholdSet.leaf())
    }

    /// `{station}/part`: one result per trigger.
    pub fn part(&self, station: &str) -> Result<String, PublishError> {
        self.camera(station, "part")
    }

    /// `{station}/ready`: the retained ready/busy handshake.
    pub fn ready(&self, station: &str) -> Result<String, PublishError> {
        self.camera(station, "ready")
    }

    /// One subscription per command for every camera, so the publisher needs no camera list
    /// and a camera added by a config reload is covered without re-subscribing.
    pub fn inbound_filter(&self, kind: InboundKind) -> String {
        format!("{}/+/{}", self.base, kind.leaf())
    }

    /// The camera id and command of a topic, or `None` when it is not a command topic of
    /// this node.
    pub fn inbound<'t>(&self, topic: &'t str) -> Option<(&'t str, InboundKind)> {
        let rest = topic.strip_prefix(self.base.as_str())?.strip_prefix('/')?;
        InboundKind::ALL.into_iter().find_map(|kind| {
            let camera = rest.strip_suffix(kind.leaf())?.strip_suffix('/')?;
            (!camera.is_empty() && !camera.contains('/')).then_some((camera, kind))
        })
    }

    fn camera(&self, camera: &str, leaf: &str) -> Result<String, PublishError> {
        check_level("camera id", camera, camera)?;
        Ok(format!("{}/{camera}/{leaf}", self.base))
    }
}

/// A topic level must be non-empty and free of wildcards and NUL, or the broker would reject
/// the publish (or, for `+`/`#`, a subscriber would match more than meant).
fn check_level(what: &'static str, value: &str, level: &str) -> Result<(), PublishError> {
    let reason = if level.is_empty() {
        "an MQTT topic level must not be empty"
    } else if level.contains(['+', '#']) {
        "MQTT wildcards '+' and '#' are not allowed"
    } else if level.contains('\0') {
        "NUL is not allowed in MQTT topics"
    } else if what != "mqtt.prefix" && level.contains('/') {
        "'/' would add a topic level"
    } else {
        return Ok(());
    };
    Err(PublishError::InvalidTopic { what, value: value.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_contract_topics() {
        let t = Topics::new("plant/line3", "station-1").expect("valid");
        assert_eq!(t.node_status(), "plant/line3/station-1/status");
        assert_eq!(t.result("cam1").expect("valid"), "plant/line3/station-1/cam1/result");
        assert_eq!(t.alarm_state("cam1").expect("valid"), "plant/line3/station-1/cam1/alarm/state");
        assert_eq!(t.inbound_filter(InboundKind::Ack), "plant/line3/station-1/+/alarm/ack");
        assert_eq!(t.inbound_filter(InboundKind::ThresholdSet), "plant/line3/station-1/+/threshold/set");
    }

    #[test]
    fn rejects_levels_that_would_break_the_topic_tree() {
        assert!(Topics::new("inspectd", "a/b").is_err());
        assert!(Topics::new("inspectd/", "n").is_err());
        assert!(Topics::new("insp+ectd", "n").is_err());
        let t = Topics::new("inspectd", "n").expect("valid");
        let err = t.alarm("cam#1").expect_err("wildcard");
        assert!(err.to_string().contains("cam#1"), "{err}");
    }

    #[test]
    fn finds_the_camera_and_command_of_a_command_topic() {
        let t = Topics::new("inspectd", "n").expect("valid");
        assert_eq!(t.inbound("inspectd/n/cam1/alarm/ack"), Some(("cam1", InboundKind::Ack)));
        assert_eq!(t.inbound("inspectd/n/cam1/threshold/set"), Some(("cam1", InboundKind::ThresholdSet)));
        assert_eq!(t.inbound("inspectd/n/st1/trigger"), Some(("st1", InboundKind::Trigger)));
        assert_eq!(t.inbound("inspectd/n/cam1/alarm"), None);
        assert_eq!(t.inbound("inspectd/n/cam1/threshold/state"), None);
        assert_eq!(t.inbound("inspectd/other/cam1/alarm/ack"), None);
        assert_eq!(t.inbound("inspectd/n/a/b/alarm/ack"), None);
        assert_eq!(t.inbound("inspectd/n//alarm/ack"), None);
    }
}
