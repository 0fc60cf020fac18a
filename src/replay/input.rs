//! Replay inputs: video files, folders of images (sorted by name) and glob patterns, turned
//! into a stream of frames at the model size, feeding the same edge → scoring stage the daemon
//! uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use tracing::warn;

use crate::cfa::preprocess;
use crate::config::types::Roi;
use crate::flow::edge::{EdgeSender, Pushed};
use crate::flow::frame::Frame;
use crate::input::images;
use crate::source::{SourceError, VideoReader};
use crate::telemetry::{QueueWatch, Telemetry};

/// One replay input.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Video(PathBuf),
    /// Image files in order; named after the folder or pattern they came from.
    Images {
        name: String,
        files: Vec<PathBuf>,
    },
}

impl Input {
    pub fn name(&self) -> String {
        match self {
            Input::Video(p) => p.display().to_string(),
            Input::Images { name, .. } => name.clone(),
        }
    }
}

/// A bad replay argument.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}: no such file, folder or matching pattern")]
    NotFound(String),
    #[error("{pattern}: bad glob pattern: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error(transparent)]
    Images(#[from] images::ImageError),
}

/// Expands the command-line inputs: a folder is its images sorted by name, a pattern with
/// `*`/`?`/`[` is its matches sorted (images together as one input, videos each on their own),
/// anything else a video file.
pub fn expand(args: &[String]) -> Result<Vec<Input>, InputError> {
    let mut out = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        if path.is_dir() {
            out.push(Input::Images { name: arg.clone(), files: images::list_images(path)? });
        } else if arg.contains(['*', '?', '[']) {
            out.extend(expand_glob(arg)?);
        } else if path.is_file() {
            out.push(Input::Video(path.to_path_buf()));
        } else {
            return Err(InputError::NotFound(arg.clone()));
        }
    }
    Ok(out)
}

fn expand_glob(pattern: &str) -> Result<Vec<Input>, InputError> {
    let bad =
        |e: &dyn std::fmt::Display| InputError::Pattern { pattern: pattern.into(), reason: e.to_string() };
    let mut matches: Vec<PathBuf> =
        glob::glob(pattern).map_err(|e| bad(&e))?.filter_map(Result::ok).filter(|p| p.is_file()).collect();
    matches.sort();
    if matches.is_empty() {
        return Err(InputError::NotFound(pattern.into()));
    }
    let (pictures, videos): (Vec<_>, Vec<_>) = matches.into_iter().partition(|p| images::is_image(p));
    let mut out: Vec<Input> = videos.into_iter().map(Input::Video).collect();
    if !pictures.is_empty() {
        out.push(Input::Images { name: pattern.into(), files: pictures });
    }
    Ok(out)
}

/// Which frames to score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Selection {
    /// Score every n-th frame (1: all).
    pub every: u64,
    pub start: Bound,
    pub end: Option<Bound>,
}

/// A position in a recording: a frame index or a media time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    Frame(u64),
    Time(Duration),
}

impl Bound {
    /// `120` is a frame index; `12.5s`, `1:02` or `1:02.5` are times.
    pub fn parse(s: &str) -> Result<Bound, String> {
        let err = || format!("'{s}' is neither a frame number (120) nor a time (12.5s, 1:02.5)");
        if let Some(secs) = s.strip_suffix('s') {
            return secs
                .parse::<f64>()
                .ok()
                .and_then(|v| Duration::try_from_secs_f64(v).ok())
                .map(Bound::Time)
                .ok_or_else(err);
        }
        if let Some((m, sec)) = s.split_once(':') {
            let m: u64 = m.parse().map_err(|_| err())?;
            let sec: f64 = sec.parse().map_err(|_| err())?;
            return Duration::try_from_secs_f64(m as f64 * 60.0 + sec).map(Bound::Time).map_err(|_| err());
        }
        s.parse::<u64>().map(Bound::Frame).map_err(|_| err())
    }

    fn reached(&self, index: u64, pts: Duration) -> bool {
        match self {
            Bound::Frame(f) => index >= *f,
            Bound::Time(t) => pts >= *t,
        }
    }
}

impl Selection {
    fn keeps(&self, index: u64, pts: Duration) -> bool {
        self.start.reached(index, pts) && index.is_multiple_of(self.every.max(1))
    }

