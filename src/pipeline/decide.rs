//! The decision stage: one thread that owns every camera's [`CameraDecision`], so frames and
//! alarm acknowledgements are applied in one order. For each scored frame it decides, publishes
//! the result (per the result policy), saves evidence and publishes alarm events and state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tracing::{error, info, warn};

use super::judge::{judge, Outputs};
use super::latest::{LatestDecisions, ScorePoint, ViewFrame};
use super::scoring::ScoredFrame;
use super::thresholds::ThresholdStore;
use crate::config::types::{CameraEvidence, ResultMode, ResultPolicy};
use crate::decision::{
    AckTarget, AlarmEvent, AlarmKind, CameraDecision, Decision, FrameHealth, ThresholdRequest, Unusable,
};
use crate::evidence::{EvidenceLimiter, EvidencePaths};
use crate::flow::frame::Verdict;
use crate::flow::trigger::PartTag;
use crate::model::manifest::Threshold as Calibration;
use crate::publish::messages::{self, AlarmMessage, CameraPart, Evidence, ModelRef, ResultMessage};
use crate::publish::AlarmAck;
use crate::station::{Observation, StationInput};

/// What the decision thread consumes.
pub enum DecisionInput {
    Frame(Box<ScoredFrame>),
    Ack(AlarmAck),
    /// A runtime threshold request (MQTT `threshold/set`, the set-up page, Sparkplug).
    Threshold(ThresholdRequest),
    /// A reload changed a camera's model threshold, its calibration or its config threshold.
    Retune {
        camera: String,
        model_threshold: f32,
        calibration: Option<Calibration>,
        override_threshold: Option<f32>,
    },
}

/// Why a camera's frames cannot be judged now (frame health): written by the decision stage,
/// read by the camera's status reporter; a streaming camera with a reason is `degraded`.
pub type Degraded = Arc<std::sync::Mutex<Option<String>>>;

/// Per-camera state of the decision stage.
pub struct CameraOutputs {
    pub decision: CameraDecision,
    pub evidence: CameraEvidence,
    /// Wall-clock ms of the last scored frame, read by the camera status reporter.
    pub last_scored_ms: Arc<AtomicU64>,
    /// Frames decided so far, for the `every_n` result policy.
    pub decided: u64,
    /// Prometheus series of this camera (absent in tools that do not serve metrics).
    pub metrics: Option<crate::telemetry::CameraMetrics>,
    /// Frame-health checks and the camera-health alarm (`None`: every frame is judged).
    pub health: Option<FrameHealth>,
    /// Why the camera is degraded while its camera-health alarm is active, for its status.
    pub degraded: Degraded,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct DecisionStats {
    pub frames: AtomicU64,
    pub ng: AtomicU64,
}

/// The decision thread's state.
pub struct DecisionStage {
    pub cameras: HashMap<String, CameraOutputs>,
    pub results: ResultPolicy,
    pub limiter: EvidenceLimiter,
    pub stats: Arc<DecisionStats>,
    pub outputs: Outputs,
    /// Runtime thresholds in the state directory; `None` in tools that take none (replay).
    pub thresholds: Option<ThresholdStore>,
    /// Where triggered cameras' verdicts go; `None` without triggered cameras.
    pub parts: Option<tokio::sync::mpsc::Sender<StationInput>>,
    pub latest: Arc<LatestDecisions>,
}

impl DecisionStage {
    /// Publishes every camera's current alarm state (retained), replacing whatever an earlier
    /// run left on the broker: a PLC gateway must not read a previous run's alarm as active.
    pub fn publish_initial_states(&self) {
        for (camera, cam) in &self.cameras {
            self.outputs.publish_state(camera, &cam.decision.state());
            self.outputs.publish_threshold_state(camera, &cam.decision.thresholds().state());
        }
    }

    /// Applies the runtime thresholds persisted in the state directory; a camera whose saved
    /// value is no longer valid keeps its configured threshold, with a warning.
    pub fn restore_thresholds(&mut self) {
        let Some(store) = &self.thresholds else { return };
        for (camera, cam) in &mut self.cameras {
            let Some(saved) = store.get(camera) else { continue };
            match cam.decision.thresholds_mut().restore(saved.clone()) {
                Ok(()) => {
                    info!(camera = %camera, threshold = cam.decision.threshold(), set_by = %saved.set_by,
                    "Runtime threshold restored from the state directory.");
                    if let Some(why) = cam.decision.thresholds().off_scale(camera) {
                        warn!("{why}");
                    }
                }
                Err(e) => warn!(camera = %camera, "Saved runtime threshold ignored: {e}"),
            }
        }
    }

