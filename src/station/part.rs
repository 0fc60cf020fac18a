//! One station's part in progress, and the part result it turns into: pure bookkeeping
//! (no I/O, no clock of its own), so the rules are unit-tested.
//!
//! A trigger opens a part. Each camera of the station reports at most one frame for it. When
//! every camera has reported, the part is done: NG if any camera says NG. When the deadline
//! passes first, the part is `timeout`, carrying the cameras that did report. A trigger that
//! arrives while a part is open is refused as `invalid` ("busy"), so a PLC that does not wait
//! for `ready` still gets exactly one answer per trigger.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::flow::frame::Verdict;
use crate::publish::messages::{timestamp, CameraPart, PartMessage, PartVerdict};
use crate::publish::TriggerRequest;

/// The part a station is waiting for.
#[derive(Debug, Clone)]
pub struct OpenPart {
    pub part_id: String,
    pub triggered_at: SystemTime,
    context: Map<String, Value>,
    /// What each camera reported so far.
    reported: BTreeMap<String, CameraPart>,
}

/// One camera's verdict on the part it was triggered for (from the decision stage).
#[derive(Debug, Clone)]
pub struct Observation {
    pub camera: String,
    pub station: String,
    pub part_id: String,
    pub result: CameraPart,
}

impl OpenPart {
    pub fn new(trigger: &TriggerRequest) -> OpenPart {
        OpenPart {
            part_id: trigger.part_id.clone(),
            triggered_at: trigger.received_at,
            context: trigger.context.clone(),
            reported: BTreeMap::new(),
        }
    }

    /// Records a camera's verdict; true once every camera in `cameras` has reported.
    pub fn report(&mut self, camera: &str, result: CameraPart, cameras: &[String]) -> bool {
        self.reported.entry(camera.to_string()).or_insert(result);
        cameras.iter().all(|c| self.reported.contains_key(c))
    }

    /// The part result: complete (`OK`/`NG`) or, with `missing` cameras, `timeout`.
    pub fn finish(self, station: &str, cameras: &[String], now: SystemTime) -> PartMessage {
        let missing: Vec<&str> =
            cameras.iter().filter(|c| !self.reported.contains_key(*c)).map(String::as_str).collect();
        let (verdict, reason) = if missing.is_empty() {
            let ng = self.reported.values().any(|c| c.verdict == Verdict::Ng);
            let unusable: Vec<&str> = self
                .reported
                .iter()
                .filter(|(_, c)| c.verdict == Verdict::Invalid)
                .map(|(camera, _)| camera.as_str())
                .collect();
            if ng {
                (PartVerdict::Ng, None)
            } else if !unusable.is_empty() {
                // A camera that could not judge its frame never lets the part pass.
                (PartVerdict::Invalid, Some(format!("unusable frame from {}", unusable.join(", "))))
            } else {
                (PartVerdict::Ok, None)
            }
        } else {
            (PartVerdict::Timeout, Some(format!("no frame from {} before the deadline", missing.join(", "))))
        };
        let worst = self.reported.values().max_by(|a, b| a.score.total_cmp(&b.score));
        PartMessage {
            part_id: self.part_id,
            station: station.to_string(),
            verdict,
            reason,
            score: worst.map(|c| c.score),
            regions: worst.map(|c| c.regions.clone()).unwrap_or_default(),
            evidence: worst.and_then(|c| c.evidence.clone()),
            triggered_at: timestamp(self.triggered_at),
            trigger_to_frame_ms: self.reported.values().map(|c| c.trigger_to_frame_ms).reduce(f64::max),
            trigger_to_result_ms: ms(now.duration_since(self.triggered_at).unwrap_or_default()),
            cameras: self.reported,
            context: self.context,
        }
    }
}

/// The answer to a trigger that cannot be served.
pub fn refused(trigger: &TriggerRequest, station: &str, reason: String, now: SystemTime) -> PartMessage {
    PartMessage {
        part_id: trigger.part_id.clone(),
        station: station.to_string(),
        verdict: PartVerdict::Invalid,
        reason: Some(reason),
        score: None,
        regions: Vec::new(),
        evidence: None,
        triggered_at: timestamp(trigger.received_at),
        trigger_to_frame_ms: None,
        trigger_to_result_ms: ms(now.duration_since(trigger.received_at).unwrap_or_default()),
        cameras: BTreeMap::new(),
        context: trigger.context.clone(),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(id: &str) -> TriggerRequest {
        TriggerRequest {
            station: "st".into(),
            part_id: id.into(),
            context: Map::from_iter([("lot".to_string(), Value::from(7))]),
            problem: None,
            received_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1000),
        }
    }

    fn camera(verdict: Verdict, score: f32, ms: f64) -> CameraPart {
        CameraPart {
            verdict,
            score,
            threshold: 1.0,
            seq: 3,
            regions: vec![],
            evidence: None,
            trigger_to_frame_ms: ms,
        }
    }

    fn cams() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn a_part_is_ng_when_any_camera_is_and_reports_the_worst_camera() {
        let mut part = OpenPart::new(&trigger("p1"));
        assert!(!part.report("a", camera(Verdict::Ok, 0.5, 20.0), &cams()));
        assert!(part.report("b", camera(Verdict::Ng, 2.0, 35.0), &cams()));
        let t = part.triggered_at + Duration::from_millis(80);
        let msg = part.finish("st", &cams(), t);
        assert_eq!((msg.verdict, msg.score, msg.reason), (PartVerdict::Ng, Some(2.0), None));
        assert_eq!((msg.trigger_to_frame_ms, msg.trigger_to_result_ms), (Some(35.0), 80.0));
        assert_eq!(msg.context.get("lot"), Some(&Value::from(7)), "the trigger's context is echoed");
        assert_eq!(msg.cameras.len(), 2);
    }

    #[test]
    fn all_ok_is_ok_and_a_missing_camera_is_a_timeout_naming_it() {
        let mut part = OpenPart::new(&trigger("p2"));
        part.report("a", camera(Verdict::Ok, 0.5, 20.0), &cams());
        let timed_out = part.clone().finish("st", &cams(), part.triggered_at);
        assert_eq!(timed_out.verdict, PartVerdict::Timeout);
        assert!(timed_out.reason.as_deref().is_some_and(|r| r.contains('b')), "{:?}", timed_out.reason);
        part.report("b", camera(Verdict::Ok, 0.7, 21.0), &cams());
        assert_eq!(part.finish("st", &cams(), SystemTime::UNIX_EPOCH).verdict, PartVerdict::Ok);
    }

    #[test]
    fn a_camera_reports_once_per_part() {
        let mut part = OpenPart::new(&trigger("p3"));
        part.report("a", camera(Verdict::Ok, 0.5, 20.0), &cams());
        part.report("a", camera(Verdict::Ng, 9.0, 25.0), &cams());
        part.report("b", camera(Verdict::Ok, 0.1, 20.0), &cams());
        assert_eq!(part.finish("st", &cams(), SystemTime::UNIX_EPOCH).verdict, PartVerdict::Ok);
    }
}
