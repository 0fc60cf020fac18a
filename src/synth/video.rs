//! Demo and test videos: synthetic good frames with defect frames at known positions, encoded
//! through GStreamer (MJPEG in AVI or Matroska), plus the per-frame labels.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use image::RgbImage;
use serde::Serialize;

use super::{render_defect, render_good, Category, DefectKind};

/// Which frames of a generated video are defective.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoPlan {
    pub category: Category,
    pub size: u32,
    pub seed: u64,
    pub frames: usize,
    pub fps: u32,
    /// `(first frame, frame count)` of each defect episode; defect kinds rotate.
    pub defects: Vec<(usize, usize)>,
}

/// One frame's label, as `inspectd replay --labels` reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FrameLabel {
    pub frame: usize,
    /// `1` for a defective frame, `0` for a good one.
    pub label: u8,
}

/// Errors writing a video; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("cannot encode {path}: {reason}")]
    Encode { path: PathBuf, reason: String },
}

impl VideoPlan {
    /// Whether frame `i` shows a defect, and which.
    pub fn defect_at(&self, i: usize) -> Option<DefectKind> {
        let episode = self.defects.iter().position(|&(start, len)| i >= start && i < start + len)?;
        Some(DefectKind::all()[episode % DefectKind::all().len()])
    }

    /// Frame `i`: a good rendering (a few distinct parts repeat, as on a line) or a defect.
    pub fn frame(&self, i: usize) -> RgbImage {
        match self.defect_at(i) {
            Some(kind) => render_defect(self.category, kind, self.size, self.seed, 1000 + i).0,
            None => render_good(self.category, self.size, self.seed, 500 + i % 16),
        }
    }

    pub fn labels(&self) -> Vec<FrameLabel> {
        (0..self.frames)
            .map(|frame| FrameLabel { frame, label: u8::from(self.defect_at(frame).is_some()) })
            .collect()
    }
}

/// Encodes the plan's frames to `path` (container from the extension: `.avi` or `.mkv`).
pub fn write_video(plan: &VideoPlan, path: &Path) -> Result<(), VideoError> {
    let fail = |reason: String| VideoError::Encode { path: path.to_path_buf(), reason };
    gst::init().map_err(|e| fail(e.to_string()))?;
    let mux = match path.extension().and_then(|e| e.to_str()) {
        Some("mkv") => "matroskamux",
        _ => "avimux",
    };
    let launch = format!(
        "appsrc name=src format=time ! videoconvert ! jpegenc quality=92 ! {mux} ! filesink name=sink"
    );
    let pipeline = gst::parse::launch(&launch).map_err(|e| fail(e.to_string()))?;
    let pipeline = pipeline.downcast::<gst::Pipeline>().map_err(|_| fail("not a pipeline".into()))?;
    let sink = pipeline.by_name("sink").ok_or_else(|| fail("no filesink".into()))?;
    sink.set_property("location", path.to_string_lossy().as_ref());
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| fail("no appsrc".into()))?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "RGB")
        .field("width", plan.size as i32)
        .field("height", plan.size as i32)
        .field("framerate", gst::Fraction::new(plan.fps as i32, 1))
        .build();
    src.set_caps(Some(&caps));
    pipeline.set_state(gst::State::Playing).map_err(|e| fail(e.to_string()))?;
    let result = push_frames(plan, &src).and_then(|()| wait_eos(&pipeline));
    let _ = pipeline.set_state(gst::State::Null);
    result.map_err(fail)
}

fn push_frames(plan: &VideoPlan, src: &gst_app::AppSrc) -> Result<(), String> {
    let step = Duration::from_secs(1) / plan.fps.max(1);
    for i in 0..plan.frames {
        let mut buffer = gst::Buffer::from_mut_slice(plan.frame(i).into_raw());
        let b = buffer.get_mut().expect("new buffer is writable");
        b.set_pts(gst::ClockTime::from_nseconds((step * i as u32).as_nanos() as u64));
        b.set_duration(gst::ClockTime::from_nseconds(step.as_nanos() as u64));
        src.push_buffer(buffer).map_err(|e| format!("push frame {i}: {e:?}"))?;
    }
    src.end_of_stream().map_err(|e| format!("end of stream: {e:?}"))?;
    Ok(())
}

fn wait_eos(pipeline: &gst::Pipeline) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("pipeline without a bus")?;
    for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
        match msg.view() {
            gst::MessageView::Eos(..) => return Ok(()),
            gst::MessageView::Error(e) => return Err(format!("{} ({:?})", e.error(), e.debug())),
            _ => {}
        }
    }
    Err("timed out waiting for the encoder".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_defect_episodes() {
        let plan = VideoPlan {
            category: Category::Washer,
            size: 64,
            seed: 1,
            frames: 10,
            fps: 5,
            defects: vec![(3, 2), (8, 1)],
        };
        let bad: Vec<usize> = plan.labels().iter().filter(|l| l.label == 1).map(|l| l.frame).collect();
        assert_eq!(bad, vec![3, 4, 8]);
        assert_ne!(plan.defect_at(3), None);
        assert_ne!(plan.frame(3), plan.frame(2));
    }
}
