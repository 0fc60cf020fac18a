//! Helpers for the source tests: videos encoded on the spot with real GStreamer, a running
//! source with its edge and status, and waits with deadlines that say what did not happen.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use inspectd::config::types::SourceConfig;
use inspectd::flow::edge::{edge, EdgeReceiver};
use inspectd::flow::frame::Frame;
use inspectd::source::{spawn, SourceSettings, SourceState, SourceStatus, DEFAULT_STALL_TIMEOUT};
use inspectd::telemetry::Telemetry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A fresh directory for one test's files.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inspectd-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Encodes `frames` frames of a videotestsrc `pattern` as MJPEG in AVI or Matroska, after the
/// path's extension (jpegenc, avimux and matroskamux are in gst-plugins-good, so no optional
/// encoder is needed).
pub fn encode_video(path: &Path, pattern: &str, frames: u32, width: u32, height: u32, fps: u32) {
    gst::init().expect("GStreamer");
    let mux = match path.extension().and_then(|e| e.to_str()) {
        Some("mkv") => "matroskamux",
        _ => "avimux",
    };
    let launch = format!(
        "videotestsrc pattern={pattern} num-buffers={frames} \
         ! video/x-raw,width={width},height={height},framerate={fps}/1 \
         ! jpegenc ! {mux} ! filesink name=out"
    );
    let pipeline =
        gst::parse::launch(&launch).expect("encoder pipeline").downcast::<gst::Pipeline>().unwrap();
    pipeline.by_name("out").unwrap().set_property("location", path.to_str().unwrap());
    pipeline.set_state(gst::State::Playing).expect("encoder plays");
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("encoder finishes");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(matches!(message.view(), gst::MessageView::Eos(_)), "encoding failed: {message:?}");
}

/// A source spawned with an edge of the policy its settings call for.
pub struct Running {
    pub frames: EdgeReceiver<Frame>,
    pub status: watch::Receiver<SourceStatus>,
    pub shutdown: CancellationToken,
    /// What the source counts: frames captured, frames its edge dropped.
    pub telemetry: Arc<Telemetry>,
    pub thread: Option<JoinHandle<()>>,
}

pub fn start(camera: &str, source: SourceConfig, size: (u32, u32), capacity: usize) -> Running {
    start_with_roi(camera, source, None, size, capacity)
}

pub fn start_with_roi(
    camera: &str,
    source: SourceConfig,
    roi: Option<inspectd::config::types::Roi>,
    size: (u32, u32),
    capacity: usize,
) -> Running {
    let settings = SourceSettings {
        camera: Arc::from(camera),
        source,
        roi,
        width: size.0,
        height: size.1,
        stall_timeout: DEFAULT_STALL_TIMEOUT,
        trigger: None,
    };
    start_settings(settings, capacity)
}

pub fn start_settings(settings: SourceSettings, capacity: usize) -> Running {
    let (tx, frames) = edge(capacity, settings.overflow());
    let (status_tx, status) = watch::channel(SourceStatus::starting());
    let shutdown = CancellationToken::new();
    let telemetry = Arc::new(Telemetry::default());
    let thread = spawn(settings, tx, status_tx, shutdown.clone(), telemetry.clone()).expect("spawn source");
    Running { frames, status, shutdown, telemetry, thread: Some(thread) }
}

impl Running {
    /// Waits until the status satisfies `want`; panics with the last status seen otherwise.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        want: impl Fn(&SourceStatus) -> bool,
    ) -> SourceStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.status.borrow().clone();
            if want(&now) {
                return now;
            }
            assert!(Instant::now() < deadline, "no {what} within {timeout:?}; last status: {now:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_state(&self, state: SourceState, timeout: Duration) -> SourceStatus {
        self.wait_status(&format!("{state:?}"), timeout, |s| s.state == state)
    }

    /// The next `n` frames, waiting at most `timeout` for each.
    pub fn take(&self, n: usize, timeout: Duration) -> Vec<Frame> {
        (0..n)
            .map(|i| match self.frames.recv_timeout(timeout) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    panic!("frame {i} of {n} did not arrive within {timeout:?}; {:?}", self.status.borrow())
                }
                Err(()) => panic!("the edge closed after {i} of {n} frames; {:?}", self.status.borrow()),
            })
            .collect()
    }

    /// Every frame until the source closes the edge.
    pub fn drain(&self, timeout: Duration) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            match self.frames.recv_timeout(timeout) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => panic!("no frame and no end within {timeout:?} after {} frames", frames.len()),
                Err(()) => return frames,
            }
        }
    }

    /// Cancels and waits for the thread, which must finish within `timeout`.
    pub fn stop(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        self.join(timeout);
        started.elapsed()
    }

    /// Waits for the thread to finish on its own.
    pub fn join(&mut self, timeout: Duration) {
        let thread = self.thread.take().expect("joined once");
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "the source thread did not finish within {timeout:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        thread.join().expect("the source thread did not panic");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Mean colour of a frame region, as (r, g, b).
pub fn mean_rgb(frame: &Frame, x0: u32, y0: u32, x1: u32, y1: u32) -> (f64, f64, f64) {
    let mut sum = [0f64; 3];
    for y in y0..y1 {
        for x in x0..x1 {
            let i = ((y * frame.width + x) * 3) as usize;
            for (total, value) in sum.iter_mut().zip(&frame.rgb[i..i + 3]) {
                *total += f64::from(*value);
            }
        }
    }
    let n = f64::from((x1 - x0) * (y1 - y0));
    (sum[0] / n, sum[1] / n, sum[2] / n)
}
