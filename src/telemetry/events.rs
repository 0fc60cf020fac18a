//! The stages' events: frames dropped, scoring errors, alarms, evidence, reloads.

use std::fmt::Display;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use tracing::{error, info, warn};

use crate::flow::edge::Pushed;

use super::{CameraLabel, DropReason, Event, ModelLabel, OutcomeLabel, Telemetry};

/// A frame the scorer refused because its size is not the model's.
pub struct FrameWrongSize<'a> {
    pub camera: &'a str,
    pub size: (u32, u32),
    pub model: (usize, usize),
}

impl Event for FrameWrongSize<'_> {
    fn emit(self, t: &Telemetry) {
        let ((w, h), (mw, mh)) = (self.size, self.model);
        error!(camera = self.camera, "Frame is {w}x{h}, the model needs {mw}x{mh}; dropped.");
        t.dropped(self.camera, DropReason::WrongSize);
    }
}

/// A frame that does not fit its model's view (size, ROI, mask): dropped.
pub struct FrameOutsideView<'a> {
    pub camera: &'a str,
    pub error: &'a dyn Display,
}

impl Event for FrameOutsideView<'_> {
    fn emit(self, t: &Telemetry) {
        error!(camera = self.camera, "Frame dropped: {}", self.error);
        t.dropped(self.camera, DropReason::WrongSize);
    }
}

/// A batch that failed to score: its frames are dropped.
pub struct BatchFailed<'a> {
    pub model: &'a str,
    pub cameras: &'a [&'a str],
    pub error: &'a dyn Display,
}

impl Event for BatchFailed<'_> {
    fn emit(self, t: &Telemetry) {
        error!(model = self.model, frames = self.cameras.len(), "Scoring failed: {}", self.error);
        t.scoring_errors.get_or_create(&ModelLabel { model: self.model.to_string() }).inc();
        for camera in self.cameras {
            t.dropped(camera, DropReason::ScoreError);
        }
    }
}

/// An alarm was raised (counted once, here; the alarm line itself is logged by the decision).
pub struct AlarmRaised<'a> {
    pub camera: &'a str,
}

impl Event for AlarmRaised<'_> {
    fn emit(self, t: &Telemetry) {
        t.alarms_raised.get_or_create(&CameraLabel { camera: self.camera.to_string() }).inc();
        t.alarms_raised_total.fetch_add(1, Ordering::Relaxed);
    }
}

/// The outbox refused an alarm event: the one loss an operator must hear about.
pub struct AlarmNotQueued<'a> {
    pub camera: &'a str,
    pub alarm_id: &'a str,
    pub error: &'a dyn Display,
}

impl Event for AlarmNotQueued<'_> {
    fn emit(self, t: &Telemetry) {
        error!(camera = self.camera, alarm_id = self.alarm_id, "ALARM NOT QUEUED: {}", self.error);
        t.alarms_not_queued.get_or_create(&CameraLabel { camera: self.camera.to_string() }).inc();
    }
}

/// Evidence could not be saved. Counted every time, logged once per episode.
pub struct EvidenceFailed<'a> {
    pub camera: &'a str,
    pub error: &'a dyn Display,
}

impl Event for EvidenceFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.evidence_errors.get_or_create(&CameraLabel { camera: self.camera.to_string() }).inc();
        let first =
            t.evidence_failing.lock().unwrap_or_else(PoisonError::into_inner).insert(self.camera.into());
        if first {
            warn!(
                camera = self.camera,
                "Evidence not saved: {}; alarms still go out. Logged once until saving works again \
                 (inspectd_evidence_errors_total counts every one).",
                self.error
            );
        }
    }
}

/// Evidence was saved: ends a failure episode.
pub struct EvidenceSaved<'a> {
    pub camera: &'a str,
}

impl Event for EvidenceSaved<'_> {
    fn emit(self, t: &Telemetry) {
        if t.evidence_failing.lock().unwrap_or_else(PoisonError::into_inner).remove(self.camera) {
            info!(camera = self.camera, "Evidence saving works again.");
        }
    }
}

/// A SIGHUP reload, applied or refused.
pub struct Reload<'a> {
    pub outcome: Result<&'a str, &'a dyn Display>,
}

impl Event for Reload<'_> {
    fn emit(self, t: &Telemetry) {
        let outcome = match self.outcome {
            Ok(changes) => {
                info!(changes, "Reload applied.");
                "applied"
            }
            Err(e) => {
                warn!("Reload refused, the running configuration and models stay: {e}");
                "refused"
            }
        };
        t.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}

/// A camera's edge was full and dropped its oldest frame: scoring fell behind. Counted every
/// time; logged when an episode starts (`first`), and [`QueueCaughtUp`] ends it.
pub struct FrameQueueFull<'a> {
    pub camera: &'a str,
    pub first: bool,
}

impl Event for FrameQueueFull<'_> {
    fn emit(self, t: &Telemetry) {
        if self.first {
            warn!(
                camera = self.camera,
                "Scoring is behind this camera: its oldest waiting frames are dropped. Logged once \
                 until it catches up (inspectd_frames_dropped_total{{reason=\"queue_full\"}} counts \
                 every one)."
            );
        }
        t.dropped(self.camera, DropReason::QueueFull);
    }
}

/// A camera's edge took a frame without dropping one, after an episode of drops.
pub struct QueueCaughtUp<'a> {
    pub camera: &'a str,
    pub dropped: u64,
}

impl Event for QueueCaughtUp<'_> {
    fn emit(self, _: &Telemetry) {
        info!(camera = self.camera, dropped = self.dropped, "Scoring caught up with this camera.");
    }
}

/// Follows one producer's pushes onto a drop-oldest edge and emits [`FrameQueueFull`] for each
/// drop and [`QueueCaughtUp`] at the end of an episode of them.
#[derive(Debug, Default)]
pub struct QueueWatch {
    /// Frames dropped since the edge last took one without a drop (0: not behind).
    behind: u64,
}

impl QueueWatch {
    pub fn pushed(&mut self, camera: &str, pushed: &Pushed, t: &Telemetry) {
        match pushed {
            Pushed::DroppedOldest => {
                FrameQueueFull { camera, first: self.behind == 0 }.emit(t);
                self.behind += 1;
            }
            Pushed::Queued if self.behind > 0 => {
                QueueCaughtUp { camera, dropped: self.behind }.emit(t);
                self.behind = 0;
            }
            Pushed::Queued | Pushed::Closed => {}
        }
    }
}
