//! What a camera source reports about itself: the state machine behind the MQTT
//! `{camera}/status` message (design.md §3) and the recent frame rate.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Where a source is in its life.
///
/// `starting → streaming`, then on a failure of a live source `reconnecting → streaming` as
/// often as needed; `stopped` at shutdown or the end of a file, `error` when a person must act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceState {
    Starting,
    Streaming,
    Reconnecting,
    Error,
    Stopped,
}

/// A snapshot of a source, published on a watch channel.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceStatus {
    pub state: SourceState,
    /// Frames per second over the last couple of seconds (0 when none arrive).
    pub fps: f64,
    /// Frames delivered since the source was spawned, across reconnects.
    pub frames: u64,
    /// Wall-clock time of the newest frame, so a consumer can see a stall.
    pub last_frame_at: Option<SystemTime>,
    /// Why the source is reconnecting, in error or stopped; names the camera and element.
    pub message: Option<String>,
}

impl SourceStatus {
    /// The status before the first pipeline is built.
    pub fn starting() -> SourceStatus {
        SourceStatus { state: SourceState::Starting, fps: 0.0, frames: 0, last_frame_at: None, message: None }
    }
}

/// How far back the frame rate looks: long enough to smooth jitter, short enough to show a stall.
const FPS_WINDOW: Duration = Duration::from_secs(2);
/// How often frame counters are republished between state changes.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// Frame arrival times within [`FPS_WINDOW`].
#[derive(Debug, Default)]
struct FpsMeter {
    arrivals: VecDeque<Instant>,
}

impl FpsMeter {
    fn tick(&mut self, now: Instant) {
        self.arrivals.push_back(now);
        self.prune(now);
    }

    /// Frames per second between the oldest and newest arrival in the window.
    fn fps(&mut self, now: Instant) -> f64 {
        self.prune(now);
        match (self.arrivals.front(), self.arrivals.back()) {
            (Some(first), Some(last)) if self.arrivals.len() >= 2 && last > first => {
                (self.arrivals.len() - 1) as f64 / (*last - *first).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn prune(&mut self, now: Instant) {
        while self.arrivals.front().is_some_and(|t| now.duration_since(*t) > FPS_WINDOW) {
            self.arrivals.pop_front();
        }
    }
}

/// Owns the watch sender: state changes go out at once, counters at most every
/// [`PUBLISH_EVERY`], so a 100 fps camera does not wake status consumers 100 times a second.
pub(crate) struct StatusReporter {
    tx: watch::Sender<SourceStatus>,
    current: SourceStatus,
    meter: FpsMeter,
    last_sent: Instant,
}

impl StatusReporter {
    pub(crate) fn new(tx: watch::Sender<SourceStatus>) -> StatusReporter {
        let current = SourceStatus::starting();
        tx.send_replace(current.clone());
        StatusReporter { tx, current, meter: FpsMeter::default(), last_sent: Instant::now() }
    }

    pub(crate) fn state(&self) -> SourceState {
        self.current.state
    }

    /// Moves to `state` with an optional reason and publishes now.
    pub(crate) fn set(&mut self, state: SourceState, message: Option<String>) {
        self.current.state = state;
        self.current.message = message;
        self.publish(Instant::now());
    }

    /// Counts a delivered frame.
    pub(crate) fn frame(&mut self, captured_at: SystemTime) {
        let now = Instant::now();
        self.meter.tick(now);
        self.current.frames += 1;
        self.current.last_frame_at = Some(captured_at);
        self.refresh(now);
    }

    /// Republishes counters when they are due (call it also while no frames arrive, so the
    /// frame rate decays to zero for consumers).
    pub(crate) fn refresh(&mut self, now: Instant) {
        if now.duration_since(self.last_sent) >= PUBLISH_EVERY {
            self.publish(now);
        }
    }

    fn publish(&mut self, now: Instant) {
        self.current.fps = self.meter.fps(now);
        self.last_sent = now;
        // send_replace works without receivers: a status nobody reads is not an error.
        self.tx.send_replace(self.current.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fps_counts_frames_in_the_window_and_decays_to_zero() {
        let mut meter = FpsMeter::default();
        let start = Instant::now();
        for i in 0..21 {
            meter.tick(start + Duration::from_millis(50 * i));
        }
        let fps = meter.fps(start + Duration::from_millis(1000));
        assert!((fps - 20.0).abs() < 1e-9, "{fps}");
        assert_eq!(meter.fps(start + Duration::from_secs(10)), 0.0);
    }

    #[test]
    fn state_changes_publish_at_once_and_serialise_lowercase() {
        let (tx, rx) = watch::channel(SourceStatus::starting());
        let mut reporter = StatusReporter::new(tx);
        reporter.set(SourceState::Reconnecting, Some("camera c: gone".into()));
        let seen = rx.borrow().clone();
        assert_eq!(seen.state, SourceState::Reconnecting);
        assert_eq!(seen.message.as_deref(), Some("camera c: gone"));
        assert_eq!(serde_json::to_string(&SourceState::Reconnecting).unwrap(), "\"reconnecting\"");
    }
}
