//! The live handles health and metrics are read from, collected in one place as the daemon
//! starts its stages: source status channels, scoring and decision stats, the publisher and
//! the telemetry counters.
//!
//! The board holds only handles the stages already share (watch receivers, `Arc`ed atomics),
//! so the stages know nothing about health, and a [`Health`] snapshot or a metrics update is
//! a handful of atomic loads under a short lock.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::metrics::Metrics;
use super::watchdog::{CameraHealth, Health, ScorerHealth};
use std::sync::mpsc::SyncSender;

use crate::pipeline::decide::{DecisionInput, DecisionStats};
use crate::pipeline::latest::{Latest, LatestDecisions};
use crate::pipeline::scoring::ScoringStats;
use crate::publish::PublishHandle;
use crate::source::SourceStatus;
use crate::telemetry::{DropReason, Telemetry};

/// One enabled camera.
struct Camera {
    id: String,
    /// Name of the model (in `[models]`) whose scoring loop takes its frames.
    model: String,
    status: watch::Receiver<SourceStatus>,
}

struct Scorer {
    model: String,
    stats: Arc<ScoringStats>,
}

#[derive(Default)]
struct Parts {
    models_loaded: bool,
    stopping: bool,
    failed: Option<String>,
    cameras: Vec<Camera>,
    scorers: Vec<Scorer>,
    publisher: Option<PublishHandle>,
    decisions: Option<Arc<DecisionStats>>,
    telemetry: Option<Arc<Telemetry>>,
    ui: Option<UiHandles>,
}

/// What the set-up API reads and where its changes go.
#[derive(Clone)]
pub struct UiHandles {
    pub latest: Arc<LatestDecisions>,
    pub decide: SyncSender<DecisionInput>,
}

/// One camera as the set-up API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CameraView {
    pub id: String,
    pub model: String,
    pub state: String,
    pub fps: f64,
    pub frames: u64,
    pub frames_dropped: u64,
    /// The bundle id of the model that scored the latest frame.
    pub model_id: Option<String>,
    pub last: Option<Latest>,
}

/// Shared, cloneable registry of what the service is made of right now.
#[derive(Clone, Default)]
pub struct HealthBoard {
    parts: Arc<Mutex<Parts>>,
}

