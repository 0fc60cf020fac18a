//! What flows between stages: frames from sources, inspections from the scorer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::trigger::PartTag;

/// One decoded frame: at the camera's own resolution for a model with a view (the scoring
/// stage cuts it), else already cropped (`roi`) and scaled to the model's input size.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Camera id from the config.
    pub camera: Arc<str>,
    /// Per-camera sequence number, counting every frame the source produced (dropped ones too),
    /// so consumers can see gaps.
    pub seq: u64,
    /// Presentation timestamp from GStreamer, when the source has one.
    pub pts: Option<Duration>,
    /// Wall-clock time the frame left the source.
    pub captured_at: SystemTime,
    /// Tightly packed RGB, `width · height · 3` bytes.
    pub rgb: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The part a triggered camera's frame shows; `None` for continuous cameras.
    pub part: Option<PartTag>,
}

impl Frame {
    /// The pixels as an image (copies).
    pub fn to_image(&self) -> image::RgbImage {
        image::RgbImage::from_raw(self.width, self.height, self.rgb.clone())
            .expect("rgb holds width·height·3 bytes")
    }
}

/// A connected region of the thresholded anomaly map, in the frame's pixels.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Region {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// Highest map value inside the region.
    pub peak: f32,
    /// Pixels in the region.
    pub area: u32,
}

impl Region {
    /// The region moved by `(dx, dy)`: from a map of the ROI into the frame's pixels, by the
    /// ROI's corner.
    pub fn offset(mut self, dx: u32, dy: u32) -> Region {
        self.x += dx;
        self.y += dy;
        self
    }
}

/// The verdict for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "NG")]
    Ng,
    /// The frame could not be judged (frozen, badly exposed, out of focus): never OK.
    #[serde(rename = "invalid")]
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_moves_by_the_roi_corner_into_sensor_pixels() {
        let r = Region { x: 3, y: 4, w: 5, h: 6, peak: 1.0, area: 30 };
        let moved = r.offset(100, 200);
        assert_eq!((moved.x, moved.y, moved.w, moved.h), (103, 204, 5, 6));
    }
}
