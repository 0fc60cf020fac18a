//! `inspectd replay`: recorded videos and image folders through the daemon's own stages —
//! frames → bounded edge → [`ScoringStage`] → per-recording [`CameraDecision`] — with the
//! results written per frame instead of (or besides) published.
//!
//! - `fast` pace: the feeder blocks on a full edge, so nothing is dropped and the scorer always
//!   has a full batch waiting (the edge holds two batches).
//! - `realtime` pace: frames are released at their media time into a drop-oldest edge, as a
//!   live camera would deliver them.
//!
//! Frames carry media time as capture time, so the same input and model give byte-identical
//! output, alarm ids included.

pub mod annotate;
pub mod input;
pub mod output;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use self::annotate::Annotator;
use self::input::{Feeder, Input, Selection};
use self::output::{
    is_defective, label_metrics, Distribution, FrameLine, LabelEntry, LabelMetrics, LineWriter,
};
use crate::config::types::{AlarmConfig, CameraEvidence, ResultPolicy, Roi};
use crate::decision::{thresholds, CameraDecision};
use crate::evidence::EvidenceLimiter;
use crate::evidence::EvidenceStore;
use crate::flow::edge::{edge_with_signal, Overflow, Signal};
use crate::flow::frame::{Frame, Verdict};
use crate::model::bundle::Bundle;
use crate::model::scorer::{ScoreError, Scorer};
use crate::pipeline::decide::CameraOutputs;
use crate::pipeline::decide::DecisionInput;
use crate::pipeline::judge::{judge, Outputs};
use crate::pipeline::scoring::{Batching, ModelIdentity, ScoredFrame, ScoringStage, ScoringStats};
use crate::publish::PublishHandle;
use crate::source::NATIVE_SIZE;
use crate::telemetry::{DropReason, Telemetry};
use crate::view::{CameraView, Rect};

/// How fast frames are fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pace {
    Fast,
    Realtime,
}

/// Everything a replay run needs.
pub struct ReplaySettings {
    pub inputs: Vec<Input>,
    /// Names alarms and evidence (the config camera id, or "replay").
    pub camera: String,
    pub roi: Option<Roi>,
    /// Polygons never judged, in sensor pixels (the config camera's `ignore`).
    pub ignore: Vec<Vec<[f32; 2]>>,
    pub alarm: AlarmConfig,
    /// What evidence to save (the config camera's `evidence`, or alarms only).
    pub evidence_policy: CameraEvidence,
    pub threshold: Option<f32>,
    pub pace: Pace,
    pub selection: Selection,
    pub batch: usize,
    pub labels: Option<Vec<LabelEntry>>,
    pub annotate: Option<PathBuf>,
    pub evidence: Option<EvidenceStore>,
    pub mqtt: Option<PublishHandle>,
}

/// Per-input outcome.
#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    pub input: String,
    pub frames_scored: u64,
    pub ng: u64,
    pub alarms: u64,
    /// Why the input failed (part of it may still have been scored).
    pub error: Option<String>,
}

/// The run's summary (`--summary FILE.json` and the printed table).
#[derive(Debug, Clone, Serialize)]
pub struct ReplaySummary {
    pub model: String,
    pub pace: String,
    pub inputs: Vec<InputSummary>,
    pub frames_scored: u64,
    pub frames_dropped: u64,
    pub ng_frames: u64,
    pub alarms_raised: u64,
    pub threshold: f32,
    pub scores: Distribution,
    pub frames_per_second: f64,
    pub wall_s: f64,
    pub labels: Option<LabelMetrics>,
}

impl ReplaySummary {
    pub fn failed(&self) -> bool {
        self.inputs.iter().any(|i| i.error.is_some())
    }
}

