//! The per-camera alarm state machine: k-of-n debounce, hysteresis and latch.
//!
//! A single NG frame is usually noise (a reflection, a part slightly out of place), so an
//! alarm is raised only after `k` NG verdicts within the last `n` frames. Once raised it
//! clears only after `clear_after` consecutive OK frames; an NG frame in between restarts
//! that count, so a line that flickers between OK and NG does not toggle the alarm (and
//! the PLC behind it) on every frame. With `latch`, the alarm also needs an operator's
//! acknowledgement: a defect someone must look at is not forgotten because the next parts
//! happened to be good.
//!
//! After a clear the NG window starts empty, so a new alarm needs `k` fresh NG frames;
//! otherwise, when `clear_after < n`, NGs from before the clear could raise a second alarm
//! on the very next (OK) frame.
//!
//! The machine is pure: it sees frames and acknowledgements in the order the caller feeds
//! them and reads no clock, so the same inputs always give the same events and ids.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use super::event::{unix_ms, AlarmEvent, AlarmKind, AlarmState};
use crate::config::types::AlarmConfig;
use crate::flow::frame::Verdict;

/// One judged frame, as the alarm machine needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub seq: u64,
    pub verdict: Verdict,
    pub score: f32,
    pub threshold: f32,
    /// The frame's capture time; names the alarm and stamps its events.
    pub at: SystemTime,
}

/// Which alarm an acknowledgement is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckTarget {
    /// Whatever alarm is active (the payload `"current"`).
    Current,
    /// Only this alarm; a stale acknowledgement for an earlier alarm must not clear a new one.
    Id(String),
}

impl AckTarget {
    /// Reads an acknowledgement payload: `current` or an alarm id.
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "current" => AckTarget::Current,
            id => AckTarget::Id(id.to_string()),
        }
    }
}

/// What an acknowledgement did.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    /// The alarm was held only by its latch and is now cleared.
    Cleared(AlarmEvent),
    /// Marked acknowledged; it clears once the camera is back to OK long enough.
    Acknowledged,
    /// It had already been acknowledged; nothing changed.
    AlreadyAcknowledged,
    /// No alarm is active, or the id names a different alarm.
    Ignored,
}

/// An `[cameras.*.alarm]` setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct AlarmConfigProblem {
    /// The key relative to the camera, e.g. `alarm.k`; the config loader prefixes the camera.
    pub key: &'static str,
    pub problem: String,
}

