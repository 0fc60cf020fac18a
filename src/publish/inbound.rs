//! Messages that come in over MQTT for a camera: alarm acknowledgements
//! (`{camera}/alarm/ack`) and runtime thresholds (`{camera}/threshold/set`). The poll loop
//! reads them and hands them to the decision stage through one bounded queue, so they are
//! applied between frames, in the order they arrived.

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::decision::{ThresholdChange, ThresholdRequest};
use crate::publish::acks::{parse_ack, AlarmAck};
use crate::publish::messages::SCHEMA_VERSION;

/// Commands waiting for the decision stage. They come from people and PLCs, so a few dozen
/// is plenty; beyond that they are dropped and counted rather than stalling MQTT.
pub(crate) const INBOUND_QUEUE: usize = 64;

/// What a topic of this node's command topics carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundKind {
    Ack,
    ThresholdSet,
    /// `{station}/trigger`: inspect one part (a lone triggered camera is its own station).
    Trigger,
}

impl InboundKind {
    pub const ALL: [InboundKind; 3] = [InboundKind::Ack, InboundKind::ThresholdSet, InboundKind::Trigger];

    /// The topic leaf after `{prefix}/{node}/{camera}/`.
    pub fn leaf(self) -> &'static str {
        match self {
            InboundKind::Ack => "alarm/ack",
            InboundKind::ThresholdSet => "threshold/set",
            InboundKind::Trigger => "trigger",
        }
    }

    /// For log lines and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            InboundKind::Ack => "ack",
            InboundKind::ThresholdSet => "threshold",
            InboundKind::Trigger => "trigger",
        }
    }
}

/// One command for the decision stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Ack(AlarmAck),
    Threshold(ThresholdRequest),
    Trigger(TriggerRequest),
}

/// A trigger for a station, read from `{station}/trigger`.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRequest {
    pub station: String,
    /// The part id sent, or one made up (`{station}-{unix ms}`) for a bare trigger.
    pub part_id: String,
    /// The payload's other fields.
    pub context: serde_json::Map<String, serde_json::Value>,
    /// Why the trigger cannot be served; the part result is then `invalid` with it.
    pub problem: Option<String>,
    pub received_at: std::time::SystemTime,
}

/// The receiving end of the commands; `MqttPublisher::start` returns it next to the publisher.
#[derive(Debug)]
pub struct InboundStream {
    rx: mpsc::Receiver<Inbound>,
}

impl InboundStream {
    pub(crate) fn new(rx: mpsc::Receiver<Inbound>) -> InboundStream {
        InboundStream { rx }
    }

    /// The next command; `None` once the publisher has stopped.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.rx.recv().await
    }

    /// A command if one is waiting, for callers that poll between frames.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        self.rx.try_recv().ok()
    }
}

/// Reads a command payload. An unreadable ack is an error (nothing to answer on); an
/// unreadable threshold request becomes a refusal the decision stage echoes on
/// `threshold/state`, so the sender learns why.
pub(crate) fn parse(kind: InboundKind, camera: &str, payload: &[u8]) -> Result<Inbound, String> {
    match kind {
        InboundKind::Ack => parse_ack(camera, payload).map(Inbound::Ack),
        InboundKind::ThresholdSet => Ok(Inbound::Threshold(parse_threshold(camera, payload))),
        InboundKind::Trigger => {
            Ok(Inbound::Trigger(parse_trigger(camera, payload, std::time::SystemTime::now())))
        }
    }
}

/// `{station}/trigger`: `{"part_id": "…", …}`; an empty payload is a bare trigger with a
/// made-up part id (a PLC without part tracking). Anything unreadable still yields a
/// request, carrying the problem, because every trigger must get a part result.
fn parse_trigger(station: &str, payload: &[u8], at: std::time::SystemTime) -> TriggerRequest {
    let unix_ms = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let made_up = format!("{station}-{unix_ms}");
    let request = |part_id: String, context, problem| TriggerRequest {
        station: station.to_string(),
        part_id,
        context,
        problem,
        received_at: at,
    };
    let text = String::from_utf8_lossy(payload);
    if text.trim().is_empty() {
        return request(made_up, serde_json::Map::new(), None);
    }
    let mut fields = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(fields)) => fields,
        Ok(_) | Err(_) => {
            let problem = "a trigger is a JSON object {\"part_id\": \"…\"} or empty".to_string();
            return request(made_up, serde_json::Map::new(), Some(problem));
        }
    };
    fields.remove("v");
    match fields.remove("part_id") {
        Some(serde_json::Value::String(id)) if !id.is_empty() && id.len() <= MAX_PART_ID => {
            request(id, fields, None)
        }
        Some(serde_json::Value::Number(n)) => request(n.to_string(), fields, None),
        None => request(made_up, fields, None),
        Some(other) => {
            let problem = format!(
                "part_id must be a non-empty string of at most {MAX_PART_ID} characters, not {other}"
            );
            request(made_up, fields, Some(problem))
        }
    }
}

