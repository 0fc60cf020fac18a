//! The JSON payloads of the MQTT contract (design.md §3), documented for consumers in
//! `schema/mqtt.schema.json`.
//!
//! The structs carry only the message body; [`encode`] adds the schema version `"v": 1` to every
//! payload, so callers cannot forget it and a schema change is one constant. Optional fields are
//! written as `null` rather than left out: a PLC gateway maps a fixed set of keys to tags and a
//! missing key is harder to handle there than a null (the one exception is `replay`, which only
//! replay runs add). Times are RFC 3339 UTC strings with milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use crate::flow::frame::{Region, Verdict};

/// Version of the payload schema, sent as `"v"` in every message.
pub const SCHEMA_VERSION: u32 = 1;

/// `{prefix}/{node}/status`: retained; the broker publishes the `offline` form as last will.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub state: NodeState,
    /// inspectd version, so a fleet view can see what runs where.
    pub version: String,
    /// When this process started; a change tells consumers the daemon restarted.
    pub started_at: String,
    /// With state `error`: the stage that failed and why. The daemon exits after it, and the
    /// status stays until the restarted daemon says `online`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<StageFailure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    Online,
    Offline,
    /// A stage of the daemon failed; it is stopping so that systemd restarts it.
    Error,
}

/// Which stage of the daemon failed (`decide`, `score:part-a`, `source:cam1`, ...) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageFailure {
    pub stage: String,
    pub reason: String,
}

/// `{prefix}/{node}/{camera}/status`: retained, on change and every `status_interval_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraStatus {
    pub state: CameraState,
    /// Frames per second the source delivered over the last interval.
    pub fps: f64,
    /// Frames dropped before scoring because scoring fell behind a live source (since start).
    pub frames_dropped: u64,
    pub last_frame_at: Option<String>,
    pub last_scored_at: Option<String>,
    /// Name of the model bundle scoring this camera, when one is loaded.
    pub model: Option<String>,
    /// Why the camera is `degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    Starting,
    Streaming,
    /// Streaming, but its frames cannot be judged (frame health): `reason` says why.
    Degraded,
    Reconnecting,
    Error,
    Stopped,
}

/// `{prefix}/{node}/{camera}/result`: one scored frame; QoS from `[mqtt.results]`, not retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMessage {
    /// Per-camera frame sequence number; gaps mean frames were dropped before scoring.
    pub seq: u64,
    /// GStreamer presentation timestamp in nanoseconds, when the source has one.
    pub pts: Option<u64>,
    pub captured_at: String,
    pub scored_at: String,
    /// From capture to verdict, so consumers can see how stale a verdict is.
    pub latency_ms: f64,
    /// Raw anomaly score (model units).
    pub score: f32,
    /// Min-max normalised score with the threshold at 0.5 (anomalib's convention), from the
    /// model's calibration statistics; clipped to [0, 1].
    pub score_norm: f32,
    pub threshold: f32,
    pub verdict: Verdict,
    /// Connected anomalous regions, in the frame's pixels (sensor pixels for a model with a
    /// view; the frame as scaled to the model input for one without).
    pub regions: Vec<Region>,
    pub model: ModelRef,
    /// Set by `inspectd replay`, so live consumers can ignore re-scored recordings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<bool>,
    /// Why the verdict is `invalid` (frozen, underexposed, overexposed, out of focus).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which model bundle produced a verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub id: String,
    /// First 12 hex digits of the sha256 of the bundle's weights.safetensors, so a verdict can
    /// be traced to exact weights.
    pub sha: String,
}

/// `{prefix}/{node}/{camera}/alarm`: QoS 1, not retained, delivered through the durable outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmMessage {
    /// Same id on the raise and on the clear; consumers de-duplicate replays by it and `event`.
    pub alarm_id: String,
    pub event: AlarmEvent,
    /// Sequence number of the frame that raised or cleared the alarm.
    pub seq: u64,
    pub score: f32,
    pub threshold: f32,
    /// When the alarm was raised (also on the clear, so a clear alone is meaningful).
    pub started_at: String,
    /// Saved frame and heatmap, when evidence is kept for this alarm.
    pub evidence: Option<Evidence>,
    /// A camera-health alarm's reason (the last unusable frame's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// On a raise: the regions of the frame that raised it, in the frame's pixels (sensor
    /// pixels for a model with a view), so a PLC or robot can act on them. Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmEvent {
    Raised,
    Cleared,
}

