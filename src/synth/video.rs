//! Demo and test videos: synthetic good frames with defect frames at known positions, encoded
//! through GStreamer (MJPEG in AVI or Matroska), plus the per-frame labels.

use std::path::Path;

use image::RgbImage;
use serde::Serialize;

use super::{render_defect, render_good, Category, DefectKind};
use crate::util::video_writer::{VideoWriteError, VideoWriter};

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
pub fn write_video(plan: &VideoPlan, path: &Path) -> Result<(), VideoWriteError> {
    let mut writer = VideoWriter::create(path, plan.size, plan.size, plan.fps)?;
    for i in 0..plan.frames {
        writer.push(plan.frame(i))?;
    }
    writer.finish()
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
