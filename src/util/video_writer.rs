//! Writing RGB frames to an MJPEG video through GStreamer (appsrc → jpegenc → Matroska or AVI):
//! demo recordings and annotated replays. MJPEG because every GStreamer install has jpegenc.

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use image::RgbImage;

/// A video being written; [`VideoWriter::finish`] completes the file.
pub struct VideoWriter {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    path: PathBuf,
    step_ns: u64,
    pushed: u64,
}

/// A video that could not be written; names the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot write video {path}: {reason}")]
pub struct VideoWriteError {
    pub path: PathBuf,
    pub reason: String,
}

impl VideoWriter {
    /// Opens `path` (`.avi` for AVI, anything else Matroska) for `width × height` at `fps`.
    pub fn create(path: &Path, width: u32, height: u32, fps: u32) -> Result<VideoWriter, VideoWriteError> {
        let fail = |reason: String| VideoWriteError { path: path.to_path_buf(), reason };
        gst::init().map_err(|e| fail(e.to_string()))?;
        let mux = if path.extension().is_some_and(|e| e == "avi") { "avimux" } else { "matroskamux" };
        let launch = format!("appsrc name=src format=time block=true ! videoconvert ! jpegenc quality=92 ! {mux} ! filesink name=sink");
        let pipeline = gst::parse::launch(&launch)
            .map_err(|e| fail(e.to_string()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| fail("not a pipeline".into()))?;
        let sink = pipeline.by_name("sink").ok_or_else(|| fail("no filesink".into()))?;
        sink.set_property("location", path.to_string_lossy().as_ref());
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| fail("no appsrc".into()))?;
        let fps = fps.max(1);
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "RGB")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("framerate", gst::Fraction::new(fps as i32, 1))
            .build();
        src.set_caps(Some(&caps));
        pipeline.set_state(gst::State::Playing).map_err(|e| fail(e.to_string()))?;
        Ok(VideoWriter {
            pipeline,
            src,
            path: path.to_path_buf(),
            step_ns: 1_000_000_000 / fps as u64,
            pushed: 0,
        })
    }

    /// Appends a frame (of the size given to `create`).
    pub fn push(&mut self, image: RgbImage) -> Result<(), VideoWriteError> {
        let mut buffer = gst::Buffer::from_mut_slice(image.into_raw());
        let b = buffer.get_mut().expect("new buffer is writable");
        b.set_pts(gst::ClockTime::from_nseconds(self.pushed * self.step_ns));
        b.set_duration(gst::ClockTime::from_nseconds(self.step_ns));
        self.pushed += 1;
        self.src.push_buffer(buffer).map(|_| ()).map_err(|e| self.error(format!("{e:?}")))
    }

    /// Ends the stream and waits until the file is complete.
    pub fn finish(self) -> Result<(), VideoWriteError> {
        let result = self.drain();
        let _ = self.pipeline.set_state(gst::State::Null);
        result
    }

    fn drain(&self) -> Result<(), VideoWriteError> {
        self.src.end_of_stream().map_err(|e| self.error(format!("{e:?}")))?;
        let bus = self.pipeline.bus().ok_or_else(|| self.error("pipeline without a bus".into()))?;
        for msg in bus.iter_timed(gst::ClockTime::from_seconds(120)) {
            match msg.view() {
                gst::MessageView::Eos(..) => return Ok(()),
                gst::MessageView::Error(e) => {
                    return Err(self.error(format!("{} ({:?})", e.error(), e.debug())))
                }
                _ => {}
            }
        }
        Err(self.error("timed out waiting for the encoder".into()))
    }

    fn error(&self, reason: String) -> VideoWriteError {
        VideoWriteError { path: self.path.clone(), reason }
    }
}
