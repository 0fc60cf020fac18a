//! When inspectd tells systemd it is ready, healthy or busy (design.md §6), decided from a
//! plain [`Health`] snapshot so the rules are pure and tested without systemd.
//!
//! - READY=1 once every model is loaded and warmed up, every enabled camera streams and MQTT is
//!   connected, or once the readiness timeout has passed with a STATUS that names what is
//!   missing: a camera that is unplugged must not keep `systemctl start` (and the units after
//!   it) waiting forever. Models are the exception: without them nothing can be scored, so
//!   READY waits for them and systemd's `TimeoutStartSec=` decides.
//! - WATCHDOG=1 only while every scoring loop's heartbeat is fresh (thin-edge.io's
//!   health-gated watchdog). A loop beats after each batch and at least once a second when idle,
//!   and it blocks when the decision stage stops taking frames, so a wedged scorer, a wedged
//!   decision thread or a stalled runtime all stop the pings and systemd restarts the service.
//!   A camera that is down does not: its source reconnects by itself.

use std::io;
use std::time::{Duration, SystemTime};

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::notify::Notifier;
use crate::source::SourceState;

/// A heartbeat older than this means the scoring loop is stuck. Far above the longest batch
/// (a second or two on a CPU), well below systemd's `WatchdogSec=30s`.
pub const HEARTBEAT_STALE_AFTER: Duration = Duration::from_secs(10);

/// How often readiness and the status line are evaluated: quick enough that READY follows the
/// last missing piece within a second, cheap enough to not matter.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Fewest time between two STATUS lines while running, so a changing frame rate does not
/// flood the journal's view of the unit; readiness changes are sent at once.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// What the service looks like at one moment: a copy, so the rules below need no locks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    /// Every configured model is loaded and warmed up.
    pub models_loaded: bool,
    /// Enabled cameras only; disabled ones never hold readiness back.
    pub cameras: Vec<CameraHealth>,
    pub mqtt_connected: bool,
    /// One per model (one scoring loop each).
    pub scorers: Vec<ScorerHealth>,
    /// Alarms raised since start, for the status line.
    pub alarms_raised: u64,
    /// Shutdown has begun: not ready any more, whatever the rest says.
    pub stopping: bool,
    /// A stage died (`stage decide failed: ...`): neither ready nor alive any more.
    pub failed: Option<String>,
}

/// One camera's source.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraHealth {
    pub id: String,
    pub state: SourceState,
    /// Recent frames per second delivered by the source.
    pub fps: f64,
}

/// One model's scoring loop.
#[derive(Debug, Clone, PartialEq)]
pub struct ScorerHealth {
    pub model: String,
    /// Wall-clock time of the last heartbeat; `None` before the loop's first iteration.
    pub last_beat: Option<SystemTime>,
    /// Frames queued for this loop (approximate), to tell a stuck loop from an idle one.
    pub frames_waiting: u64,
}

/// Whether to send READY=1, and what to say in STATUS meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet; the text names what is missing.
    Waiting(String),
    /// The readiness timeout passed: READY=1 anyway, with the text as STATUS.
    TimedOut(String),
}

/// What is missing before the service is ready; empty when it is.
pub fn missing(h: &Health) -> Vec<String> {
    let mut out = Vec::new();
    out.extend(h.failed.clone());
    if h.stopping {
        out.push("stopping".to_string());
    }
    if !h.models_loaded {
        out.push("models loading".to_string());
    }
    for c in h.cameras.iter().filter(|c| c.state != SourceState::Streaming) {
        out.push(format!("camera {} {}", c.id, state_word(c.state)));
    }
    if !h.mqtt_connected {
        out.push("MQTT not connected".to_string());
    }
    out
}

/// Ready when nothing is [`missing`]; past `timeout` ready anyway, unless models are still
/// loading or the service is stopping.
pub fn readiness(h: &Health, elapsed: Duration, timeout: Duration) -> Readiness {
    if let Some(failed) = &h.failed {
        return Readiness::Waiting(format!("Failed: {failed}"));
    }
    if h.stopping {
        return Readiness::Waiting("Stopping".to_string());
    }
    let missing = missing(h);
    if missing.is_empty() {
        return Readiness::Ready;
    }
    let text = missing.join(", ");
    if elapsed >= timeout && h.models_loaded {
        Readiness::TimedOut(format!("Running without: {text}"))
    } else {
        Readiness::Waiting(format!("Starting: waiting for {text}"))
    }
}

/// `Ok` while every scoring loop's heartbeat is younger than [`HEARTBEAT_STALE_AFTER`];
/// otherwise the reason, naming the loop. With no loop running yet there is nothing to vouch
/// for, so it is not healthy either.
pub fn watchdog_check(h: &Health, now: SystemTime) -> Result<(), String> {
    if let Some(failed) = &h.failed {
        return Err(failed.clone());
    }
    if h.scorers.is_empty() {
        return Err("no scoring loop running".to_string());
    }
    for s in &h.scorers {
        let Some(beat) = s.last_beat else {
            return Err(format!("scoring '{}' has not started", s.model));
        };
        // A heartbeat from the future (the wall clock stepped back) counts as fresh.
        let age = now.duration_since(beat).unwrap_or_default();
        if age >= HEARTBEAT_STALE_AFTER {
            return Err(format!(
                "scoring '{}' stalled for {} s with {} frames waiting",
                s.model,
                age.as_secs(),
                s.frames_waiting
            ));
        }
    }
    Ok(())
}

/// Whether a WATCHDOG=1 ping is deserved now.
pub fn watchdog_ok(h: &Health, now: SystemTime) -> bool {
    watchdog_check(h, now).is_ok()
}

