//! The gate between a triggered camera's source and scoring: a trigger arms it, and the
//! first frame captured after the trigger passes, tagged with the part it shows. Every other
//! frame stops at the gate, so a triggered camera scores exactly one frame per trigger.
//!
//! A camera with a trigger input (GigE / USB3 Vision) is also fired when the gate is armed;
//! a stream without one (file, test, RTSP, V4L2) simply hands over its next frame.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Which part a frame shows, and when its trigger came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartTag {
    pub part_id: Arc<str>,
    /// The station the trigger was for (a camera's own id when it is not in a station).
    pub station: Arc<str>,
    pub triggered_at: SystemTime,
}

/// Fires a camera's trigger (GenICam `TriggerSoftware`); set by the source while its
/// pipeline runs.
pub type Fire = Box<dyn Fn() -> Result<(), String> + Send>;

/// One triggered camera's gate, shared by its source (which takes frames through it) and
/// the station (which arms it).
#[derive(Default)]
pub struct TriggerGate {
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    armed: Option<PartTag>,
    fire: Option<Fire>,
}

impl std::fmt::Debug for TriggerGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("TriggerGate")
            .field("armed", &state.armed)
            .field("fires", &state.fire.is_some())
            .finish()
    }
}

impl TriggerGate {
    pub fn new() -> Arc<TriggerGate> {
        Arc::new(TriggerGate::default())
    }

    /// Lets the next frame captured at or after `part.triggered_at` through, and fires the
    /// camera if it can be fired. An error from firing leaves the gate armed (the station's
    /// deadline turns it into a `timeout`) and is returned for the log.
    pub fn arm(&self, part: PartTag) -> Result<(), String> {
        let mut state = self.lock();
        state.armed = Some(part);
        match &state.fire {
            Some(fire) => fire(),
            None => Ok(()),
        }
    }

    /// Closes the gate if it is still armed for `part_id` (its deadline passed).
    pub fn disarm(&self, part_id: &str) {
        let mut state = self.lock();
        if state.armed.as_ref().is_some_and(|p| &*p.part_id == part_id) {
            state.armed = None;
        }
    }

    /// The part a frame captured at `captured_at` shows, closing the gate; `None` when the
    /// frame must not be scored (no trigger waiting, or the frame is older than it).
    pub fn take(&self, captured_at: SystemTime) -> Option<PartTag> {
        let mut state = self.lock();
        match &state.armed {
            Some(part) if captured_at >= part.triggered_at => state.armed.take(),
            _ => None,
        }
    }

    /// Installs (or, with `None`, removes) what fires the camera.
    pub fn set_fire(&self, fire: Option<Fire>) {
        self.lock().fire = fire;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn part(id: &str, at: SystemTime) -> PartTag {
        PartTag { part_id: id.into(), station: "st".into(), triggered_at: at }
    }

    #[test]
    fn only_the_first_frame_after_the_trigger_passes() {
        let gate = TriggerGate::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(gate.take(t0), None, "no trigger, no frame");
        gate.arm(part("p1", t0)).expect("no fire installed");
        assert_eq!(gate.take(t0 - Duration::from_millis(1)), None, "captured before the trigger");
        assert_eq!(gate.take(t0 + Duration::from_millis(5)).map(|p| p.part_id), Some("p1".into()));
        assert_eq!(gate.take(t0 + Duration::from_millis(10)), None, "one frame per trigger");
    }

    #[test]
    fn arming_fires_the_camera_and_disarm_only_closes_its_own_part() {
        let gate = TriggerGate::new();
        let fired = Arc::new(AtomicUsize::new(0));
        let count = fired.clone();
        gate.set_fire(Some(Box::new(move || {
            count.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })));
        let t0 = SystemTime::UNIX_EPOCH;
        gate.arm(part("p1", t0)).expect("fires");
        assert_eq!(fired.load(Ordering::Relaxed), 1);
        gate.disarm("other");
        gate.disarm("p1");
        assert_eq!(gate.take(t0 + Duration::from_secs(1)), None);
    }
}
