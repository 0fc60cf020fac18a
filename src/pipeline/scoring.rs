//! The scoring stage of one model: gathers frames from the cameras that share the model into
//! batches (`pipeline::gather`: at most `max_batch` frames, whatever arrived within `max_wait`
//! of the first, or one from each camera), scores them on this dedicated thread, and hands each
//! frame with its map to the decision stage. The frames of a batch run side by side where the
//! scorer has lanes (`model::lanes`).
//!
//! The output channel is bounded and blocking: if decisions fall behind, scoring
//! waits, and the cameras' own edges apply their overflow policy.

use crate::telemetry::{BatchFailed, Event, FrameOutsideView, FrameWrongSize, Telemetry};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ndarray::Array2;
use tracing::info;

use super::decide::DecisionInput;
use super::gather::gather;
use crate::cfa::preprocess::{normalise_rgb_into, Normalisation};
use crate::flow::edge::{EdgeReceiver, Signal};
use crate::flow::frame::Frame;
use crate::model::scorer::{ImageBatch, ScoreError, Scorer};
use crate::view::{CameraView, Rect, View};

pub use crate::flow::ModelIdentity;

/// A frame and what the model made of it.
#[derive(Debug, Clone)]
pub struct ScoredFrame {
    pub frame: Frame,
    pub score: f32,
    /// Anomaly map over `roi`, at its resolution (the model's input size for models without a
    /// stored view, whose frames arrive at that size).
    pub map: Array2<f32>,
    /// Where the map lies in the frame, in the frame's pixels.
    pub roi: Rect,
    pub scored_at: SystemTime,
    pub model: Arc<ModelIdentity>,
}

/// How frames are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    pub max_batch: usize,
    pub max_wait: Duration,
}

/// What the watchdog reads.
#[derive(Debug, Default)]
pub struct ScoringStats {
    pub frames_scored: AtomicU64,
    /// Milliseconds since the Unix epoch at the end of the last loop iteration (scored or idle).
    pub heartbeat_ms: AtomicU64,
}

impl ScoringStats {
    fn beat(&self) {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        self.heartbeat_ms.store(now.as_millis() as u64, Ordering::Relaxed);
    }

    /// How long ago the loop last made progress.
    pub fn since_heartbeat(&self) -> Duration {
        let now =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)))
    }
}

/// A replacement model handed to a running stage by a reload; taken between batches.
pub struct ModelSwap {
    pub scorer: Scorer,
    pub model: Arc<ModelIdentity>,
    pub norm: Normalisation,
    pub view: View,
}

/// Where a reload leaves a [`ModelSwap`] for the stage.
pub type SwapSlot = Arc<std::sync::Mutex<Option<ModelSwap>>>;

/// The scoring stage's inputs and outputs.
pub struct ScoringStage {
    pub scorer: Scorer,
    pub model: Arc<ModelIdentity>,
    pub norm: Normalisation,
    pub inputs: Vec<EdgeReceiver<Frame>>,
    pub signal: Arc<Signal>,
    pub batching: Batching,
    pub output: SyncSender<DecisionInput>,
    pub stats: Arc<ScoringStats>,
    /// Drops and failed batches are counted and logged there.
    pub telemetry: Arc<Telemetry>,
    /// Checked before every batch; the daemon's reload puts a new model here.
    pub swap: SwapSlot,
    /// The bundle's view. Without a stored one ([`View::frame`] `None`), sources deliver
    /// frames already at the input size; with one, at their own size, cut here.
    pub view: View,
    /// Cameras whose config moves the view's ROI or ignores areas.
    pub cameras: HashMap<Arc<str>, CameraView>,
    /// Each camera's resolved view per frame size (rasterising polygons is not per frame).
    pub resolved: HashMap<(Arc<str>, (u32, u32)), View>,
}

impl ScoringStage {
    /// Runs on a new thread until every input edge is closed and drained.
    pub fn spawn(self) -> std::io::Result<JoinHandle<Result<(), String>>> {
        std::thread::Builder::new().name(self.thread_name()).spawn(move || self.run())
    }

    /// `score:{model}`, the name of the thread that runs this stage.
    pub fn thread_name(&self) -> String {
        format!("score:{}", self.model.name)
    }

    /// Scores until every input is closed and drained; an error when the decision stage is
    /// gone, because nothing scored from then on could be judged.
    pub fn run(mut self) -> Result<(), String> {
        info!(model = %self.model.name, "Scoring started.");
        let mut start = 0;
        while let Some(frames) = gather(&self.inputs, &self.signal, self.batching, &mut start) {
            self.stats.beat();
            self.take_swap();
            if !frames.is_empty() && self.score(frames).is_err() {
                return Err("the decision stage is gone; scored frames cannot be judged".into());
            }
        }
        info!(model = %self.model.name, "Scoring finished: all cameras closed.");
        Ok(())
    }

