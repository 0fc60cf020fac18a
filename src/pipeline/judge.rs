//! The one judge of a scored frame, shared by the daemon's decision thread and `inspectd
//! replay`: frame in, "what to publish, what to save" out ([`judge`]), and the outputs that
//! carry it out ([`Outputs::apply`]). Replay used to wire its own copy, which saved evidence
//! for every NG frame, never published `alarm/state` and dropped errors; now the two cannot
//! drift apart.

use std::sync::Arc;
use std::time::Instant;

use tracing::warn;

use super::decide::{alarm_message, result_message, wants_result, CameraOutputs};
use super::scoring::ScoredFrame;
use crate::config::types::ResultPolicy;
use crate::decision::{AlarmEvent, AlarmKind, AlarmState, Decision, ThresholdState};
use crate::evidence::{EvidenceLimiter, EvidencePaths, EvidenceStore, Heat};
use crate::flow::frame::Verdict;
use crate::publish::messages::{self, ResultMessage};
use crate::publish::PublishHandle;
use crate::telemetry::{AlarmNotQueued, AlarmRaised, Event, EvidenceFailed, EvidenceSaved, Telemetry};

/// What one decided frame asks for.
#[derive(Debug)]
pub struct Judgement {
    pub decision: Decision,
    /// The `result` message, when the result policy publishes this frame.
    pub result: Option<ResultMessage>,
    /// Save the frame and its heatmap: an alarm was raised (`on_alarm`), or the frame is NG
    /// and `every_ng` allows one now.
    pub save_evidence: bool,
}

impl Judgement {
    pub fn alarm(&self) -> Option<&AlarmEvent> {
        self.decision.alarm.as_ref()
    }

    pub fn raised(&self) -> bool {
        self.alarm().is_some_and(|a| a.kind == AlarmKind::Raised)
    }
}

/// Decides `f` for camera `cam` and says what to publish and save. `limiter` rate-limits
/// `every_ng` evidence across cameras.
pub fn judge(
    camera: &str,
    cam: &mut CameraOutputs,
    f: &ScoredFrame,
    results: &ResultPolicy,
    limiter: &mut EvidenceLimiter,
    now: Instant,
) -> Judgement {
    let mut decision = cam.decision.decide(f.frame.seq, f.score, f.map.view(), f.frame.captured_at);
    // Found on the ROI's map; reported in the frame's pixels, so a PLC or robot can act on them.
    for region in &mut decision.regions {
        *region = region.clone().offset(f.roi.x, f.roi.y);
    }
    cam.decided += 1;
    let ng = decision.verdict == Verdict::Ng;
    let result = wants_result(results, decision.verdict, cam.decided).then(|| result_message(f, &decision));
    let raised = decision.alarm.as_ref().is_some_and(|a| a.kind == AlarmKind::Raised);
    let policy = cam.evidence;
    // A triggered camera's NG part always keeps its evidence: the part is rejected on it, and
    // the PLC sets the rate, not a free-running stream.
    let part_ng = ng && f.frame.part.is_some();
    let save_evidence =
        (raised && policy.on_alarm) || part_ng || (ng && policy.every_ng && limiter.allow(camera, now));
    Judgement { decision, result, save_evidence }
}

/// Where judgements go: MQTT (optional for replay), the evidence store (optional), telemetry.
pub struct Outputs {
    pub publisher: Option<PublishHandle>,
    pub evidence: Option<EvidenceStore>,
    pub telemetry: Arc<Telemetry>,
    /// Flag results as `replay: true`.
    pub replay: bool,
}

impl Outputs {
    /// Publishes the result, saves evidence, publishes the alarm event (durably) and the alarm
    /// state, as `j` asks. `camera` names the topics; `label` names evidence files (replay
    /// gives every recording its own). Returns the evidence saved.
    pub fn apply(
        &mut self,
        camera: &str,
        label: &str,
        f: &ScoredFrame,
        j: &Judgement,
    ) -> Option<EvidencePaths> {
        if let (Some(publisher), Some(result)) = (&self.publisher, &j.result) {
            let mut msg = result.clone();
            msg.replay = self.replay.then_some(true);
            if let Err(e) = publisher.publish_result(camera, &msg) {
                warn!(camera, "Result not published: {e}");
            }
        }
        let paths = if j.save_evidence { self.save_evidence(label, f, &j.decision) } else { None };
        if let Some(event) = j.alarm() {
            self.publish_alarm(camera, event, paths.clone(), &j.decision.regions);
        }
        if let Some(state) = &j.decision.state {
            self.publish_state(camera, state);
        }
        paths
    }

