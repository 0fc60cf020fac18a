//! Reading a video file frame by frame, for training from video and for replay.
//!
//! Unlike a camera source this is a plain blocking iterator: every frame, in order, none
//! dropped, decoded as fast as the caller takes them (appsink `sync=false`, and the appsink's
//! two-frame queue holds the decoder back while the caller is busy).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::config::types::{FileSource, Roi, SourceConfig};
use crate::flow::frame::Frame;

use super::assemble::{assemble, Assembled};
use super::bus::{self, BusEvent, Failure, Preroll};
use super::convert::to_frame;
use super::error::SourceError;
use super::SourceSettings;

/// How long opening may take: typefinding, demuxer set-up and the first decoded frame.
const OPEN_TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(30);
/// A decoder that produces nothing for this long, without an error or the end, is stuck.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A file that decodes to fewer than this share of its announced frames is reported as
/// truncated; the margin allows for containers that round their duration.
const TRUNCATED_BELOW: f64 = 0.9;
/// Why a file that decodes to nothing is refused.
const NO_FRAME: &str = "the file contains no decodable video frame";
/// One pull's wait before the bus is checked for errors.
const PULL_WAIT: gst::ClockTime = gst::ClockTime::from_mseconds(100);

/// Frames of a video file, converted to RGB at a given size (and cropped to an roi).
///
/// Frames carry the file name as their camera id; replace it when replaying for a camera.
/// Dropping the reader stops decoding.
pub struct VideoReader {
    assembled: Assembled,
    path: PathBuf,
    camera: Arc<str>,
    frame_rate: Option<f64>,
    duration: Option<Duration>,
    frame_count: Option<u64>,
    seq: u64,
    finished: bool,
}

impl VideoReader {
    /// Opens `path` and decodes up to its first frame, so a file that is not a video or uses an
    /// unsupported codec fails here, with the file name and GStreamer's reason. A truncated file
    /// fails when iteration reaches its end. Blocking: call it off the async runtime.
    pub fn open(
        path: impl AsRef<Path>,
        roi: Option<Roi>,
        width: u32,
        height: u32,
    ) -> Result<VideoReader, SourceError> {
        let path = path.as_ref().to_path_buf();
        if !path.is_file() {
            return Err(file_error(&path, "filesrc", "no such file".to_string()));
        }
        let camera: Arc<str> = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default().into();
        let source = SourceConfig::File(FileSource { path: path.clone(), looping: false, realtime: false });
        let stall_timeout = super::DEFAULT_STALL_TIMEOUT;
        let settings = SourceSettings {
            camera: camera.clone(),
            source,
            roi,
            width,
            height,
            stall_timeout,
            trigger: None,
        };
        let assembled = assemble(&settings)?;
        preroll(&assembled, &path)?;
        let mut reader = VideoReader {
            assembled,
            path,
            camera,
            frame_rate: None,
            duration: None,
            frame_count: None,
            seq: 0,
            finished: false,
        };
        reader.read_stream_info();
        if reader.assembled.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(pending_error(&reader.assembled.bus, &reader.path));
        }
        Ok(reader)
    }

    /// The file's frame rate, when its container states one.
    pub fn frame_rate(&self) -> Option<f64> {
        self.frame_rate
    }

    /// The file's duration, when the demuxer knows it.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// Number of frames: from the container when it says, else duration × frame rate.
    pub fn frame_count(&self) -> Option<u64> {
        self.frame_count
    }

    /// The file being read, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_stream_info(&mut self) {
        let pipeline = &self.assembled.pipeline;
        let caps = self.assembled.appsink.static_pad("sink").and_then(|pad| pad.current_caps());
        self.frame_rate = caps
            .as_ref()
            .and_then(|caps| caps.structure(0)?.get::<gst::Fraction>("framerate").ok())
            .filter(|rate| rate.numer() > 0 && rate.denom() > 0)
            .map(|rate| f64::from(rate.numer()) / f64::from(rate.denom()));
        self.duration = pipeline.query_duration::<gst::ClockTime>().map(Duration::from);
        let counted = pipeline.query_duration::<gst::format::Default>().map(|frames| *frames);
        let estimated =
            self.duration.zip(self.frame_rate).map(|(d, fps)| (d.as_secs_f64() * fps).round() as u64);
        self.frame_count = counted.filter(|n| *n > 0).or(estimated);
    }

    /// The next frame, an error, or `None` at the end; waits for the decoder.
    fn next_frame(&mut self) -> Option<Result<Frame, SourceError>> {
        let started = Instant::now();
        loop {
            if let Some(sample) = self.assembled.appsink.try_pull_sample(PULL_WAIT) {
                let frame = to_frame(&sample, &self.camera, self.seq);
                self.seq += 1;
                return Some(frame.map_err(|reason| file_error(&self.path, "appsink", reason)));
            }
            if let Some(BusEvent::Error(failure)) = bus::poll(&self.assembled.bus) {
                return Some(Err(failure_error(&self.path, failure)));
            }
            if self.assembled.appsink.is_eos() {
                return self.check_complete().err().map(Err);
            }
            if started.elapsed() >= STALL_TIMEOUT {
                return Some(Err(SourceError::Stalled { file: self.path.clone(), after: STALL_TIMEOUT }));
            }
        }
    }
}