    /// Switches to a reloaded model, if one is waiting. The old sessions are dropped here, on
    /// the thread that used them.
    fn take_swap(&mut self) {
        let next = self.swap.lock().map(|mut slot| slot.take()).unwrap_or(None);
        if let Some(next) = next {
            info!(model = %self.model.name, old = %self.model.id, new = %next.model.id, "Model swapped.");
            self.scorer = next.scorer;
            self.model = next.model;
            self.norm = next.norm;
            self.view = next.view;
            self.resolved.clear();
        }
    }

    /// Scores one batch and hands it on; `Err` when the decision stage's channel is closed.
    fn score(&mut self, frames: Vec<Frame>) -> Result<(), ()> {
        if self.view.stored() {
            return self.score_views(frames);
        }
        let (h, w) = self.scorer.input_size();
        let (frames, wrong): (Vec<Frame>, Vec<Frame>) =
            frames.into_iter().partition(|f| (f.width as usize, f.height as usize) == (w, h));
        for f in wrong {
            FrameWrongSize { camera: &f.camera, size: (f.width, f.height), model: (w, h) }
                .emit(&self.telemetry);
        }
        if frames.is_empty() {
            return Ok(());
        }
        let plane = 3 * w * h;
        let mut data = vec![0.0f32; frames.len() * plane];
        for (f, out) in frames.iter().zip(data.chunks_exact_mut(plane)) {
            normalise_rgb_into(&f.rgb, &self.norm, out);
        }
        let batch = ImageBatch { data, count: frames.len(), height: h, width: w };
        match self.scorer.score(&batch) {
            Ok((results, _)) => {
                let scored_at = SystemTime::now();
                self.telemetry.scoring_batches(&self.model.name).inc();
                self.stats.frames_scored.fetch_add(frames.len() as u64, Ordering::Relaxed);
                for (frame, r) in frames.into_iter().zip(results) {
                    let roi = Rect::whole(frame.width, frame.height);
                    let out = ScoredFrame {
                        frame,
                        score: r.score,
                        map: r.map,
                        roi,
                        scored_at,
                        model: self.model.clone(),
                    };
                    self.output.send(DecisionInput::Frame(Box::new(out))).map_err(|_| ())?;
                }
            }
            Err(e) => {
                let cameras: Vec<&str> = frames.iter().map(|f| &*f.camera).collect();
                BatchFailed { model: &self.model.name, cameras: &cameras, error: &e }.emit(&self.telemetry);
            }
        }
        Ok(())
    }

    /// Frames at their own size through the view: each camera's frames (tiles and all) one
    /// scorer call, maps stitched at ROI resolution.
    fn score_views(&mut self, frames: Vec<Frame>) -> Result<(), ()> {
        let mut by_camera: Vec<(Arc<str>, Vec<Frame>)> = Vec::new();
        for f in frames {
            match by_camera.iter_mut().find(|(c, _)| *c == f.camera) {
                Some((_, group)) => group.push(f),
                None => by_camera.push((f.camera.clone(), vec![f])),
            }
        }
        for (camera, group) in by_camera {
            let size = (group[0].width, group[0].height);
            let view = self
                .resolved
                .entry((camera.clone(), size))
                .or_insert_with(|| {
                    self.cameras.get(&camera).cloned().unwrap_or_default().resolve(&self.view, size)
                })
                .clone();
            let (group, outside): (Vec<Frame>, Vec<Frame>) =
                group.into_iter().partition(|f| view.check((f.width, f.height)).is_ok());
            for f in outside {
                let error = view.check((f.width, f.height)).expect_err("partitioned on it");
                FrameOutsideView { camera: &f.camera, error: &error }.emit(&self.telemetry);
            }
            if group.is_empty() {
                continue;
            }
            let images: Vec<image::RgbImage> = group.iter().map(Frame::to_image).collect();
            let refs: Vec<&image::RgbImage> = images.iter().collect();
            match self.scorer.score_frames(&view, &refs) {
                Ok((results, _)) => {
                    let scored_at = SystemTime::now();
                    self.telemetry.scoring_batches(&self.model.name).inc();
                    self.stats.frames_scored.fetch_add(group.len() as u64, Ordering::Relaxed);
                    for (frame, r) in group.into_iter().zip(results) {
                        let out = ScoredFrame {
                            frame,
                            score: r.score,
                            map: r.map,
                            roi: r.roi,
                            scored_at,
                            model: self.model.clone(),
                        };
                        self.output.send(DecisionInput::Frame(Box::new(out))).map_err(|_| ())?;
                    }
                }
                Err(e) => {
                    let e: &ScoreError = &e;
                    let cameras = vec![&*camera; group.len()];
                    BatchFailed { model: &self.model.name, cameras: &cameras, error: e }
                        .emit(&self.telemetry);
                }
            }
        }
        Ok(())
    }
}