    /// Decides until `input` closes (every scoring stage and the ack forwarder have
    /// finished); the body of the daemon's `decide` thread.
    pub fn run(mut self, input: Receiver<DecisionInput>) -> Result<(), String> {
        for item in input {
            match item {
                DecisionInput::Frame(f) => {
                    crate::util::supervise::failpoint("decide");
                    self.frame(*f)
                }
                DecisionInput::Ack(a) => self.ack(a),
                DecisionInput::Threshold(t) => self.set_threshold(t),
                DecisionInput::Retune { camera, model_threshold, calibration, override_threshold } => {
                    self.retune(&camera, model_threshold, calibration, override_threshold)
                }
            }
        }
        info!("Decisions finished.");
        Ok(())
    }

    fn frame(&mut self, f: ScoredFrame) {
        let camera = f.frame.camera.to_string();
        if !self.cameras.contains_key(&camera) {
            warn!(camera = %camera, "Frame from an unknown camera dropped.");
            return;
        }
        if let Some(reason) = self.unusable(&camera, &f) {
            return self.invalid(&camera, f, reason);
        }
        let Some(cam) = self.cameras.get_mut(&camera) else { return };
        let j = judge(&camera, cam, &f, &self.results, &mut self.limiter, Instant::now());
        cam.last_scored_ms.store(unix_ms(f.scored_at), Ordering::Relaxed);
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        if j.decision.verdict == Verdict::Ng {
            self.stats.ng.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(m) = &cam.metrics {
            m.observe_result(
                normalised(&f, j.decision.threshold),
                f.scored_at.duration_since(f.frame.captured_at).unwrap_or_default(),
            );
        }
        let d = &j.decision;
        let point = score_point(&f, d, cam.decision.state().active);
        self.latest.record_frame(&camera, point, &f.model, || view_frame(&f, d));
        let evidence = self.outputs.apply(&camera, &camera, &f, &j);
        if let Some(event) = j.alarm() {
            self.latest.record_alarm(&camera, event, evidence.as_ref());
        }
        if let Some(state) = &j.decision.state {
            self.latest.record_state(&camera, state);
        }
        if let (Some(tag), Some(parts)) = (&f.frame.part, &self.parts) {
            let observation = observation(&camera, tag, &f, &j.decision, evidence);
            // Blocks briefly when the station task is behind: a part verdict is never dropped.
            if parts.blocking_send(StationInput::Observed(observation)).is_err() {
                warn!(camera = %camera, part_id = %tag.part_id, "Part verdict not delivered: the station task has stopped.");
            }
        }
    }

    /// Frame health: why `f` cannot be judged, if it cannot. Raises and clears the camera's
    /// camera-health alarm and sets its `degraded` reason while that alarm is active.
    fn unusable(&mut self, camera: &str, f: &ScoredFrame) -> Option<String> {
        let cam = self.cameras.get_mut(camera)?;
        let health = cam.health.as_mut()?;
        let unusable = health.check(&f.frame, f.roi);
        let event = health.observe(&f.frame, unusable.is_some());
        let reason = unusable.as_ref().map(Unusable::reason);
        if let Some(event) = &event {
            self.outputs.publish_health_alarm(camera, event, reason.clone());
        }
        let mut degraded = cam.degraded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match (event.map(|e| e.kind), &reason) {
            (Some(AlarmKind::Cleared), _) => *degraded = None,
            (Some(AlarmKind::Raised), _) => degraded.clone_from(&reason),
            (None, Some(r)) if degraded.is_some() => *degraded = Some(r.clone()),
            _ => {}
        }
        reason
    }

    /// A frame too broken to judge: verdict `invalid` with the reason, always published (like
    /// an NG frame), never counted towards the defect alarm, and a triggered camera's part
    /// is answered `invalid`.
    fn invalid(&mut self, camera: &str, f: ScoredFrame, reason: String) {
        let Some(cam) = self.cameras.get_mut(camera) else { return };
        cam.last_scored_ms.store(unix_ms(f.scored_at), Ordering::Relaxed);
        cam.decided += 1;
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        let d = Decision {
            seq: f.frame.seq,
            verdict: Verdict::Invalid,
            score: f.score,
            threshold: cam.decision.threshold(),
            regions: Vec::new(),
            alarm: None,
            state: None,
        };
        let point = score_point(&f, &d, cam.decision.state().active);
        self.latest.record_frame(camera, point, &f.model, || view_frame(&f, &d));
        if wants_result(&self.results, d.verdict, cam.decided) {
            let mut msg = result_message(&f, &d);
            msg.reason = Some(reason);
            self.outputs.publish_result(camera, msg);
        }
        if let (Some(tag), Some(parts)) = (&f.frame.part, &self.parts) {
            let observation = observation(camera, tag, &f, &d, None);
            if parts.blocking_send(StationInput::Observed(observation)).is_err() {
                warn!(camera, part_id = %tag.part_id, "Part verdict not delivered: the station task has stopped.");
            }
        }
    }

    fn ack(&mut self, a: AlarmAck) {
        let Some(cam) = self.cameras.get_mut(&a.camera) else {
            warn!(camera = %a.camera, "Acknowledgement for an unknown camera ignored.");
            return;
        };
        let target = a.alarm_id.clone().map_or(AckTarget::Current, AckTarget::Id);
        let reply = cam.decision.acknowledge(&target, SystemTime::now());
        info!(camera = %a.camera, outcome = ?reply.outcome, "Alarm acknowledgement received.");
        if let crate::decision::AckOutcome::Cleared(event) = &reply.outcome {
            self.outputs.publish_alarm(&a.camera, event, None, &[]);
            self.latest.record_alarm(&a.camera, event, None);
        }
        if let Some(state) = &reply.state {
            self.outputs.publish_state(&a.camera, state);
            self.latest.record_state(&a.camera, state);
        }
    }

    /// Applies a runtime threshold between two frames, persists it and echoes the outcome
    /// (accepted or refused, with the reason) on the retained `threshold/state`.
    fn set_threshold(&mut self, t: ThresholdRequest) {
        let Some(cam) = self.cameras.get_mut(&t.camera) else {
            warn!(camera = %t.camera, "Threshold request for an unknown camera ignored.");
            return;
        };
        let at = messages::timestamp(SystemTime::now());
        match cam.decision.thresholds_mut().apply(&t.change, &t.set_by, &at) {
            Ok(runtime) => {
                info!(camera = %t.camera, threshold = cam.decision.threshold(), set_by = %t.set_by,
                    source = ?cam.decision.thresholds().current().1, "Threshold set at run time.");
                if let Some(store) = &mut self.thresholds {
                    if let Err(e) = store.set(&t.camera, runtime) {
                        error!(camera = %t.camera, "The new threshold applies but will not survive a restart: {e}");
                    }
                }
            }
            Err(reason) => {
                warn!(camera = %t.camera, set_by = %t.set_by, "Threshold request refused: {reason}")
            }
        }
        self.outputs.publish_threshold_state(&t.camera, &cam.decision.thresholds().state());
    }

    fn retune(
        &mut self,
        camera: &str,
        model: f32,
        calibration: Option<Calibration>,
        configured: Option<f32>,
    ) {
        if let Some(cam) = self.cameras.get_mut(camera) {
            let d = &mut cam.decision;
            match d.set_model(model, calibration).and_then(|()| d.set_threshold_override(configured)) {
                Ok(()) => info!(camera, threshold = d.threshold(), "Threshold updated by reload."),
                Err(e) => warn!(camera, "Threshold not updated: {e}"),
            }
            if let Some(why) = d.thresholds().off_scale(camera) {
                warn!("{why}");
            }
            self.outputs.publish_threshold_state(camera, &d.thresholds().state());
        }
    }
}

/// A decided frame as the score history keeps it.
fn score_point(f: &ScoredFrame, d: &Decision, alarm_active: bool) -> ScorePoint {
    ScorePoint {
        t: unix_ms(f.frame.captured_at),
        seq: f.frame.seq,
        score: d.score,
        threshold: d.threshold,
        verdict: d.verdict,
        alarm_active,
    }
}

/// The live-view copy of a decided frame (made only while someone watches).
fn view_frame(f: &ScoredFrame, d: &Decision) -> ViewFrame {
    ViewFrame {
        seq: f.frame.seq,
        captured_at: f.frame.captured_at,
        width: f.frame.width,
        height: f.frame.height,
        rgb: f.frame.rgb.clone(),
        map: f.map.clone(),
        roi: f.roi,
        regions: d.regions.clone(),
        score: d.score,
        threshold: d.threshold,
        verdict: d.verdict,
    }
}

/// A triggered camera's verdict on its part, for the station task.
fn observation(
    camera: &str,
    tag: &PartTag,
    f: &ScoredFrame,
    d: &Decision,
    evidence: Option<EvidencePaths>,
) -> Observation {
    let to_frame = f.frame.captured_at.duration_since(tag.triggered_at).unwrap_or_default();
    Observation {
        camera: camera.to_string(),
        station: tag.station.to_string(),
        part_id: tag.part_id.to_string(),
        result: CameraPart {
            verdict: d.verdict,
            score: f.score,
            threshold: d.threshold,
            seq: f.frame.seq,
            regions: d.regions.clone(),
            evidence: evidence.map(|p| Evidence {
                frame: p.frame.display().to_string(),
                heatmap: p.heatmap.display().to_string(),
            }),
            trigger_to_frame_ms: to_frame.as_secs_f64() * 1e3,
        },
    }
}

/// The `alarm` payload for an alarm event, with the evidence saved for it (daemon and replay).
pub fn alarm_message(event: &AlarmEvent, paths: Option<EvidencePaths>) -> AlarmMessage {
    AlarmMessage {
        alarm_id: event.alarm_id.clone(),
        event: match event.kind {
            AlarmKind::Raised => messages::AlarmEvent::Raised,
            AlarmKind::Cleared => messages::AlarmEvent::Cleared,
        },
        seq: event.seq,
        score: event.score,
        threshold: event.threshold,
        started_at: messages::timestamp(event.started_at),
        evidence: paths.map(|p| Evidence {
            frame: p.frame.display().to_string(),
            heatmap: p.heatmap.display().to_string(),
        }),
        reason: None,
        regions: Vec::new(),
    }
}

pub(crate) fn wants_result(policy: &ResultPolicy, verdict: Verdict, decided: u64) -> bool {
    match policy.mode {
        ResultMode::All => true,
        // An invalid frame goes out like an NG one: a consumer must see the camera cannot judge.
        ResultMode::Ng => verdict != Verdict::Ok,
        ResultMode::EveryN => {
            verdict != Verdict::Ok || decided % policy.every.max(1) == 1 % policy.every.max(1)
        }
    }
}

/// The `result` payload for a decided frame.
pub fn result_message(f: &ScoredFrame, d: &Decision) -> ResultMessage {
    let latency = f.scored_at.duration_since(f.frame.captured_at).unwrap_or_default();
    ResultMessage {
        seq: f.frame.seq,
        pts: f.frame.pts.map(|p| p.as_nanos() as u64),
        captured_at: messages::timestamp(f.frame.captured_at),
        scored_at: messages::timestamp(f.scored_at),
        latency_ms: latency.as_secs_f64() * 1e3,
        score: f.score,
        score_norm: normalised(f, d.threshold),
        threshold: d.threshold,
        verdict: d.verdict,
        regions: d.regions.clone(),
        model: ModelRef { id: f.model.id.clone(), sha: f.model.sha.clone() },
        replay: None,
        reason: None,
    }
}

/// The model's min-max normalisation around the threshold in force (0.5 at the threshold);
/// without calibration statistics, `0.5 · score / threshold`, clipped to [0, 1].
fn normalised(f: &ScoredFrame, threshold: f32) -> f32 {
    match &f.model.threshold {
        Some(t) => {
            let mut t = t.clone();
            t.image = threshold;
            t.normalise(f.score)
        }
        None if threshold > 0.0 => (0.5 * f.score / threshold).clamp(0.0, 1.0),
        None => 0.0,
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_policies_select_frames() {
        let every3 = ResultPolicy { mode: ResultMode::EveryN, every: 3, qos: 0 };
        let sent: Vec<u64> = (1..=7).filter(|&n| wants_result(&every3, Verdict::Ok, n)).collect();
        assert_eq!(sent, vec![1, 4, 7]);
        assert!(wants_result(&every3, Verdict::Ng, 2), "NG frames always go out");
        let ng = ResultPolicy { mode: ResultMode::Ng, every: 1, qos: 0 };
        assert!(!wants_result(&ng, Verdict::Ok, 1) && wants_result(&ng, Verdict::Ng, 1));
    }
}