/// Longest part id kept: it names evidence files and is echoed in every result.
const MAX_PART_ID: usize = 128;

/// `threshold/set`: exactly one of `threshold` (raw score), `sensitivity` (0..=1) or
/// `reset: true`, with an optional `by` naming the sender and an optional `"v": 1`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdSet {
    #[serde(default)]
    v: Option<u32>,
    #[serde(default)]
    threshold: Option<f32>,
    #[serde(default)]
    sensitivity: Option<f32>,
    #[serde(default)]
    reset: bool,
    #[serde(default)]
    by: Option<String>,
}

/// Longest `by` kept: it is echoed and persisted, not a place for payloads.
const MAX_BY: usize = 64;

/// Reads a `threshold/set` body (MQTT or the set-up API).
pub fn parse_threshold(camera: &str, payload: &[u8]) -> ThresholdRequest {
    let request = |change, set_by: String| ThresholdRequest { camera: camera.to_string(), change, set_by };
    let set: ThresholdSet = match std::str::from_utf8(payload)
        .map_err(|_| "payload is not UTF-8".to_string())
        .and_then(|text| serde_json::from_str(text).map_err(|e| format!("not a threshold request: {e}")))
    {
        Ok(set) => set,
        Err(reason) => return request(ThresholdChange::Unreadable(reason), "mqtt".into()),
    };
    let set_by = match set.by.as_deref().map(str::trim) {
        Some(by) if !by.is_empty() => by.chars().take(MAX_BY).collect(),
        _ => "mqtt".to_string(),
    };
    let change = match (set.v, set.threshold, set.sensitivity, set.reset) {
        (Some(v), ..) if v != SCHEMA_VERSION => ThresholdChange::Unreadable(format!(
            "schema version {v} is not supported (expected {SCHEMA_VERSION})"
        )),
        (_, Some(t), None, false) => ThresholdChange::Raw(t),
        (_, None, Some(s), false) => ThresholdChange::Sensitivity(s),
        (_, None, None, true) => ThresholdChange::Reset,
        _ => ThresholdChange::Unreadable(
            "give exactly one of \"threshold\" (raw score), \"sensitivity\" (0..1) or \"reset\": true".into(),
        ),
    };
    request(change, set_by)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(payload: &str) -> ThresholdChange {
        parse_threshold("cam1", payload.as_bytes()).change
    }

    #[test]
    fn reads_the_three_forms_and_who_sent_them() {
        assert_eq!(change(r#"{"threshold": 2.5}"#), ThresholdChange::Raw(2.5));
        assert_eq!(change(r#"{"v": 1, "sensitivity": 0.7}"#), ThresholdChange::Sensitivity(0.7));
        assert_eq!(change(r#"{"reset": true}"#), ThresholdChange::Reset);
        let r = parse_threshold("cam1", br#"{"threshold": 2.5, "by": "line3-plc"}"#);
        assert_eq!((r.camera.as_str(), r.set_by.as_str()), ("cam1", "line3-plc"));
        assert_eq!(parse_threshold("cam1", br#"{"threshold": 1}"#).set_by, "mqtt");
    }

    #[test]
    fn triggers_carry_their_part_id_and_context_and_a_bad_one_its_problem() {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1234);
        let t = parse_trigger("st1", br#"{"part_id": "A-17", "lot": 4}"#, at);
        assert_eq!((t.part_id.as_str(), t.problem.as_deref()), ("A-17", None));
        assert_eq!(t.context.get("lot"), Some(&serde_json::json!(4)));
        assert_eq!(parse_trigger("st1", b"", at).part_id, "st1-1234", "a bare trigger");
        assert_eq!(parse_trigger("st1", br#"{"part_id": 99}"#, at).part_id, "99");
        for bad in [&br#"{"part_id": ""}"#[..], b"go", br#"["A-17"]"#] {
            let t = parse_trigger("st1", bad, at);
            assert!(t.problem.is_some(), "{}", String::from_utf8_lossy(bad));
            assert_eq!(t.part_id, "st1-1234");
        }
    }

    #[test]
    fn unreadable_requests_carry_the_reason_for_the_refusal() {
        for (payload, reason) in [
            ("2.5", "not a threshold request"),
            (r#"{"threshold": 2.5, "sensitivity": 0.5}"#, "exactly one"),
            (r#"{}"#, "exactly one"),
            (r#"{"treshold": 2.5}"#, "treshold"),
            (r#"{"v": 2, "threshold": 2.5}"#, "version 2"),
            (r#"{"threshold": "high"}"#, "not a threshold request"),
        ] {
            match change(payload) {
                ThresholdChange::Unreadable(r) => assert!(r.contains(reason), "{payload}: {r}"),
                other => panic!("{payload} read as {other:?}"),
            }
        }
    }
}