impl HealthBoard {
    pub fn new() -> HealthBoard {
        HealthBoard::default()
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, Parts> {
        // The parts are plain handles; a panic elsewhere cannot leave them half-updated.
        self.parts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every model is loaded and warmed up. Call it once every camera and scoring loop is on
    /// the board: readiness counts the cameras it sees, so an empty board must not look ready.
    pub fn set_models_loaded(&self, loaded: bool) {
        self.parts().models_loaded = loaded;
    }

    /// Adds (or, after a reload, replaces) the camera `id`, fed to `model`'s scoring loop.
    pub fn add_camera(&self, id: &str, model: &str, status: watch::Receiver<SourceStatus>) {
        let mut p = self.parts();
        p.cameras.retain(|c| c.id != id);
        p.cameras.push(Camera { id: id.to_string(), model: model.to_string(), status });
    }

    /// Adds (or replaces) the scoring loop of `model`.
    pub fn add_scorer(&self, model: &str, stats: Arc<ScoringStats>) {
        let mut p = self.parts();
        p.scorers.retain(|s| s.model != model);
        p.scorers.push(Scorer { model: model.to_string(), stats });
    }

    pub fn set_publisher(&self, publisher: PublishHandle) {
        self.parts().publisher = Some(publisher);
    }

    pub fn set_decisions(&self, stats: Arc<DecisionStats>) {
        self.parts().decisions = Some(stats);
    }

    pub fn set_telemetry(&self, telemetry: Arc<Telemetry>) {
        self.parts().telemetry = Some(telemetry);
    }

    pub fn set_ui(&self, ui: UiHandles) {
        self.parts().ui = Some(ui);
    }

    pub fn ui(&self) -> Option<UiHandles> {
        self.parts().ui.clone()
    }

    /// Every camera for the set-up API.
    pub fn camera_views(&self) -> Vec<CameraView> {
        let p = self.parts();
        let latest = p.ui.as_ref().map(|u| u.latest.clone());
        p.cameras
            .iter()
            .map(|c| {
                let s = c.status.borrow().clone();
                let dropped = p
                    .telemetry
                    .as_ref()
                    .map_or(0, |t| DropReason::ALL.iter().map(|r| t.frames_dropped(&c.id, *r)).sum());
                CameraView {
                    id: c.id.clone(),
                    model: c.model.clone(),
                    state: format!("{:?}", s.state).to_lowercase(),
                    fps: s.fps,
                    frames: s.frames,
                    frames_dropped: dropped,
                    model_id: latest.as_ref().and_then(|l| l.model(&c.id)).map(|m| m.id.clone()),
                    last: latest.as_ref().and_then(|l| l.get(&c.id)),
                }
            })
            .collect()
    }

    /// Shutdown began: `/readyz` answers 503 from now on.
    pub fn set_stopping(&self) {
        let mut p = self.parts();
        p.stopping = true;
        // The API's sender of the decision channel must go, so the decision thread can drain.
        p.ui = None;
    }

    /// A stage died: `/readyz` fails and the watchdog stops pinging, naming it.
    pub fn set_failed(&self, stage: &str, reason: &str) {
        self.parts().failed.get_or_insert_with(|| format!("stage {stage} failed: {reason}"));
    }

    /// The service now, for the readiness and watchdog rules.
    pub fn snapshot(&self) -> Health {
        let p = self.parts();
        let cameras = p
            .cameras
            .iter()
            .map(|c| {
                let s = c.status.borrow();
                CameraHealth { id: c.id.clone(), state: s.state, fps: s.fps }
            })
            .collect();
        let scorers =
            p.scorers.iter().map(|s| scorer_health(s, &p.cameras, p.telemetry.as_deref())).collect();
        Health {
            models_loaded: p.models_loaded,
            cameras,
            mqtt_connected: p.publisher.as_ref().is_some_and(PublishHandle::is_connected),
            scorers,
            alarms_raised: p.telemetry.as_ref().map_or(0, |t| t.alarms_raised()),
            stopping: p.stopping,
            failed: p.failed.clone(),
        }
    }

    /// Sets the gauges that reflect the stages' state now into `metrics` (called per scrape);
    /// counters need no copying, the stages count into `telemetry`'s.
    pub fn update_metrics(&self, metrics: &Metrics) {
        let p = self.parts();
        for c in &p.cameras {
            metrics.update_camera(&c.id, &c.status.borrow());
        }
        for s in &p.scorers {
            metrics.update_scorer(&s.model, &s.stats);
        }
        if let Some(publisher) = &p.publisher {
            metrics.update_publisher(publisher.outbox_depth(), publisher.is_connected());
        }
    }
}

/// A scoring loop's heartbeat, and roughly how many frames wait for it: what its cameras
/// delivered, less what their edges dropped and what it scored. The source publishes its frame
/// count at most twice a second, so this can lag; it only explains a stall, it decides nothing.
fn scorer_health(s: &Scorer, cameras: &[Camera], telemetry: Option<&Telemetry>) -> ScorerHealth {
    let beat = s.stats.heartbeat_ms.load(Ordering::Relaxed);
    let dropped = |c: &Camera| telemetry.map_or(0, |t| t.frames_dropped(&c.id, DropReason::QueueFull));
    let (delivered, dropped) = cameras
        .iter()
        .filter(|c| c.model == s.model)
        .fold((0u64, 0u64), |(f, d), c| (f + c.status.borrow().frames, d + dropped(c)));
    let scored = s.stats.frames_scored.load(Ordering::Relaxed);
    ScorerHealth {
        model: s.model.clone(),
        last_beat: (beat > 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_millis(beat)),
        frames_waiting: delivered.saturating_sub(dropped).saturating_sub(scored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceState;

    #[test]
    fn snapshot_reads_the_live_handles() {
        let board = HealthBoard::new();
        let (tx, rx) = watch::channel(SourceStatus::starting());
        let stats = Arc::new(ScoringStats::default());
        let telemetry = Arc::new(Telemetry::default());
        board.set_telemetry(telemetry.clone());
        board.add_camera("cam1", "part-a", rx);
        crate::telemetry::Event::emit(
            crate::telemetry::FrameQueueFull { camera: "cam1", first: true },
            &telemetry,
        );
        board.add_scorer("part-a", stats.clone());
        let h = board.snapshot();
        assert_eq!(h.cameras[0].state, SourceState::Starting);
        assert_eq!(h.scorers[0].last_beat, None, "no heartbeat before the loop runs");
        assert!(!h.mqtt_connected && !h.models_loaded);

        let mut s = SourceStatus::starting();
        (s.state, s.fps, s.frames) = (SourceState::Streaming, 25.0, 10);
        tx.send_replace(s);
        stats.frames_scored.store(6, Ordering::Relaxed);
        stats.heartbeat_ms.store(1_000, Ordering::Relaxed);
        board.set_models_loaded(true);
        let h = board.snapshot();
        assert_eq!((h.cameras[0].state, h.cameras[0].fps), (SourceState::Streaming, 25.0));
        assert_eq!(h.scorers[0].frames_waiting, 3, "10 delivered - 1 dropped - 6 scored");
        assert_eq!(h.scorers[0].last_beat, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1)));
        assert!(h.models_loaded);
    }

    #[test]
    fn re_adding_a_camera_replaces_it() {
        let board = HealthBoard::new();
        for _ in 0..2 {
            let (_, rx) = watch::channel(SourceStatus::starting());
            board.add_camera("cam1", "part-a", rx);
        }
        assert_eq!(board.snapshot().cameras.len(), 1);
    }
}
