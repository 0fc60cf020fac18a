//! One camera's decision: score → verdict → regions → alarm, in one place so the MQTT
//! result, the alarm and the evidence of a frame always agree on the threshold used.

use std::sync::Arc;
use std::time::SystemTime;

use ndarray::ArrayView2;

use super::alarm::{AckOutcome, AckTarget, AlarmConfigProblem, AlarmMachine, Observation};
use super::event::{AlarmEvent, AlarmState};
use super::regions::regions;
use super::threshold::ThresholdLayers;
use crate::config::types::AlarmConfig;
use crate::flow::frame::{Region, Verdict};
use crate::model::manifest::Threshold as Calibration;

/// Smallest region reported by default: every pixel over the threshold counts, because the
/// map is already blurred, so a lone hot pixel is rare and, when it happens, real.
pub const DEFAULT_MIN_AREA: u32 = 1;

/// A camera's decision could not be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionError {
    #[error("camera {camera}: {}", join(problems))]
    Alarm { camera: Arc<str>, problems: Vec<AlarmConfigProblem> },
    #[error("camera {camera}: {key} = {value} is not a finite number")]
    Threshold { camera: Arc<str>, key: &'static str, value: f32 },
}

fn join(problems: &[AlarmConfigProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Everything decided about one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub seq: u64,
    pub verdict: Verdict,
    pub score: f32,
    /// The threshold this frame was judged against (the override when one is set).
    pub threshold: f32,
    /// Where the map is at or above the threshold, strongest first (empty for OK frames).
    pub regions: Vec<Region>,
    /// The alarm this frame raised or cleared.
    pub alarm: Option<AlarmEvent>,
    /// The new alarm state when it changed, for the retained `alarm/state` topic.
    pub state: Option<AlarmState>,
}

/// What an acknowledgement did, and the new alarm state if it changed.
#[derive(Debug, Clone, PartialEq)]
pub struct AckReply {
    pub outcome: AckOutcome,
    pub state: Option<AlarmState>,
}

/// The decision stage of one camera. Owned by one thread or task: frames and
/// acknowledgements must reach it in the order they happened.
#[derive(Debug, Clone)]
pub struct CameraDecision {
    camera: Arc<str>,
    /// Model calibration < config < runtime set (see [`ThresholdLayers`]).
    thresholds: ThresholdLayers,
    min_area: u32,
    alarm: AlarmMachine,
    /// The state last handed out, so only changes are reported.
    reported: AlarmState,
}

impl CameraDecision {
    /// A camera judged against the model's `threshold`, with `alarm` debouncing.
    pub fn new(
        camera: impl Into<Arc<str>>,
        threshold: f32,
        alarm: AlarmConfig,
    ) -> Result<Self, DecisionError> {
        let camera = camera.into();
        check_finite(&camera, "threshold", threshold)?;
        let machine = AlarmMachine::new(camera.clone(), alarm)
            .map_err(|problems| DecisionError::Alarm { camera: camera.clone(), problems })?;
        Ok(CameraDecision {
            camera,
            thresholds: ThresholdLayers::new(threshold, None),
            min_area: DEFAULT_MIN_AREA,
            alarm: machine,
            reported: AlarmState::default(),
        })
    }

    /// Applies the camera's `threshold` setting, if any; it takes precedence over the model's.
    pub fn with_threshold_override(mut self, threshold: Option<f32>) -> Result<Self, DecisionError> {
        if let Some(t) = threshold {
            check_finite(&self.camera, "threshold", t)?;
        }
        self.thresholds.set_config(threshold);
        Ok(self)
    }

    /// The model's calibration statistics, which a runtime sensitivity is mapped through.
    pub fn with_calibration(mut self, calibration: Option<Calibration>) -> Self {
        let (model, _) = self.thresholds.model();
        self.thresholds.set_model(model, calibration);
        self
    }

    /// Drops regions smaller than `min_area` pixels.
    pub fn with_min_area(mut self, min_area: u32) -> Self {
        self.min_area = min_area;
        self
    }

    /// Takes a reloaded model's threshold; a configured override still wins. The alarm
    /// state is kept, so a reload does not clear or re-raise an alarm.
    pub fn set_model_threshold(&mut self, threshold: f32) -> Result<(), DecisionError> {
        let calibration = self.thresholds.model().1.cloned();
        self.set_model(threshold, calibration)
    }

    /// Takes a reloaded model's threshold and calibration statistics.
    pub fn set_model(
        &mut self,
        threshold: f32,
        calibration: Option<Calibration>,
    ) -> Result<(), DecisionError> {
        check_finite(&self.camera, "model threshold", threshold)?;
        self.thresholds.set_model(threshold, calibration);
        Ok(())
    }

    /// Replaces the camera's own threshold override (a config reload); `None` removes it.
    pub fn set_threshold_override(&mut self, threshold: Option<f32>) -> Result<(), DecisionError> {
        if let Some(t) = threshold {
            check_finite(&self.camera, "threshold", t)?;
        }
        self.thresholds.set_config(threshold);
        Ok(())
    }

    /// The threshold frames are judged against now.
    pub fn threshold(&self) -> f32 {
        self.thresholds.current().0
    }

    /// Every threshold layer, for changes at run time and the `threshold/state` echo.
    pub fn thresholds(&self) -> &ThresholdLayers {
        &self.thresholds
    }

    pub fn thresholds_mut(&mut self) -> &mut ThresholdLayers {
        &mut self.thresholds
    }

    pub fn camera(&self) -> &Arc<str> {
        &self.camera
    }

    /// Judges one scored frame captured at `at`.
    ///
    /// A NaN score (a broken model or device) is NG: an inspection that cannot vouch for a
    /// part must not pass it, and the alarm that follows makes the fault visible.
    pub fn decide(&mut self, seq: u64, score: f32, map: ArrayView2<f32>, at: SystemTime) -> Decision {
        let threshold = self.threshold();
        let verdict = if score >= threshold || score.is_nan() { Verdict::Ng } else { Verdict::Ok };
        let regions = match verdict {
            Verdict::Ng => regions(map, threshold, self.min_area),
            Verdict::Ok | Verdict::Invalid => Vec::new(),
        };
        let alarm = self.alarm.observe(Observation { seq, verdict, score, threshold, at });
        Decision { seq, verdict, score, threshold, regions, alarm, state: self.state_change() }
    }

    /// Applies an acknowledgement (`alarm/ack` payload) received at `at`.
    pub fn acknowledge(&mut self, target: &AckTarget, at: SystemTime) -> AckReply {
        let outcome = self.alarm.acknowledge(target, at);
        AckReply { outcome, state: self.state_change() }
    }

    /// The current alarm state (for the first retained publish after connecting).
    pub fn state(&self) -> AlarmState {
        self.alarm.state()
    }

    fn state_change(&mut self) -> Option<AlarmState> {
        let now = self.alarm.state();
        (now != self.reported).then(|| {
            self.reported = now.clone();
            now
        })
    }
}

fn check_finite(camera: &Arc<str>, key: &'static str, value: f32) -> Result<(), DecisionError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(DecisionError::Threshold { camera: camera.clone(), key, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::event::AlarmKind;
    use ndarray::{array, Array2};
    use std::time::{Duration, UNIX_EPOCH};

    fn at(seq: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(100 * seq)
    }

    fn camera(k: usize, n: usize, clear_after: usize, latch: bool) -> CameraDecision {
        CameraDecision::new("line1", 1.0, AlarmConfig { k, n, clear_after, latch }).expect("valid")
    }

    /// A 3×3 map whose maximum (the score) is `peak`, at the centre.
    fn map(peak: f32) -> Array2<f32> {
        let mut m = Array2::from_elem((3, 3), 0.1);
        m[(1, 1)] = peak;
        m
    }

    fn decide(d: &mut CameraDecision, seq: u64, score: f32) -> Decision {
        d.decide(seq, score, map(score).view(), at(seq))
    }

    #[test]
    fn score_at_the_threshold_is_ng_with_its_region_and_below_is_ok_without() {
        let mut d = camera(3, 5, 5, false);
        let ng = decide(&mut d, 0, 1.0);
        assert_eq!(ng.verdict, Verdict::Ng);
        assert_eq!(ng.regions, vec![Region { x: 1, y: 1, w: 1, h: 1, peak: 1.0, area: 1 }]);
        let ok = decide(&mut d, 1, 0.99);
        assert_eq!((ok.verdict, ok.regions.len()), (Verdict::Ok, 0));
    }

    #[test]
    fn repeated_ng_raises_then_ok_frames_clear_and_state_changes_are_reported_once() {
        let mut d = camera(2, 3, 2, false);
        assert!(decide(&mut d, 0, 3.0).alarm.is_none());
        let raise = decide(&mut d, 1, 3.0);
        assert_eq!(raise.alarm.as_ref().map(|a| a.kind), Some(AlarmKind::Raised));
        assert!(raise.state.as_ref().is_some_and(|s| s.active));
        assert_eq!(decide(&mut d, 2, 3.0).state, None, "no change, no retained publish");
        decide(&mut d, 3, 0.2);
        let clear = decide(&mut d, 4, 0.2);
        assert_eq!(clear.alarm.map(|a| (a.kind, a.seq)), Some((AlarmKind::Cleared, 4)));
        assert_eq!(clear.state, Some(AlarmState::default()));
    }

    #[test]
    fn the_override_wins_over_the_model_threshold_even_after_a_reload() {
        let mut d = camera(1, 1, 1, false).with_threshold_override(Some(5.0)).expect("finite");
        d.set_model_threshold(0.5).expect("finite");
        assert_eq!(d.threshold(), 5.0);
        let frame = decide(&mut d, 0, 3.0);
        assert_eq!((frame.verdict, frame.threshold), (Verdict::Ok, 5.0));
        let mut plain = camera(1, 1, 1, false);
        plain.set_model_threshold(2.5).expect("finite");
        assert_eq!(decide(&mut plain, 0, 3.0).threshold, 2.5);
    }

    #[test]
    fn a_nan_score_is_ng_and_feeds_the_alarm() {
        let mut d = camera(1, 1, 1, false);
        let frame = d.decide(0, f32::NAN, array![[f32::NAN]].view(), at(0));
        assert_eq!(frame.verdict, Verdict::Ng);
        assert!(frame.alarm.is_some());
    }

    #[test]
    fn latched_alarm_is_cleared_by_an_ack_and_reports_the_new_state() {
        let mut d = camera(1, 1, 1, true);
        decide(&mut d, 0, 3.0);
        let back_to_ok = decide(&mut d, 1, 0.2);
        assert!(back_to_ok.alarm.is_none());
        assert!(back_to_ok.state.is_some_and(|s| s.latched), "latching is a state change");
        let reply = d.acknowledge(&AckTarget::Current, at(2));
        assert!(matches!(reply.outcome, AckOutcome::Cleared(_)), "{reply:?}");
        assert_eq!(reply.state, Some(AlarmState::default()));
    }

    #[test]
    fn bad_settings_name_the_camera_and_key() {
        let err = CameraDecision::new("line1", f32::NAN, AlarmConfig::default()).expect_err("rejected");
        assert_eq!(err.to_string(), "camera line1: threshold = NaN is not a finite number");
        let bad = AlarmConfig { k: 0, clear_after: 0, ..AlarmConfig::default() };
        let err = CameraDecision::new("line1", 1.0, bad).expect_err("rejected").to_string();
        assert!(err.starts_with("camera line1: alarm.k:") && err.contains("alarm.clear_after"), "{err}");
    }
}
