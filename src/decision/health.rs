//! Frame health, checked before a frame is judged: a frozen stream, a badly exposed frame or
//! an out-of-focus one says nothing about the part, and calling it `OK` would be the worst
//! answer an inspection system can give. Such a frame gets verdict `invalid` with the reason,
//! and a camera-health alarm debounces them (k of n, like the defect alarm).
//!
//! The checks run on the frame the model sees (at model size), in well under a millisecond:
//! - **frozen**: `frozen_frames` byte-identical frames in a row (a sensor's noise makes two
//!   real frames differ; a stuck driver or decoder repeats one buffer);
//! - **exposure**: more than `clipped_fraction` of the pixels at or below `dark_level` (a
//!   covered lens, a failed light) or at or above `bright_level` (a saturated sensor);
//! - **focus**: the variance of the Laplacian of the luma below `min_focus_ratio` times the
//!   median over the model's calibration images, which the bundle stores.

use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::sync::Arc;

use super::alarm::{AlarmConfigProblem, AlarmMachine, Observation};
use super::event::AlarmEvent;
use crate::config::types::FrameHealthConfig;
use crate::flow::frame::{Frame, Verdict};
use crate::view::Rect;

/// Why a frame cannot be judged.
#[derive(Debug, Clone, PartialEq)]
pub enum Unusable {
    Frozen { frames: usize },
    Underexposed { fraction: f32 },
    Overexposed { fraction: f32 },
    OutOfFocus { focus: f32, reference: f32 },
}

impl Unusable {
    /// The reason as results and alarms carry it: a code, a colon, the figures.
    pub fn reason(&self) -> String {
        match self {
            Unusable::Frozen { frames } => format!("frozen: {frames} identical frames in a row"),
            Unusable::Underexposed { fraction } => {
                format!("underexposed: {:.0} % of the pixels clipped dark", fraction * 100.0)
            }
            Unusable::Overexposed { fraction } => {
                format!("overexposed: {:.0} % of the pixels clipped bright", fraction * 100.0)
            }
            Unusable::OutOfFocus { focus, reference } => format!(
                "out of focus: focus measure {focus:.1}, {:.0} % of the model's calibration images",
                100.0 * focus / reference
            ),
        }
    }
}

/// One camera's frame-health checks and its camera-health alarm.
#[derive(Debug)]
pub struct FrameHealth {
    config: FrameHealthConfig,
    /// The model's calibration focus median; `None` (an older bundle) skips the focus check.
    focus_reference: Option<f32>,
    previous: Option<u64>,
    identical: usize,
    alarm: AlarmMachine,
}

impl FrameHealth {
    pub fn new(
        camera: &str,
        config: FrameHealthConfig,
        focus_reference: Option<f32>,
    ) -> Result<FrameHealth, Vec<AlarmConfigProblem>> {
        let alarm = AlarmMachine::new(Arc::<str>::from(format!("{camera}-health")), config.alarm)?;
        Ok(FrameHealth { config, focus_reference, previous: None, identical: 0, alarm })
    }

    /// A reloaded model's focus median.
    pub fn set_focus_reference(&mut self, reference: Option<f32>) {
        self.focus_reference = reference;
    }

    /// Whether `frame` can be judged; the first problem found otherwise.
    pub fn check(&mut self, frame: &Frame, roi: Rect) -> Option<Unusable> {
        if !self.config.enabled {
            return None;
        }
        let luma = roi_luma(frame, roi);
        let frozen = self.repeated(&frame.rgb);
        let n = luma.len().max(1) as f32;
        let dark = luma.iter().filter(|&&l| l <= self.config.dark_level).count() as f32 / n;
        let bright = luma.iter().filter(|&&l| l >= self.config.bright_level).count() as f32 / n;
        if dark > self.config.clipped_fraction {
            return Some(Unusable::Underexposed { fraction: dark });
        }
        if bright > self.config.clipped_fraction {
            return Some(Unusable::Overexposed { fraction: bright });
        }
        if self.config.frozen_frames > 0 && frozen >= self.config.frozen_frames {
            return Some(Unusable::Frozen { frames: frozen });
        }
        let reference = self.focus_reference.filter(|r| *r > 0.0 && self.config.min_focus_ratio > 0.0)?;
        let focus = focus_measure(&luma, roi.width as usize, roi.height as usize);
        (focus < self.config.min_focus_ratio * reference).then_some(Unusable::OutOfFocus { focus, reference })
    }

    /// How many byte-identical frames in a row end with this one (1 for a new picture).
    fn repeated(&mut self, rgb: &[u8]) -> usize {
        let mut h = DefaultHasher::new();
        h.write(rgb);
        let hash = h.finish();
        self.identical = if self.previous == Some(hash) { self.identical + 1 } else { 1 };
        self.previous = Some(hash);
        self.identical
    }

    /// Counts a checked frame towards the camera-health alarm; returns a raise or a clear.
    pub fn observe(&mut self, frame: &Frame, unusable: bool) -> Option<AlarmEvent> {
        self.alarm.observe(Observation {
            seq: frame.seq,
            verdict: if unusable { Verdict::Ng } else { Verdict::Ok },
            score: f32::from(u8::from(unusable)),
            threshold: 1.0,
            at: frame.captured_at,
        })
    }
}

