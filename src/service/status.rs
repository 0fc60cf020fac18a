//! Camera status messages: published (retained) on every change of the source's state and
//! every `status_interval_s`, with the frame rate and the times of the last frame and verdict.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::pipeline::decide::Degraded;
use crate::publish::messages::{self, CameraState, CameraStatus};
use crate::publish::PublishHandle;
use crate::source::{SourceState, SourceStatus};
use crate::telemetry::{DropReason, Telemetry};

/// What the reporter of one camera reads besides the source status.
pub struct CameraStatusFeed {
    pub camera: String,
    pub model: String,
    /// Wall-clock ms of the last scored frame (0: none yet), written by the decision stage.
    pub last_scored_ms: Arc<AtomicU64>,
    /// Why the camera's frames cannot be judged now (frame health), written by the decision
    /// stage; a streaming camera with a reason is `degraded`.
    pub degraded: Degraded,
    /// Where the frames the camera's edge dropped (scoring fell behind) are counted.
    pub telemetry: Arc<Telemetry>,
    pub interval: Duration,
}

/// Publishes the camera's status until its source ends, then once more with the final state.
pub async fn report_camera_status(
    feed: CameraStatusFeed,
    mut source: watch::Receiver<SourceStatus>,
    publisher: PublishHandle,
) {
    let mut ticker = tokio::time::interval(feed.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_state = None;
    loop {
        // The source refreshes its counters twice a second; only a state change, the interval
        // or the end of the source is worth a (retained, QoS 1) message.
        let (ended, due) = tokio::select! {
            changed = source.changed() => (changed.is_err(), false),
            _ = ticker.tick() => (false, true),
        };
        let status = source.borrow_and_update().clone();
        let changed = last_state != Some(status.state);
        if changed {
            info!(camera = %feed.camera, state = ?status.state, message = status.message.as_deref().unwrap_or(""), "Camera state changed.");
            last_state = Some(status.state);
        }
        if !(changed || due || ended) {
            continue;
        }
        if let Err(e) = publisher.publish_camera_status(&feed.camera, &message(&feed, &status)) {
            warn!(camera = %feed.camera, "Camera status not published: {e}");
        }
        if ended {
            return;
        }
    }
}

fn message(feed: &CameraStatusFeed, s: &SourceStatus) -> CameraStatus {
    let scored = feed.last_scored_ms.load(Ordering::Relaxed);
    let degraded = feed.degraded.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let degraded = degraded.filter(|_| s.state == SourceState::Streaming);
    CameraStatus {
        state: match s.state {
            SourceState::Starting => CameraState::Starting,
            SourceState::Streaming if degraded.is_some() => CameraState::Degraded,
            SourceState::Streaming => CameraState::Streaming,
            SourceState::Reconnecting => CameraState::Reconnecting,
            SourceState::Error => CameraState::Error,
            SourceState::Stopped => CameraState::Stopped,
        },
        fps: (s.fps * 100.0).round() / 100.0,
        frames_dropped: feed.telemetry.frames_dropped(&feed.camera, DropReason::QueueFull),
        last_frame_at: s.last_frame_at.map(messages::timestamp),
        last_scored_at: (scored > 0).then(|| messages::timestamp(UNIX_EPOCH + Duration::from_millis(scored))),
        model: Some(feed.model.clone()),
        reason: degraded,
    }
}