/// Every problem with `config`, so the operator fixes them in one go.
pub fn validate(config: &AlarmConfig) -> Result<(), Vec<AlarmConfigProblem>> {
    let mut problems = Vec::new();
    let mut problem = |key, problem: String| problems.push(AlarmConfigProblem { key, problem });
    if config.k == 0 {
        problem("alarm.k", "must be at least 1 (an alarm needs at least one NG frame)".into());
    }
    if config.n == 0 {
        problem("alarm.n", "must be at least 1".into());
    }
    if config.k > config.n {
        problem("alarm.k", format!("{} NG frames can never fit in a window of n = {}", config.k, config.n));
    }
    if config.clear_after == 0 {
        problem("alarm.clear_after", "must be at least 1 (an alarm clears after OK frames)".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The alarm currently raised.
#[derive(Debug, Clone)]
struct Active {
    id: String,
    started_at: SystemTime,
    acknowledged: bool,
}

/// The alarm state of one camera.
#[derive(Debug, Clone)]
pub struct AlarmMachine {
    camera: Arc<str>,
    config: AlarmConfig,
    /// Verdicts of the last `n` frames since the last clear (`true` = NG).
    window: VecDeque<bool>,
    /// NG frames in `window`, kept so each frame costs O(1).
    window_ng: usize,
    /// Consecutive OK frames up to the latest one.
    ok_run: usize,
    /// The latest frame, which a clear by acknowledgement reports.
    last: Option<Observation>,
    active: Option<Active>,
}

impl AlarmMachine {
    /// A machine with no alarm; fails when `config` cannot work (see [`validate`]).
    pub fn new(camera: impl Into<Arc<str>>, config: AlarmConfig) -> Result<Self, Vec<AlarmConfigProblem>> {
        validate(&config)?;
        Ok(AlarmMachine {
            camera: camera.into(),
            config,
            // Grows to at most n as frames arrive; not preallocated, since n comes from the config.
            window: VecDeque::new(),
            window_ng: 0,
            ok_run: 0,
            last: None,
            active: None,
        })
    }

    /// Feeds one frame; returns the event it caused, if any.
    pub fn observe(&mut self, frame: Observation) -> Option<AlarmEvent> {
        self.record(frame);
        match &self.active {
            None if self.window_ng >= self.config.k => Some(self.raise(frame)),
            Some(active) if self.clear_condition_met() && (!self.config.latch || active.acknowledged) => {
                Some(self.clear(frame, frame.at))
            }
            _ => None,
        }
    }

    /// Applies an operator's acknowledgement, received at `at`.
    pub fn acknowledge(&mut self, target: &AckTarget, at: SystemTime) -> AckOutcome {
        let clear_now = self.clear_condition_met();
        let Some(active) = self.active.as_mut() else {
            return AckOutcome::Ignored;
        };
        if let AckTarget::Id(id) = target {
            if *id != active.id {
                return AckOutcome::Ignored;
            }
        }
        if clear_now {
            let last = self.last.expect("an active alarm was raised by an observed frame");
            return AckOutcome::Cleared(self.clear(last, at));
        }
        if std::mem::replace(&mut active.acknowledged, true) {
            AckOutcome::AlreadyAcknowledged
        } else {
            AckOutcome::Acknowledged
        }
    }

    /// The state for the retained `alarm/state` topic.
    pub fn state(&self) -> AlarmState {
        match &self.active {
            None => AlarmState::default(),
            Some(active) => AlarmState {
                active: true,
                alarm_id: Some(active.id.clone()),
                since: Some(active.started_at),
                latched: self.clear_condition_met(),
                acknowledged: active.acknowledged,
            },
        }
    }

    /// Slides the NG window and the OK run forward by one frame.
    fn record(&mut self, frame: Observation) {
        let ng = frame.verdict == Verdict::Ng;
        self.window.push_back(ng);
        self.window_ng += usize::from(ng);
        if self.window.len() > self.config.n {
            let dropped = self.window.pop_front().expect("window is longer than n >= 1");
            self.window_ng -= usize::from(dropped);
        }
        self.ok_run = if ng { 0 } else { self.ok_run + 1 };
        self.last = Some(frame);
    }

    /// Enough consecutive OK frames to clear. While an alarm is active this only counts frames
    /// after the raise, since the raising frame is NG.
    fn clear_condition_met(&self) -> bool {
        self.ok_run >= self.config.clear_after
    }

    fn raise(&mut self, frame: Observation) -> AlarmEvent {
        let id = format!("{}-{}-{}", self.camera, unix_ms(frame.at), frame.seq);
        self.active = Some(Active { id: id.clone(), started_at: frame.at, acknowledged: false });
        self.event(AlarmKind::Raised, id, frame, frame.at, frame.at)
    }

    fn clear(&mut self, frame: Observation, at: SystemTime) -> AlarmEvent {
        let active = self.active.take().expect("only an active alarm is cleared");
        self.window.clear();
        self.window_ng = 0;
        self.event(AlarmKind::Cleared, active.id, frame, active.started_at, at)
    }

    fn event(
        &self,
        kind: AlarmKind,
        alarm_id: String,
        frame: Observation,
        started_at: SystemTime,
        at: SystemTime,
    ) -> AlarmEvent {
        AlarmEvent {
            kind,
            alarm_id,
            camera: self.camera.clone(),
            seq: frame.seq,
            score: frame.score,
            threshold: frame.threshold,
            started_at,
            at,
        }
    }
}

#[cfg(test)]
#[path = "alarm_tests.rs"]
mod tests;