/// The running service in one line for `systemctl status`: cameras, frame rate, MQTT, alarms.
/// Whole frames per second, so the line changes when something happens, not with jitter.
pub fn status_line(h: &Health) -> String {
    let streaming: Vec<&CameraHealth> =
        h.cameras.iter().filter(|c| c.state == SourceState::Streaming).collect();
    let fps: f64 = streaming.iter().map(|c| c.fps).sum();
    let mut line = format!("{}/{} cameras streaming", streaming.len(), h.cameras.len());
    let down: Vec<String> = h
        .cameras
        .iter()
        .filter(|c| c.state != SourceState::Streaming)
        .map(|c| format!("{} {}", c.id, state_word(c.state)))
        .collect();
    if !down.is_empty() {
        line.push_str(&format!(" ({})", down.join(", ")));
    }
    line.push_str(&format!(", {fps:.0} fps"));
    line.push_str(if h.mqtt_connected { ", MQTT connected" } else { ", MQTT disconnected" });
    let plural = if h.alarms_raised == 1 { "" } else { "s" };
    line.push_str(&format!(", {} alarm{plural} raised", h.alarms_raised));
    line
}

fn state_word(s: SourceState) -> &'static str {
    match s {
        SourceState::Starting => "starting",
        SourceState::Streaming => "streaming",
        SourceState::Reconnecting => "reconnecting",
        SourceState::Error => "in error",
        SourceState::Stopped => "stopped",
    }
}

/// Tells systemd about readiness, status and health until `cancel`, then sends STOPPING=1.
///
/// `health` is called every check and every ping; it must be cheap (copying counters). READY=1
/// goes out once (see [`readiness`]); STATUS on change, at most every 5 s except
/// at readiness; WATCHDOG=1 every half watchdog interval after READY, only while
/// [`watchdog_ok`]. Transitions are logged even without systemd, so the journal of any
/// supervisor shows when inspectd became ready or stopped making progress.
pub async fn run_notifier<F>(
    notifier: Notifier,
    health: F,
    readiness_timeout: Duration,
    cancel: CancellationToken,
) where
    F: Fn() -> Health + Send,
{
    let started = Instant::now();
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ping = notifier.watchdog_interval().map(|t| {
        let mut i = tokio::time::interval((t / 2).max(Duration::from_millis(1)));
        i.set_missed_tick_behavior(MissedTickBehavior::Delay);
        i
    });
    let mut state = Progress::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = check.tick() => state.check(&notifier, &health(), started.elapsed(), readiness_timeout),
            _ = async { match ping.as_mut() { Some(p) => p.tick().await, None => std::future::pending().await } } => {
                state.ping(&notifier, &health());
            }
        }
    }
    state.sent("STOPPING", notifier.stopping());
}

/// What the notifier has told systemd so far.
#[derive(Debug, Default)]
struct Progress {
    ready_sent: bool,
    /// The last STATUS text and when it went out.
    status: Option<(String, Instant)>,
    /// Why scoring counts as stalled (and pings are withheld), while it does.
    stalled: Option<String>,
    /// A send failed and has not succeeded since (logged once, not on every ping).
    failing: bool,
}

impl Progress {
    fn check(&mut self, n: &Notifier, h: &Health, elapsed: Duration, timeout: Duration) {
        if self.ready_sent {
            let text = match self.healthy(h) {
                Ok(()) => status_line(h),
                Err(reason) => format!("{}; {reason}", status_line(h)),
            };
            return self.status(n, text, false);
        }
        let (text, late) = match readiness(h, elapsed, timeout) {
            Readiness::Waiting(text) => return self.status(n, text, false),
            Readiness::Ready => (status_line(h), false),
            Readiness::TimedOut(text) => (text, true),
        };
        if self.sent("READY", n.ready()) {
            self.ready_sent = true;
            if late {
                warn!(status = %text, "Readiness timeout passed: ready anyway.");
            } else {
                info!(status = %text, "Ready.");
            }
            self.status(n, text, true);
        }
    }

    fn status(&mut self, n: &Notifier, text: String, force: bool) {
        let due = match &self.status {
            None => true,
            Some((last, _)) if *last == text => false,
            Some((_, at)) => force || at.elapsed() >= STATUS_EVERY,
        };
        if due && self.sent("STATUS", n.status(&text)) {
            self.status = Some((text, Instant::now()));
        }
    }

    fn ping(&mut self, n: &Notifier, h: &Health) {
        if self.ready_sent && self.healthy(h).is_ok() {
            self.sent("WATCHDOG", n.watchdog());
        }
    }

    /// [`watchdog_check`] now, logging when scoring stalls and when it recovers (also without
    /// systemd, where no ping is at stake).
    fn healthy(&mut self, h: &Health) -> Result<(), String> {
        let result = watchdog_check(h, SystemTime::now());
        match &result {
            Ok(()) if self.stalled.take().is_some() => info!("Scoring makes progress again."),
            Err(reason) if self.stalled.is_none() => {
                error!(%reason, "Scoring stalled: watchdog pings withheld, systemd restarts inspectd unless it recovers.");
                self.stalled = Some(reason.clone());
            }
            _ => {}
        }
        result
    }

    /// Logs the first of a run of failed sends and the recovery; true when `result` is Ok.
    fn sent(&mut self, what: &str, result: io::Result<()>) -> bool {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                info!("Notifications to systemd work again.");
                true
            }
            Ok(()) => true,
            Err(e) => {
                if !self.failing {
                    warn!(notification = what, "Cannot notify systemd: {e}");
                }
                self.failing = true;
                false
            }
        }
    }
}

#[cfg(test)]
#[path = "watchdog_tests.rs"]
mod tests;
