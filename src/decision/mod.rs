//! Per-camera decisions (design.md §1): threshold → verdict, regions of the anomaly map,
//! and the alarm state machine (k-of-n debounce, hysteresis, latch and acknowledgement).
//!
//! Everything here is synchronous and does no I/O: [`CameraDecision`] is cheap (a flood
//! fill over NG maps, a few counters per frame) and is owned by whichever thread or task
//! runs the decision stage, which also applies acknowledgements so that frames and acks
//! are seen in one order.

pub mod alarm;
pub mod camera;
pub mod event;
pub mod health;
pub mod regions;
pub mod threshold;

pub use alarm::{validate, AckOutcome, AckTarget, AlarmConfigProblem, AlarmMachine, Observation};
pub use camera::{AckReply, CameraDecision, Decision, DecisionError, DEFAULT_MIN_AREA};
pub use event::{AlarmEvent, AlarmKind, AlarmState};
pub use health::{FrameHealth, Unusable};
pub use regions::{regions, MAX_REGIONS};
pub use threshold::{
    off_scale, RuntimeThreshold, ThresholdChange, ThresholdLayers, ThresholdRequest, ThresholdSource,
    ThresholdState,
};

/// The threshold precedence, in one place for the daemon, reload and replay: a configured
/// threshold (`cameras.X.threshold`, or replay's `--threshold`) overrides the model's
/// calibrated one. Returns the base threshold and the override a [`CameraDecision`] is built
/// with, or `None` when there is neither.
pub fn thresholds(calibrated: Option<f32>, configured: Option<f32>) -> Option<(f32, Option<f32>)> {
    Some((calibrated.or(configured)?, configured))
}