/// `{prefix}/{node}/{station}/part`: one per trigger, QoS 1, not retained, delivered through
/// the durable outbox (a reject gate acts on it). De-duplicate by `part_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartMessage {
    pub part_id: String,
    /// The station (a lone triggered camera's own id).
    pub station: String,
    pub verdict: PartVerdict,
    /// Why the part is `invalid` or `timeout`; null otherwise.
    pub reason: Option<String>,
    /// The highest score of the station's cameras; null when no camera judged the part.
    pub score: Option<f32>,
    /// The regions and evidence of that camera.
    pub regions: Vec<Region>,
    pub evidence: Option<Evidence>,
    pub triggered_at: String,
    /// From the trigger to the last camera's frame; null when no frame came.
    pub trigger_to_frame_ms: Option<f64>,
    /// From the trigger to this result.
    pub trigger_to_result_ms: f64,
    /// Each camera's own verdict; a camera without a frame is absent.
    pub cameras: std::collections::BTreeMap<String, CameraPart>,
    /// The trigger's other fields, echoed so a PLC can match its own bookkeeping.
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// The verdict of a part: `NG` if any camera says NG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartVerdict {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "NG")]
    Ng,
    /// The trigger could not be served (unreadable, or the station was busy with a part).
    #[serde(rename = "invalid")]
    Invalid,
    /// Not every camera's frame arrived before the deadline.
    #[serde(rename = "timeout")]
    Timeout,
}

/// One camera's share of a part result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CameraPart {
    pub verdict: Verdict,
    pub score: f32,
    pub threshold: f32,
    pub seq: u64,
    pub regions: Vec<Region>,
    pub evidence: Option<Evidence>,
    pub trigger_to_frame_ms: f64,
}

/// `{prefix}/{node}/{station}/ready`: QoS 1, retained. `ready` is true when the station has
/// no part in progress and every camera of it is streaming: the PLC may trigger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyState {
    pub ready: bool,
    /// The part in progress, null when none.
    pub part_id: Option<String>,
    /// Cameras of the station that are not streaming.
    pub waiting_for: Vec<String>,
    pub since: String,
}

/// Paths of evidence files on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub frame: String,
    pub heatmap: String,
}

/// `{prefix}/{node}/{camera}/alarm/state`: retained, so a PLC gateway that (re)connects reads
/// the current alarm state instead of replaying events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmState {
    pub active: bool,
    /// The active (or latched) alarm; null when none.
    pub alarm_id: Option<String>,
    /// When the current alarm was raised; null when none.
    pub since: Option<String>,
    /// The alarm condition is gone but the alarm waits for an acknowledgement.
    pub latched: bool,
    pub acknowledged: bool,
}

/// Payload of `{prefix}/{node}/{camera}/alarm/ack`, sent by an operator or a PLC gateway. An
/// empty payload acknowledges the current alarm, so a push button needs no state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckPayload {
    /// Optional on the way in: simple gateways cannot always add it.
    #[serde(default)]
    pub v: Option<u32>,
    #[serde(default)]
    pub alarm_id: Option<String>,
}

/// A body with the schema version in front.
#[derive(Serialize)]
struct Versioned<'a, T> {
    v: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Serializes a message body as the JSON payload, with `"v": 1` added.
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Versioned { v: SCHEMA_VERSION, body })
}

/// A wall-clock instant as the contract writes times (RFC 3339 UTC, milliseconds).
pub fn timestamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    crate::util::time::rfc3339(since.as_secs() as i64, since.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::time::Duration;

    fn encoded(body: &impl Serialize) -> Value {
        serde_json::from_slice(&encode(body).expect("encodes")).expect("valid JSON")
    }

    #[test]
    fn every_payload_starts_with_the_schema_version() {
        let status = NodeStatus {
            state: NodeState::Offline,
            version: "0.1.0".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            failure: None,
        };
        assert_eq!(
            encoded(&status),
            json!({"v": 1, "state": "offline", "version": "0.1.0",
                   "started_at": "2026-01-01T00:00:00.000Z"})
        );
    }

    #[test]
    fn optional_fields_are_null_except_replay() {
        let result = ResultMessage {
            seq: 7,
            pts: None,
            captured_at: "t0".into(),
            scored_at: "t1".into(),
            latency_ms: 12.5,
            score: 2.0,
            score_norm: 0.5,
            threshold: 4.0,
            verdict: Verdict::Ok,
            regions: vec![],
            model: ModelRef { id: "m".into(), sha: "ab".into() },
            replay: None,
            reason: None,
        };
        let v = encoded(&result);
        assert_eq!(v["pts"], Value::Null);
        assert_eq!(v["verdict"], "OK");
        assert!(v.get("replay").is_none(), "replay is only written by replay runs");
        assert!(v.get("reason").is_none(), "reason is only written on invalid frames");
    }

    #[test]
    fn ack_payload_rejects_unknown_keys() {
        let ok: AckPayload = serde_json::from_str(r#"{"alarm_id": "a-1"}"#).expect("parses");
        assert_eq!(ok.alarm_id.as_deref(), Some("a-1"));
        assert!(serde_json::from_str::<AckPayload>(r#"{"alarm": "a-1"}"#).is_err());
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_878_248_123);
        assert_eq!(timestamp(at), "2026-11-28T15:04:08.123Z");
    }
}