    fn save_evidence(&mut self, label: &str, f: &ScoredFrame, d: &Decision) -> Option<EvidencePaths> {
        let store = self.evidence.as_mut()?;
        let image = f.frame.to_image();
        let heat = Heat { roi: f.roi, map: f.map.view(), vmax: 2.0 * d.threshold, regions: &d.regions };
        match store.save(label, f.frame.seq, f.frame.captured_at, &image, heat) {
            Ok(paths) => {
                EvidenceSaved { camera: label }.emit(&self.telemetry);
                Some(paths)
            }
            Err(e) => {
                EvidenceFailed { camera: label, error: &e }.emit(&self.telemetry);
                None
            }
        }
    }

    /// A result message as it is (the invalid-frame path builds its own).
    pub fn publish_result(&self, camera: &str, mut msg: ResultMessage) {
        let Some(publisher) = &self.publisher else { return };
        msg.replay = self.replay.then_some(true);
        if let Err(e) = publisher.publish_result(camera, &msg) {
            warn!(camera, "Result not published: {e}");
        }
    }

    /// A camera-health alarm event, stored durably like a defect alarm, and logged.
    pub fn publish_health_alarm(&self, camera: &str, event: &AlarmEvent, reason: Option<String>) {
        if let Some(publisher) = &self.publisher {
            let mut msg = alarm_message(event, None);
            msg.reason.clone_from(&reason);
            if let Err(e) = publisher.publish_health_alarm_blocking(camera, &msg) {
                tracing::error!(camera, alarm_id = %msg.alarm_id, "Camera-health alarm not stored: {e}");
            }
        }
        tracing::warn!(camera, alarm_id = %event.alarm_id, event = ?event.kind, reason = reason.as_deref().unwrap_or(""),
            "Camera-health alarm: its frames cannot be judged.");
    }

    /// An alarm event, counted and logged, then stored durably in the outbox.
    /// `regions` (the frame's, in its pixels) go out with a raise.
    pub fn publish_alarm(
        &self,
        camera: &str,
        event: &AlarmEvent,
        paths: Option<EvidencePaths>,
        regions: &[crate::flow::frame::Region],
    ) {
        if event.kind == AlarmKind::Raised {
            AlarmRaised { camera }.emit(&self.telemetry);
        }
        if let Some(publisher) = &self.publisher {
            let mut msg = alarm_message(event, paths);
            if event.kind == AlarmKind::Raised {
                msg.regions = regions.to_vec();
            }
            // Durable: the outbox holds it until the broker acknowledges, across outages and
            // restarts. Logged after the store, so a logged alarm is one that was kept (or
            // refused, said above it).
            if let Err(e) = publisher.publish_alarm_blocking(camera, &msg) {
                AlarmNotQueued { camera, alarm_id: &msg.alarm_id, error: &e }.emit(&self.telemetry);
            }
        }
        tracing::info!(camera, alarm_id = %event.alarm_id, event = ?event.kind, "Alarm.");
    }

    /// The retained `alarm/state`.
    pub fn publish_state(&self, camera: &str, s: &AlarmState) {
        let Some(publisher) = &self.publisher else { return };
        let msg = messages::AlarmState {
            active: s.active,
            alarm_id: s.alarm_id.clone(),
            since: s.since.map(messages::timestamp),
            latched: s.latched,
            acknowledged: s.acknowledged,
        };
        if let Err(e) = publisher.publish_alarm_state(camera, &msg) {
            warn!(camera, "Alarm state not published: {e}");
        }
    }

    /// Publishes the camera's retained `threshold/state`.
    pub fn publish_threshold_state(&self, camera: &str, s: &ThresholdState) {
        let Some(publisher) = &self.publisher else { return };
        if let Err(e) = publisher.publish_threshold_state(camera, s) {
            warn!(camera, "Threshold state not published: {e}");
        }
    }
}
