//! `--annotate OUT.mkv`: the recording with the heatmap overlay, a verdict bar and the score
//! burned in, encoded through GStreamer (MJPEG in Matroska or AVI, which every install has).

use std::path::Path;

use image::{Rgb, RgbImage};
use ndarray::ArrayView2;

use crate::flow::frame::Region;
use crate::flow::frame::Verdict;
use crate::heatmap::{annotate, NG_COLOUR, REGION_COLOUR};
use crate::util::video_writer::{VideoWriteError, VideoWriter};
use crate::view::Rect;

/// The annotated video being written.
pub struct Annotator {
    writer: VideoWriter,
}

impl Annotator {
    /// Opens `path` for `width × height` frames at `fps`.
    pub fn create(path: &Path, width: u32, height: u32, fps: u32) -> Result<Annotator, VideoWriteError> {
        Ok(Annotator { writer: VideoWriter::create(path, width, height, fps)? })
    }

    /// Adds one frame: heatmap overlay (coloured up to twice the threshold), a bar green for OK
    /// and red for NG, and the score.
    pub fn push(
        &mut self,
        frame: &RgbImage,
        heat: (Rect, ArrayView2<f32>, &[Region]),
        score: f32,
        threshold: f32,
        verdict: Verdict,
    ) -> Result<(), VideoWriteError> {
        let (roi, map, regions) = heat;
        let colour = if verdict == Verdict::Ng { NG_COLOUR } else { REGION_COLOUR };
        let mut img = annotate(frame, roi, map, 2.0 * threshold, 0.4, regions, colour);
        draw_banner(&mut img, score, verdict);
        self.writer.push(img)
    }

    /// Ends the stream and waits for the file to be complete.
    pub fn finish(self) -> Result<(), VideoWriteError> {
        self.writer.finish()
    }
}

/// A bar across the top: the verdict colour, then "OK"/"NG" and the score in a 5×7 font.
fn draw_banner(img: &mut RgbImage, score: f32, verdict: Verdict) {
    let (colour, label) = match verdict {
        Verdict::Ng => (Rgb([200, 30, 30]), "NG"),
        Verdict::Ok => (Rgb([30, 150, 60]), "OK"),
        Verdict::Invalid => (Rgb([120, 120, 120]), "INVALID"),
    };
    let scale = (img.width() / 128).max(1);
    let bar = 11 * scale;
    for y in 0..bar.min(img.height()) {
        for x in 0..img.width() {
            img.put_pixel(x, y, colour);
        }
    }
    let text = format!("{label} {score:.3}");
    draw_text(img, &text, 2 * scale, 2 * scale, scale, Rgb([255, 255, 255]));
}

fn draw_text(img: &mut RgbImage, text: &str, x0: u32, y0: u32, scale: u32, colour: Rgb<u8>) {
    for (i, ch) in text.chars().enumerate() {
        let rows = glyph(ch);
        for (r, bits) in rows.iter().enumerate() {
            for c in 0..5u32 {
                if bits & (0x10 >> c) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (x, y) = (x0 + (i as u32 * 6 + c) * scale + dx, y0 + r as u32 * scale + dy);
                        if x < img.width() && y < img.height() {
                            img.put_pixel(x, y, colour);
                        }
                    }
                }
            }
        }
    }
}

/// 5×7 glyphs (one byte per row, high bit left) for what the banner writes.
fn glyph(ch: char) -> [u8; 7] {
    match ch {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        _ => [0; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_shows_the_verdict_colour_and_text() {
        let mut img = RgbImage::new(128, 64);
        draw_banner(&mut img, 1.5, Verdict::Ng);
        assert_eq!(img.get_pixel(127, 0), &Rgb([200, 30, 30]));
        let white = (0..11)
            .flat_map(|y| (0..60).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y) == &Rgb([255, 255, 255]))
            .count();
        assert!(white > 40, "text drawn ({white} pixels)");
        assert_eq!(img.get_pixel(0, 20), &Rgb([0, 0, 0]), "below the bar untouched");
    }
}
