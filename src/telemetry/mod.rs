//! The daemon's internal events (vector's `internal_events` are the model): every drop, error,
//! alarm and reload is a typed event whose [`Event::emit`] both logs it and counts it, so a
//! counter cannot exist without its log line, or a log line without its counter, and nothing is
//! counted in two places. [`Telemetry`] owns the counters; `service::metrics` registers them
//! for `/metrics` (every name in [`COUNTERS`]).

mod events;
mod mqtt;

pub use events::*;
use mqtt::MqttCounters;
pub use mqtt::*;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Names (under the `inspectd_` prefix, without `_total`) of every counter defined here.
pub const COUNTERS: &[&str] = &[
    "frames_captured",
    "frames_dropped",
    "scoring_batches",
    "scoring_errors",
    "alarms_raised",
    "alarms_not_queued",
    "evidence_errors",
    "reloads",
    "mqtt_results",
    "mqtt_results_dropped",
    "mqtt_alarms_delivered",
    "mqtt_alarms_refused",
    "mqtt_connects",
    "mqtt_connection_errors",
    "mqtt_commands_dropped",
    "mqtt_commands_invalid",
];

/// Why a frame was never decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The camera's edge was full and dropped its oldest frame: scoring fell behind.
    QueueFull,
    /// The frame did not have the model's input size.
    WrongSize,
    /// The batch holding the frame failed to score.
    ScoreError,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [DropReason::QueueFull, DropReason::WrongSize, DropReason::ScoreError];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::WrongSize => "wrong_size",
            DropReason::ScoreError => "score_error",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CameraLabel {
    pub camera: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DropLabels {
    pub camera: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ModelLabel {
    pub model: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The counters of the internal events; one per daemon (or replay), shared by its stages.
#[derive(Default)]
pub struct Telemetry {
    frames_captured: Family<CameraLabel, Counter>,
    frames_dropped: Family<DropLabels, Counter>,
    scoring_batches: Family<ModelLabel, Counter>,
    scoring_errors: Family<ModelLabel, Counter>,
    alarms_raised: Family<CameraLabel, Counter>,
    alarms_not_queued: Family<CameraLabel, Counter>,
    evidence_errors: Family<CameraLabel, Counter>,
    reloads: Family<OutcomeLabel, Counter>,
    mqtt: MqttCounters,
    /// All cameras together, for the one-line status systemd shows.
    alarms_raised_total: AtomicU64,
    /// Cameras whose evidence saving is failing now: logged once per episode, not per frame.
    evidence_failing: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("alarms_raised", &self.alarms_raised()).finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Registers every counter in [`COUNTERS`].
    pub fn register(&self, r: &mut Registry) {
        r.register("frames_captured", "Frames the camera's source delivered", self.frames_captured.clone());
        r.register("frames_dropped", "Frames never decided, by reason", self.frames_dropped.clone());
        r.register("scoring_batches", "Batches scored, per model", self.scoring_batches.clone());
        r.register("scoring_errors", "Batches that failed to score, per model", self.scoring_errors.clone());
        r.register("alarms_raised", "Alarms raised", self.alarms_raised.clone());
        r.register(
            "alarms_not_queued",
            "Raised or cleared alarms the outbox refused (full or unwritable): lost unless logged",
            self.alarms_not_queued.clone(),
        );
        r.register("evidence_errors", "Evidence files that could not be saved", self.evidence_errors.clone());
        r.register("reloads", "Configuration reloads, by outcome", self.reloads.clone());
        for outcome in ["applied", "refused"] {
            drop(self.reloads.get_or_create(&OutcomeLabel { outcome }));
        }
        self.register_mqtt(r);
    }

    /// Creates a camera's series at zero, so dashboards see them before the first event.
    pub fn add_camera(&self, camera: &str) {
        let label = CameraLabel { camera: camera.to_string() };
        for reason in DropReason::ALL {
            let labels = DropLabels { camera: camera.to_string(), reason: reason.label() };
            drop(self.frames_dropped.get_or_create(&labels));
        }
        drop(self.frames_captured.get_or_create(&label));
        drop(self.alarms_raised.get_or_create(&label));
        drop(self.alarms_not_queued.get_or_create(&label));
        drop(self.evidence_errors.get_or_create(&label));
    }

    pub fn add_model(&self, model: &str) {
        let label = ModelLabel { model: model.to_string() };
        drop(self.scoring_errors.get_or_create(&label));
        drop(self.scoring_batches.get_or_create(&label));
    }

    /// The counter a camera's source adds its delivered frames to (a handle: counting a frame
    /// is one atomic add). It keeps counting across source restarts and reloads.
    pub fn frames_captured(&self, camera: &str) -> Counter {
        self.frames_captured.get_or_create_owned(&CameraLabel { camera: camera.to_string() })
    }

    /// The counter a model's scoring loop adds its batches to.
    pub fn scoring_batches(&self, model: &str) -> Counter {
        self.scoring_batches.get_or_create_owned(&ModelLabel { model: model.to_string() })
    }

    /// Alarms raised since start, all cameras.
    pub fn alarms_raised(&self) -> u64 {
        self.alarms_raised_total.load(Ordering::Relaxed)
    }

    /// Frames of `camera` dropped for `reason` since start.
    pub fn frames_dropped(&self, camera: &str, reason: DropReason) -> u64 {
        self.frames_dropped
            .get_or_create(&DropLabels { camera: camera.to_string(), reason: reason.label() })
            .get()
    }

    fn dropped(&self, camera: &str, reason: DropReason) {
        self.frames_dropped
            .get_or_create(&DropLabels { camera: camera.to_string(), reason: reason.label() })
            .inc();
    }
}

/// An internal event: logs and counts.
pub trait Event {
    fn emit(self, t: &Telemetry);
}

/// One camera's per-frame metrics: cheap to call from the decision thread (atomic adds and a
/// short histogram lock, no allocation). Clones share the same series. Drops, errors and
/// alarms are not here: they are `telemetry` events.
#[derive(Debug, Clone)]
pub struct CameraMetrics {
    pub(crate) scored: Counter,
    pub(crate) score: Histogram,
    pub(crate) latency: Histogram,
}

impl CameraMetrics {
    /// A decided frame: its normalised score (`score_norm`) and capture-to-verdict latency.
    pub fn observe_result(&self, score_norm: f32, latency: Duration) {
        self.scored.inc();
        // The f32 nearest 0.2 lies above 0.2 as an f64; rounding to the digits an f32 carries
        // puts the scores users see in result messages into the buckets they expect.
        self.score.observe((f64::from(score_norm) * 1e6).round() / 1e6);
        self.latency.observe(latency.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(t: &Telemetry) -> String {
        let mut r = Registry::with_prefix("inspectd");
        t.register(&mut r);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        out
    }

    #[test]
    fn events_count_once_where_they_happen() {
        let t = Telemetry::default();
        t.add_camera("cam1");
        t.add_model("m");
        FrameWrongSize { camera: "cam1", size: (64, 64), model: (128, 128) }.emit(&t);
        BatchFailed { model: "m", cameras: &["cam1", "cam1"], error: &"oom" }.emit(&t);
        AlarmRaised { camera: "cam1" }.emit(&t);
        for _ in 0..3 {
            EvidenceFailed { camera: "cam1", error: &"disk full" }.emit(&t);
        }
        EvidenceSaved { camera: "cam1" }.emit(&t);
        Reload { outcome: Ok("none") }.emit(&t);
        let text = exposition(&t);
        for line in [
            "inspectd_frames_dropped_total{camera=\"cam1\",reason=\"wrong_size\"} 1",
            "inspectd_frames_dropped_total{camera=\"cam1\",reason=\"score_error\"} 2",
            "inspectd_scoring_errors_total{model=\"m\"} 1",
            "inspectd_alarms_raised_total{camera=\"cam1\"} 1",
            "inspectd_evidence_errors_total{camera=\"cam1\"} 3",
            "inspectd_reloads_total{outcome=\"applied\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert_eq!(t.alarms_raised(), 1);
        assert!(t.evidence_failing.lock().unwrap().is_empty(), "the episode ended");
    }
}
