//! What the decision stage leaves for consumers that sample instead of following every frame
//! (the Sparkplug edge node, the set-up API and page): each camera's latest decision, its
//! recent scores, the model that scored them, its recent alarms and, while someone watches, its
//! latest frame with the anomaly map for the live view.
//!
//! One short lock per decided frame. The live-view frame is copied only while a viewer asked
//! for it in the last [`VIEW_WANTED`], so a daemon nobody watches pays nothing for the page,
//! and a slow viewer never holds the decision thread: it reads the newest frame when it is
//! ready and skips the ones in between.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use ndarray::Array2;
use serde::Serialize;

use crate::decision::{AlarmEvent, AlarmKind, AlarmState};
use crate::evidence::EvidencePaths;
use crate::flow::frame::{Region, Verdict};
use crate::flow::ModelIdentity;
use crate::publish::messages::timestamp;

/// Scores kept per camera: about two minutes at 10 frames per second.
pub const SCORE_HISTORY: usize = 1200;
/// Alarms kept per camera for the review list.
pub const ALARM_HISTORY: usize = 50;
/// A live-view frame is kept this long after a viewer last asked for one.
pub const VIEW_WANTED: Duration = Duration::from_secs(3);

/// One decided frame, as the score history keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScorePoint {
    /// Capture time, ms since the Unix epoch.
    pub t: u64,
    pub seq: u64,
    pub score: f32,
    pub threshold: f32,
    pub verdict: Verdict,
    pub alarm_active: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latest {
    pub verdict: Verdict,
    pub score: f32,
    pub threshold: f32,
    pub alarm_active: bool,
}

/// One raised alarm, as the review list shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmRecord {
    pub camera: String,
    pub alarm_id: String,
    pub seq: u64,
    pub score: f32,
    pub threshold: f32,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Not cleared yet.
    pub active: bool,
    pub acknowledged: bool,
    /// The frame and heatmap saved for it, when evidence was saved.
    #[serde(skip)]
    pub evidence: Option<EvidencePaths>,
}

/// A decided frame for the live view: the pixels the model saw, its anomaly map and regions.
#[derive(Debug, Clone)]
pub struct ViewFrame {
    pub seq: u64,
    pub captured_at: SystemTime,
    pub width: u32,
    pub height: u32,
    /// Tightly packed RGB.
    pub rgb: Vec<u8>,
    /// Anomaly map over `roi`, at its resolution.
    pub map: Array2<f32>,
    pub roi: crate::view::Rect,
    /// In the frame's pixels.
    pub regions: Vec<Region>,
    pub score: f32,
    pub threshold: f32,
    pub verdict: Verdict,
}

#[derive(Debug, Default)]
struct Record {
    latest: Option<Latest>,
    history: VecDeque<ScorePoint>,
    model: Option<Arc<ModelIdentity>>,
    alarms: VecDeque<AlarmRecord>,
    view: Option<Arc<ViewFrame>>,
    wanted_until: Option<Instant>,
}

/// The latest decisions of every camera; see the module documentation.
#[derive(Debug, Default)]
pub struct LatestDecisions(Mutex<HashMap<String, Record>>);