impl VideoReader {
    /// At the end: GStreamer plays a truncated file to a clean end of stream, so compare what
    /// was decoded with what the container announced. A file without a single frame is broken.
    fn check_complete(&self) -> Result<(), SourceError> {
        let decoded = self.seq;
        let missing = match self.frame_count {
            _ if decoded == 0 => NO_FRAME.to_string(),
            Some(announced) if (decoded as f64) < TRUNCATED_BELOW * announced as f64 => {
                format!(
                    "ended after {decoded} of the {announced} frames the container announces; \
                     the file is truncated"
                )
            }
            _ => return Ok(()),
        };
        Err(file_error(&self.path, "decodebin", missing))
    }
}

impl Iterator for VideoReader {
    type Item = Result<Frame, SourceError>;

    /// Frames in order; after an error or the end, `None` for good.
    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = self.next_frame();
        self.finished = !matches!(item, Some(Ok(_)));
        item
    }
}

impl std::iter::FusedIterator for VideoReader {}

impl std::fmt::Debug for VideoReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoReader")
            .field("path", &self.path)
            .field("frame_rate", &self.frame_rate)
            .field("frame_count", &self.frame_count)
            .field("next_seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// `n` frames spread evenly over the whole video, first and last included (all frames when it
/// has fewer than `n`).
///
/// Decodes the file once without needing its length: it keeps every `stride`-th frame and, when
/// `2n` are kept, drops every other one and doubles the stride, so memory stays at `2n` frames.
/// The newest frame not kept is held aside so the video's last frame can close the selection.
pub fn sample_frames(
    path: impl AsRef<Path>,
    width: u32,
    height: u32,
    n: usize,
) -> Result<Vec<Frame>, SourceError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut kept: Vec<Frame> = Vec::with_capacity(2 * n + 1);
    let mut newest = None;
    let mut stride = 1usize;
    for (index, frame) in VideoReader::open(path, None, width, height)?.enumerate() {
        let frame = frame?;
        if index % stride != 0 {
            newest = Some(frame);
            continue;
        }
        newest = None;
        kept.push(frame);
        if kept.len() == 2 * n {
            kept = kept.into_iter().step_by(2).collect();
            stride *= 2;
        }
    }
    kept.extend(newest);
    Ok(evenly_spaced(kept, n))
}

/// `n` items at evenly spaced positions, first and last included; all of them if there are fewer.
fn evenly_spaced<T>(items: Vec<T>, n: usize) -> Vec<T> {
    if items.len() <= n {
        return items;
    }
    let last = items.len() - 1;
    let wanted: Vec<usize> =
        (0..n).map(|j| if n == 1 { 0 } else { (j * last + (n - 1) / 2) / (n - 1) }).collect();
    items.into_iter().enumerate().filter(|(i, _)| wanted.contains(i)).map(|(_, item)| item).collect()
}

/// Decodes up to the first frame (state Paused), so broken files fail before iteration.
fn preroll(assembled: &Assembled, path: &Path) -> Result<(), SourceError> {
    if assembled.pipeline.set_state(gst::State::Paused).is_err() {
        return Err(pending_error(&assembled.bus, path));
    }
    match bus::wait_prerolled(&assembled.bus, OPEN_TIMEOUT) {
        Ok(Preroll::Ready) => Ok(()),
        Ok(Preroll::Ended) => Err(file_error(path, "decodebin", NO_FRAME.to_string())),
        Ok(Preroll::TimedOut) => {
            Err(SourceError::Stalled { file: path.to_path_buf(), after: OPEN_TIMEOUT.into() })
        }
        Err(failure) => Err(failure_error(path, failure)),
    }
}

/// The error the bus holds after a failed state change, or a generic one.
fn pending_error(bus: &gst::Bus, path: &Path) -> SourceError {
    match bus::poll(bus) {
        Some(BusEvent::Error(failure)) => failure_error(path, failure),
        _ => file_error(path, "pipeline", "the decoder did not start".to_string()),
    }
}

fn failure_error(path: &Path, failure: Failure) -> SourceError {
    let (file, detail) = (path.display(), &failure.debug);
    tracing::debug!(%file, element = %failure.element, ?detail, "Video failed.");
    file_error(path, &failure.element, failure.reason)
}

fn file_error(path: &Path, element: &str, reason: String) -> SourceError {
    SourceError::File { file: path.to_path_buf(), element: element.to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::evenly_spaced;

    #[test]
    fn evenly_spaced_keeps_both_ends_and_spreads_the_rest() {
        assert_eq!(evenly_spaced((0..100).collect(), 5), [0, 25, 50, 74, 99]);
        assert_eq!(evenly_spaced((0..10).collect(), 1), [0]);
        assert_eq!(evenly_spaced((0..3).collect(), 5), [0, 1, 2]);
    }
}