/// Progress for the bar: frames scored so far and the estimated total.
pub type Progress<'a> = &'a mut dyn FnMut(u64, Option<u64>);

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error("{0}")]
    Setup(String),
    #[error("cannot write results: {0}")]
    Write(#[from] std::io::Error),
    #[error(transparent)]
    Annotate(#[from] crate::util::video_writer::VideoWriteError),
}

/// Replays every input through the scoring and decision stages.
pub fn replay(
    scorer: Scorer,
    bundle: &Bundle,
    mut s: ReplaySettings,
    writer: &mut LineWriter,
    progress: Progress<'_>,
) -> Result<ReplaySummary, ReplayError> {
    let started = Instant::now();
    let (h, w) = scorer.input_size();
    let calibrated = bundle.manifest.threshold.as_ref().map(|t| t.image);
    let thresholds = thresholds(calibrated, s.threshold).ok_or_else(|| {
        ReplayError::Setup(format!(
            "model {} has no calibrated threshold: pass --threshold or retrain with held-out images",
            bundle.dir.display()
        ))
    })?;
    let identity = Arc::new(ModelIdentity {
        name: bundle.manifest.model.id.clone(),
        id: bundle.manifest.model.id.clone(),
        sha: bundle.short_sha().to_string(),
        threshold: bundle.manifest.threshold.clone(),
    });
    let view = bundle.view(None);
    let camera_view = CameraView {
        roi: s.roi.map(|r| Rect { x: r.x, y: r.y, width: r.width, height: r.height }),
        ignore: s.ignore.clone(),
    };
    let signal = Arc::new(Signal::default());
    let (policy, capacity, wait) = match s.pace {
        Pace::Fast => (Overflow::Block, 2 * s.batch, Duration::from_secs(2)),
        Pace::Realtime => (Overflow::DropOldest, s.batch.max(2), Duration::from_millis(20)),
    };
    let (frames_tx, frames_rx) = edge_with_signal::<Frame>(capacity, policy, Some(signal.clone()));
    let telemetry = Arc::new(Telemetry::default());
    let (scored_tx, scored_rx) = sync_channel::<DecisionInput>(2 * s.batch);
    let stage = ScoringStage {
        scorer,
        model: identity,
        norm: bundle.manifest.input.normalisation(),
        inputs: vec![frames_rx],
        signal,
        batching: Batching { max_batch: s.batch, max_wait: wait },
        output: scored_tx,
        stats: Arc::new(ScoringStats::default()),
        telemetry: telemetry.clone(),
        swap: Default::default(),
        view: view.clone(),
        cameras: s.inputs.iter().map(|i| (Arc::from(i.name()), camera_view.clone())).collect(),
        resolved: HashMap::new(),
    };
    let scoring = stage.spawn()?;
    // A model with a view gets frames at their own size and cuts them itself (`--roi` moves
    // its ROI); one without gets them cropped and scaled to its input size.
    let (roi, (fw, fh)) = if view.stored() { (None, NATIVE_SIZE) } else { (s.roi, (w as u32, h as u32)) };
    let feeder = Feeder {
        camera: Arc::from(""),
        roi,
        width: fw,
        height: fh,
        selection: s.selection,
        realtime: s.pace == Pace::Realtime,
        image_fps: 10.0,
        telemetry: telemetry.clone(),
    };
    let inputs = s.inputs.clone();
    let feeding = std::thread::Builder::new().name("replay-feed".into()).spawn(move || {
        inputs
            .iter()
            .map(|input| {
                let f = Feeder { camera: Arc::from(input.name()), ..feeder.clone() };
                f.run(input, &frames_tx).map_err(|e| e.to_string())
            })
            .collect::<Vec<_>>()
    })?;
    let size = (!view.stored()).then_some((w as u32, h as u32));
    let mut run = Consumer::new(&mut s, thresholds, size, telemetry.clone())?;
    let total = estimate_total(&s.inputs);
    for item in scored_rx {
        if let DecisionInput::Frame(f) = item {
            run.frame(&s, *f, writer)?;
            progress(run.scored, total);
        }
    }
    let outcomes = feeding.join().map_err(|_| ReplayError::Setup("the replay feeder panicked".into()))?;
    let _ = scoring.join();
    let dropped = s
        .inputs
        .iter()
        .flat_map(|i| DropReason::ALL.map(|reason| telemetry.frames_dropped(&i.name(), reason)))
        .sum();
    run.finish(&s, outcomes, dropped, bundle, started)
}

/// Frames expected, when the containers say (for the progress bar's ETA).
fn estimate_total(inputs: &[Input]) -> Option<u64> {
    let mut total = 0;
    for input in inputs {
        total += match input {
            Input::Images { files, .. } => files.len() as u64,
            Input::Video(_) => return None,
        };
    }
    Some(total)
}

/// Per-recording decisions and the accumulating summary, on the calling thread.
struct Consumer {
    /// Base threshold and override (`decision::thresholds`).
    thresholds: (f32, Option<f32>),
    cameras: HashMap<String, CameraOutputs>,
    outputs: Outputs,
    results: ResultPolicy,
    limiter: EvidenceLimiter,
    per_input: Vec<InputSummary>,
    scores: Vec<f32>,
    labels: Vec<bool>,
    scored: u64,
    annotator: Option<Annotator>,
    /// Where the annotated video goes while it waits for its first frame's size (models with
    /// a view replay frames at their own size).
    annotate_later: Option<std::path::PathBuf>,
}

impl Consumer {
    fn new(
        s: &mut ReplaySettings,
        thresholds: (f32, Option<f32>),
        size: Option<(u32, u32)>,
        telemetry: Arc<Telemetry>,
    ) -> Result<Consumer, ReplayError> {
        let (annotator, annotate_later) = match (&s.annotate, size) {
            (Some(path), Some((w, h))) => (Some(Annotator::create(path, w, h, 10)?), None),
            (path, _) => (None, path.clone()),
        };
        let per_input = s
            .inputs
            .iter()
            .map(|i| InputSummary { input: i.name(), frames_scored: 0, ng: 0, alarms: 0, error: None })
            .collect();
        let interval =
            Duration::try_from_secs_f64(s.evidence_policy.min_interval_s).unwrap_or(Duration::ZERO);
        Ok(Consumer {
            thresholds,
            cameras: HashMap::new(),
            outputs: Outputs {
                publisher: s.mqtt.clone(),
                evidence: s.evidence.take(),
                telemetry,
                replay: true,
            },
            results: ResultPolicy::default(),
            limiter: EvidenceLimiter::new(interval),
            per_input,
            scores: Vec::new(),
            labels: Vec::new(),
            scored: 0,
            annotator,
            annotate_later,
        })
    }

    /// The threshold in force (what results and label metrics are measured against).
    fn threshold(&self) -> f32 {
        self.thresholds.1.unwrap_or(self.thresholds.0)
    }

    fn frame(
        &mut self,
        s: &ReplaySettings,
        f: ScoredFrame,
        writer: &mut LineWriter,
    ) -> Result<(), ReplayError> {
        let input = f.frame.camera.to_string();
        let index = s.inputs.iter().position(|i| i.name() == input).unwrap_or(0);
        let name = if s.inputs.len() > 1 { format!("{}.{index}", s.camera) } else { s.camera.clone() };
        let cam = match self.cameras.entry(input.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let (base, configured) = self.thresholds;
                let decision = CameraDecision::new(name.as_str(), base, s.alarm)
                    .and_then(|d| d.with_threshold_override(configured))
                    .map_err(|e| ReplayError::Setup(e.to_string()))?;
                v.insert(CameraOutputs {
                    decision,
                    evidence: s.evidence_policy,
                    last_scored_ms: Arc::default(),
                    decided: 0,
                    metrics: None,
                    // Replay judges every frame of a recording as it is.
                    health: None,
                    degraded: Default::default(),
                })
            }
        };
        let j = judge(&name, cam, &f, &self.results, &mut self.limiter, Instant::now());
        let score_norm = j.result.as_ref().map_or(0.0, |r| r.score_norm);
        let pts_ms = f.frame.pts.map_or(0.0, |p| p.as_secs_f64() * 1e3);
        writer.write(&FrameLine::new(&input, f.frame.seq, pts_ms, score_norm, &j.decision))?;
        let summary = &mut self.per_input[index];
        summary.frames_scored += 1;
        summary.ng += u64::from(j.decision.verdict == Verdict::Ng);
        summary.alarms += u64::from(j.raised());
        self.scored += 1;
        self.scores.push(f.score);
        if let Some(labels) = &s.labels {
            self.labels.push(is_defective(labels, f.frame.seq));
        }
        self.outputs.apply(&s.camera, &name, &f, &j);
        if let Some(path) = self.annotate_later.take() {
            self.annotator = Some(Annotator::create(&path, f.frame.width, f.frame.height, 10)?);
        }
        if let Some(a) = &mut self.annotator {
            let heat = (f.roi, f.map.view(), j.decision.regions.as_slice());
            a.push(&f.frame.to_image(), heat, f.score, j.decision.threshold, j.decision.verdict)?;
        }
        Ok(())
    }

    fn finish(
        mut self,
        s: &ReplaySettings,
        outcomes: Vec<Result<u64, String>>,
        dropped: u64,
        bundle: &Bundle,
        started: Instant,
    ) -> Result<ReplaySummary, ReplayError> {
        for (summary, outcome) in self.per_input.iter_mut().zip(outcomes) {
            summary.error = outcome.err();
        }
        if let Some(a) = self.annotator.take() {
            a.finish()?;
        }
        let wall = started.elapsed().as_secs_f64();
        let threshold = self.threshold();
        let labels = s.labels.as_ref().map(|_| label_metrics(&self.scores, &self.labels, threshold));
        Ok(ReplaySummary {
            model: bundle.manifest.model.id.clone(),
            pace: format!("{:?}", s.pace).to_lowercase(),
            frames_scored: self.scored,
            frames_dropped: dropped,
            ng_frames: self.per_input.iter().map(|i| i.ng).sum(),
            alarms_raised: self.per_input.iter().map(|i| i.alarms).sum(),
            inputs: self.per_input,
            threshold,
            scores: Distribution::of(&self.scores),
            frames_per_second: self.scored as f64 / wall.max(1e-9),
            wall_s: wall,
            labels,
        })
    }
}