impl LatestDecisions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Record>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, camera: &str) -> Option<Latest> {
        self.lock().get(camera).and_then(|r| r.latest)
    }

    /// The camera's recent scores, oldest first.
    pub fn history(&self, camera: &str) -> Vec<ScorePoint> {
        self.lock().get(camera).map(|r| r.history.iter().copied().collect()).unwrap_or_default()
    }

    /// The model that scored the camera's latest frame.
    pub fn model(&self, camera: &str) -> Option<Arc<ModelIdentity>> {
        self.lock().get(camera).and_then(|r| r.model.clone())
    }

    /// The recent alarms of every camera, newest first.
    pub fn alarms(&self) -> Vec<AlarmRecord> {
        let mut all: Vec<AlarmRecord> = self.lock().values().flat_map(|r| r.alarms.iter().cloned()).collect();
        all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.seq.cmp(&a.seq)));
        all
    }

    /// A viewer wants the camera's live frames for the next [`VIEW_WANTED`]; returns the
    /// latest one kept so far.
    pub fn watch(&self, camera: &str, now: Instant) -> Option<Arc<ViewFrame>> {
        let mut all = self.lock();
        let record = all.entry(camera.to_string()).or_default();
        record.wanted_until = Some(now + VIEW_WANTED);
        record.view.clone()
    }

    /// Records a decided frame. `view` builds the live-view frame; it is called only while a
    /// viewer wants one.
    pub(crate) fn record_frame(
        &self,
        camera: &str,
        point: ScorePoint,
        model: &Arc<ModelIdentity>,
        view: impl FnOnce() -> ViewFrame,
    ) {
        let mut all = self.lock();
        let record = all.entry(camera.to_string()).or_default();
        record.latest = Some(Latest {
            verdict: point.verdict,
            score: point.score,
            threshold: point.threshold,
            alarm_active: point.alarm_active,
        });
        if record.history.len() == SCORE_HISTORY {
            record.history.pop_front();
        }
        record.history.push_back(point);
        if !record.model.as_ref().is_some_and(|m| Arc::ptr_eq(m, model)) {
            record.model = Some(model.clone());
        }
        match record.wanted_until {
            Some(until) if Instant::now() < until => record.view = Some(Arc::new(view())),
            Some(_) => {
                record.wanted_until = None;
                record.view = None;
            }
            None => {}
        }
    }

    /// Records an alarm event: a raise adds the alarm to the review list, a clear marks it.
    pub(crate) fn record_alarm(&self, camera: &str, event: &AlarmEvent, evidence: Option<&EvidencePaths>) {
        let mut all = self.lock();
        let alarms = &mut all.entry(camera.to_string()).or_default().alarms;
        match event.kind {
            AlarmKind::Raised => {
                if alarms.len() == ALARM_HISTORY {
                    alarms.pop_front();
                }
                alarms.push_back(AlarmRecord {
                    camera: camera.to_string(),
                    alarm_id: event.alarm_id.clone(),
                    seq: event.seq,
                    score: event.score,
                    threshold: event.threshold,
                    started_at: timestamp(event.started_at),
                    active: true,
                    acknowledged: false,
                    evidence: evidence.cloned(),
                });
            }
            AlarmKind::Cleared => {
                if let Some(a) = alarms.iter_mut().find(|a| a.alarm_id == event.alarm_id) {
                    a.active = false;
                }
            }
        }
    }

    /// Records a camera's alarm state: an acknowledgement of its active alarm.
    pub(crate) fn record_state(&self, camera: &str, state: &AlarmState) {
        let Some(id) = &state.alarm_id else { return };
        let mut all = self.lock();
        let Some(record) = all.get_mut(camera) else { return };
        if let Some(a) = record.alarms.iter_mut().find(|a| &a.alarm_id == id) {
            a.acknowledged |= state.acknowledged;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(seq: u64) -> ScorePoint {
        ScorePoint {
            t: seq,
            seq,
            score: seq as f32,
            threshold: 1.0,
            verdict: Verdict::Ok,
            alarm_active: false,
        }
    }

    fn view(seq: u64) -> ViewFrame {
        ViewFrame {
            seq,
            captured_at: SystemTime::UNIX_EPOCH,
            width: 1,
            height: 1,
            rgb: vec![0; 3],
            map: Array2::zeros((1, 1)),
            roi: crate::view::Rect::whole(1, 1),
            regions: vec![],
            score: 0.0,
            threshold: 1.0,
            verdict: Verdict::Ok,
        }
    }

    fn model() -> Arc<ModelIdentity> {
        Arc::new(ModelIdentity { name: "m".into(), id: "m1".into(), sha: "ab".into(), threshold: None })
    }

    #[test]
    fn live_frames_are_kept_only_while_someone_watches() {
        let latest = LatestDecisions::default();
        let m = model();
        let mut built = 0;
        latest.record_frame("cam", point(1), &m, || {
            built += 1;
            view(1)
        });
        assert_eq!(built, 0, "nobody watches: no copy");
        assert!(latest.watch("cam", Instant::now()).is_none());
        latest.record_frame("cam", point(2), &m, || view(2));
        assert_eq!(latest.watch("cam", Instant::now()).map(|v| v.seq), Some(2));
        // A viewer that asked long ago no longer counts.
        latest.watch("cam", Instant::now() - VIEW_WANTED - Duration::from_millis(1));
        latest.record_frame("cam", point(3), &m, || panic!("nobody watches any more"));
        assert!(latest.watch("cam", Instant::now()).is_none(), "the stale frame is dropped");
    }

    #[test]
    fn history_is_bounded_and_oldest_first() {
        let latest = LatestDecisions::default();
        let m = model();
        for seq in 0..SCORE_HISTORY as u64 + 5 {
            latest.record_frame("cam", point(seq), &m, || view(seq));
        }
        let h = latest.history("cam");
        assert_eq!(h.len(), SCORE_HISTORY);
        assert_eq!((h[0].seq, h.last().unwrap().seq), (5, SCORE_HISTORY as u64 + 4));
        assert_eq!(latest.get("cam").map(|l| l.score), Some((SCORE_HISTORY + 4) as f32));
    }
}