    fn past_end(&self, index: u64, pts: Duration) -> bool {
        self.end.is_some_and(|e| e.reached(index, pts))
    }
}

/// Feeds one input's selected frames into `edge` (the caller closes it by dropping). Frames
/// carry media time as their capture time (`UNIX_EPOCH + pts`), so output and alarm ids are
/// reproducible. With `realtime`, frames are released at their media time.
#[derive(Debug, Clone)]
pub struct Feeder {
    pub camera: Arc<str>,
    pub roi: Option<Roi>,
    pub width: u32,
    pub height: u32,
    pub selection: Selection,
    pub realtime: bool,
    /// Frame rate assumed for image folders (their "media time").
    pub image_fps: f64,
    /// Where a realtime replay's dropped frames are counted.
    pub telemetry: Arc<Telemetry>,
}

impl Feeder {
    /// Reads the input to its end; returns the number of frames read, or the first error.
    pub fn run(&self, input: &Input, edge: &EdgeSender<Frame>) -> Result<u64, SourceError> {
        match input {
            Input::Video(path) => {
                let reader = VideoReader::open(path, self.roi, self.width, self.height)?;
                self.feed(reader.map(|f| f.map(|f| (f.seq, f))), edge)
            }
            Input::Images { files, .. } => {
                let frames = files.iter().enumerate().filter_map(|(i, p)| self.image_frame(i as u64, p));
                self.feed(frames.map(Ok), edge)
            }
        }
    }

    fn feed(
        &self,
        frames: impl Iterator<Item = Result<(u64, Frame), SourceError>>,
        edge: &EdgeSender<Frame>,
    ) -> Result<u64, SourceError> {
        let clock = Instant::now();
        let mut read = 0;
        let mut queue = QueueWatch::default();
        for item in frames {
            let (index, mut frame) = item?;
            read += 1;
            let pts = frame.pts.unwrap_or_else(|| Duration::from_secs_f64(index as f64 / self.image_fps));
            if self.selection.past_end(index, pts) {
                break;
            }
            if !self.selection.keeps(index, pts) {
                continue;
            }
            frame.camera = self.camera.clone();
            frame.seq = index;
            frame.pts = Some(pts);
            frame.captured_at = UNIX_EPOCH + pts;
            if self.realtime {
                std::thread::sleep(pts.saturating_sub(clock.elapsed()));
            }
            let pushed = edge.push(frame);
            if pushed == Pushed::Closed {
                break;
            }
            queue.pushed(&self.camera, &pushed, &self.telemetry);
        }
        Ok(read)
    }

    /// An image as a frame; unreadable images are reported and skipped.
    fn image_frame(&self, index: u64, path: &Path) -> Option<(u64, Frame)> {
        let img = match images::load_rgb(path) {
            Ok(img) => img,
            Err(e) => {
                warn!("{e}");
                return None;
            }
        };
        let img = match self.roi {
            Some(r) => image::imageops::crop_imm(&img, r.x, r.y, r.width, r.height).to_image(),
            None => img,
        };
        let native = (self.width, self.height) == crate::source::NATIVE_SIZE;
        let img = if native { img } else { preprocess::resize(&img, self.width, self.height) };
        let frame = Frame {
            camera: self.camera.clone(),
            seq: index,
            pts: None,
            captured_at: UNIX_EPOCH,
            width: img.width(),
            height: img.height(),
            rgb: img.into_raw(),
            part: None,
        };
        Some((index, frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_frames_and_times() {
        assert_eq!(Bound::parse("120"), Ok(Bound::Frame(120)));
        assert_eq!(Bound::parse("12.5s"), Ok(Bound::Time(Duration::from_millis(12_500))));
        assert_eq!(Bound::parse("1:02.5"), Ok(Bound::Time(Duration::from_millis(62_500))));
        assert!(Bound::parse("soon").unwrap_err().contains("soon"));
    }

    #[test]
    fn selection_applies_start_end_and_stride() {
        let s =
            Selection { every: 2, start: Bound::Frame(3), end: Some(Bound::Time(Duration::from_secs(1))) };
        let fps10 = |i: u64| Duration::from_millis(100 * i);
        let kept: Vec<u64> =
            (0..20).take_while(|&i| !s.past_end(i, fps10(i))).filter(|&i| s.keeps(i, fps10(i))).collect();
        assert_eq!(kept, vec![4, 6, 8]);
    }
}