/// Luma of the inspected part of a frame (the model's view judges only that).
fn roi_luma(frame: &Frame, roi: Rect) -> Vec<u8> {
    if roi == Rect::whole(frame.width, frame.height) {
        return luma(&frame.rgb);
    }
    let row = frame.width as usize * 3;
    let (x0, w) = (roi.x as usize * 3, roi.width as usize * 3);
    let rows = (roi.y as usize..(roi.y + roi.height) as usize)
        .filter_map(|y| frame.rgb.get(y * row + x0..y * row + x0 + w));
    rows.flat_map(luma).collect()
}

/// BT.601 luma of tightly packed RGB.
fn luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| ((77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2])) >> 8) as u8)
        .collect()
}

/// Variance of the 4-neighbour Laplacian over the interior pixels: high for a sharp picture,
/// low for a blurred one of the same scene.
pub fn focus_measure(luma: &[u8], width: usize, height: usize) -> f32 {
    if width < 3 || height < 3 || luma.len() < width * height {
        return 0.0;
    }
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for y in 1..height - 1 {
        for x in 1..width - 1 {
            let at = |dx: isize, dy: isize| {
                f64::from(luma[(y as isize + dy) as usize * width + (x as isize + dx) as usize])
            };
            let l = at(-1, 0) + at(1, 0) + at(0, -1) + at(0, 1) - 4.0 * at(0, 0);
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sum2 / n - mean * mean) as f32
}

/// The focus measure of an RGB image, as training stores its median.
pub fn focus_of(image: &image::RgbImage) -> f32 {
    focus_measure(&luma(image.as_raw()), image.width() as usize, image.height() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(seq: u64, rgb: Vec<u8>, size: u32) -> Frame {
        Frame {
            camera: "cam".into(),
            seq,
            pts: None,
            captured_at: SystemTime::UNIX_EPOCH,
            rgb,
            width: size,
            height: size,
            part: None,
        }
    }

    /// A sharp checkerboard whose phase moves with `shift`.
    fn checkers(size: u32, shift: u32) -> Vec<u8> {
        (0..size * size)
            .flat_map(|i| {
                let (x, y) = (i % size + shift, i / size);
                let v = if (x / 4 + y / 4) % 2 == 0 { 60 } else { 190 };
                [v, v, v]
            })
            .collect()
    }

    fn health(reference: Option<f32>) -> FrameHealth {
        let config = FrameHealthConfig { frozen_frames: 3, ..FrameHealthConfig::default() };
        FrameHealth::new("cam", config, reference).unwrap()
    }

    #[test]
    fn a_changing_sharp_picture_is_fine() {
        let reference = focus_of(&image::RgbImage::from_raw(32, 32, checkers(32, 0)).unwrap());
        let mut h = health(Some(reference));
        for seq in 0..10 {
            assert_eq!(
                h.check(&frame(seq, checkers(32, seq as u32), 32), Rect::whole(32, 32)),
                None,
                "frame {seq}"
            );
        }
    }

    #[test]
    fn repeated_dark_bright_and_blurred_frames_are_unusable() {
        let mut h = health(None);
        for seq in 0..2 {
            assert_eq!(h.check(&frame(seq, checkers(32, 0), 32), Rect::whole(32, 32)), None);
        }
        assert_eq!(
            h.check(&frame(2, checkers(32, 0), 32), Rect::whole(32, 32)),
            Some(Unusable::Frozen { frames: 3 })
        );
        assert_eq!(
            h.check(&frame(3, checkers(32, 1), 32), Rect::whole(32, 32)),
            None,
            "a new picture ends it"
        );
        let dark = h.check(&frame(4, vec![3; 32 * 32 * 3], 32), Rect::whole(32, 32));
        assert!(matches!(dark, Some(Unusable::Underexposed { fraction }) if fraction > 0.99), "{dark:?}");
        let bright = h.check(&frame(5, vec![255; 32 * 32 * 3], 32), Rect::whole(32, 32));
        assert!(matches!(bright, Some(Unusable::Overexposed { .. })), "{bright:?}");
        let flat_grey = vec![128; 32 * 32 * 3];
        let mut focused = health(Some(1000.0));
        let blurred = focused.check(&frame(6, flat_grey, 32), Rect::whole(32, 32));
        assert!(matches!(blurred, Some(Unusable::OutOfFocus { .. })), "{blurred:?}");
        assert!(blurred.unwrap().reason().starts_with("out of focus"));
    }

    #[test]
    fn unusable_frames_raise_the_camera_health_alarm_k_of_n() {
        let mut h = health(None);
        let f = frame(0, vec![0; 3], 1);
        let events: Vec<_> = (0..3).filter_map(|_| h.observe(&f, true)).collect();
        assert_eq!(events.len(), 1, "raised once, at the third of three");
        assert!(events[0].alarm_id.starts_with("cam-health-"), "{}", events[0].alarm_id);
        let cleared: Vec<_> = (0..5).filter_map(|_| h.observe(&f, false)).collect();
        assert_eq!(cleared.len(), 1, "cleared after clear_after usable frames");
    }
}
