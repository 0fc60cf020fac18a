//! `--annotate OUT.mkv`: the recording with the heatmap overlay, a verdict bar and the score
//! burned in, encoded through GStreamer (MJPEG in Matroska or AVI, which every install has).

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use image::{Rgb, RgbImage};
use ndarray::ArrayView2;

use crate::heatmap::overlay;
use crate::pipeline::frame::Verdict;

/// An encoder fed frame by frame.
pub struct Annotator {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    path: PathBuf,
    fps: u32,
    pushed: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot write annotated video {path}: {reason}")]
pub struct AnnotateError {
    pub path: PathBuf,
    pub reason: String,
}

impl Annotator {
    /// Opens `path` for `width × height` frames at `fps`.
    pub fn create(path: &Path, width: u32, height: u32, fps: u32) -> Result<Annotator, AnnotateError> {
        let fail = |reason: String| AnnotateError { path: path.to_path_buf(), reason };
        gst::init().map_err(|e| fail(e.to_string()))?;
        let mux = if path.extension().is_some_and(|e| e == "avi") { "avimux" } else { "matroskamux" };
        let launch =
            format!("appsrc name=src format=time ! videoconvert ! jpegenc ! {mux} ! filesink name=sink");
        let pipeline = gst::parse::launch(&launch)
            .map_err(|e| fail(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| fail("not a pipeline".into()))?;
        pipeline
            .by_name("sink")
            .ok_or_else(|| fail("no sink".into()))?
            .set_property("location", path.to_string_lossy().as_ref());
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| fail("no appsrc".into()))?;
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("framerate", gst::Fraction::new(fps.max(1) as i32, 1))
            .build();
        src.set_caps(Some(&caps));
        src.set_property("block", true);
        pipeline.set_state(gst::State::Playing).map_err(|e| fail(e.to_string()))?;
        Ok(Annotator { pipeline, src, path: path.to_path_buf(), fps: fps.max(1), pushed: 0 })
    }

    /// Adds one frame: heatmap overlay (coloured up to twice the threshold), a bar green for OK
    /// and red for NG, and the score.
    pub fn push(
        &mut self,
        frame: &RgbImage,
        map: ArrayView2<f32>,
        score: f32,
        threshold: f32,
        verdict: Verdict,
    ) -> Result<(), AnnotateError> {
        let mut img = overlay(frame, map, 2.0 * threshold, 0.4);
        draw_banner(&mut img, score, verdict);
        let step = 1_000_000_000 / self.fps as u64;
        let mut buffer = gst::Buffer::from_mut_slice(img.into_raw());
        let b = buffer.get_mut().expect("new buffer is writable");
        b.set_pts(gst::ClockTime::from_nseconds(self.pushed * step));
        b.set_duration(gst::ClockTime::from_nseconds(step));
        self.pushed += 1;
        self.src
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| AnnotateError { path: self.path.clone(), reason: format!("{e:?}") })
    }

    /// Ends the stream and waits for the file to be complete.
    pub fn finish(self) -> Result<(), AnnotateError> {
        let fail = |reason: String| AnnotateError { path: self.path.clone(), reason };
        self.src.end_of_stream().map_err(|e| fail(format!("{e:?}")))?;
        let bus = self.pipeline.bus().ok_or_else(|| fail("no bus".into()))?;
        let mut result = Err(fail("timed out finishing the file".into()));
        for msg in bus.iter_timed(gst::ClockTime::from_seconds(60)) {
            match msg.view() {
                gst::MessageView::Eos(..) => {
                    result = Ok(());
                    break;
                }
                gst::MessageView::Error(e) => {
                    result = Err(fail(e.error().to_string()));
                    break;
                }
                _ => {}
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }
}

/// A bar across the top: the verdict colour, then "OK"/"NG" and the score in a 5×7 font.
fn draw_banner(img: &mut RgbImage, score: f32, verdict: Verdict) {
    let colour = if verdict == Verdict::Ng { Rgb([200, 30, 30]) } else { Rgb([30, 150, 60]) };
    let scale = (img.width() / 128).max(1);
    let bar = 11 * scale;
    for y in 0..bar.min(img.height()) {
        for x in 0..img.width() {
            img.put_pixel(x, y, colour);
        }
    }
    let text = format!("{} {score:.3}", if verdict == Verdict::Ng { "NG" } else { "OK" });
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
