//! One pipeline's life inside a camera source: build it, play it, hand its frames to the edge
//! and watch its bus until it fails, ends, or we are told to stop.
//!
//! Frames are pulled from the appsink on the camera's own thread, not in an appsink callback,
//! so the frame copy and the edge push (which waits when a file feeds a full blocking edge)
//! never run on a GStreamer streaming thread.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;

use crate::config::types::TriggerInput;
use crate::flow::edge::{EdgeSender, Pushed};
use crate::flow::frame::Frame;
use crate::telemetry::{QueueWatch, Telemetry};

use super::assemble::{assemble, Assembled};
use super::bus::{self, BusEvent, Failure};
use super::convert::to_frame;
use super::error::SourceError;
use super::genicam;
use super::status::{SourceState, StatusReporter};
use super::SourceSettings;

/// How long one pull waits for a frame before the bus and the shutdown token are checked again;
/// this bounds how late a shutdown is noticed.
const PULL_WAIT: gst::ClockTime = gst::ClockTime::from_mseconds(50);
/// How long a software-triggered camera's loop waits for a frame before it looks for trigger
/// requests again.
const FIRE_POLL: gst::ClockTime = gst::ClockTime::from_mseconds(2);

/// The least time a fresh live pipeline gets to deliver its first frame (connecting to an RTSP
/// server or a GigE camera takes seconds), whatever the stall timeout.
const FIRST_FRAME_GRACE: Duration = Duration::from_secs(15);

/// How one pipeline's life ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Shutdown was requested.
    Cancelled,
    /// The consumer of the frame edge has gone.
    Closed,
    /// A file (or non-live raw pipeline) reached its end and does not loop.
    Ended,
    /// The pipeline failed; for live sources the end of the stream is a failure too.
    Failed(SourceError),
}

/// A camera's state that outlives any one pipeline: the frame counter keeps counting across
/// reconnects so consumers see gaps, and the status keeps its frame total.
pub(crate) struct Feed {
    pub settings: SourceSettings,
    pub frames: EdgeSender<Frame>,
    pub status: StatusReporter,
    pub shutdown: CancellationToken,
    telemetry: Arc<Telemetry>,
    /// `frames_captured` of this camera.
    captured: Counter,
    queue: QueueWatch,
    /// Sequence number of the next frame.
    seq: u64,
    /// When the current pipeline delivered its first frame; backoff resets after a long run.
    streaming_since: Option<Instant>,
    /// Frames the current pipeline delivered; a looping file without any is not restarted.
    pub delivered: u64,
    /// A line-triggered frame without an announced part was reported (once per episode).
    unannounced: bool,
}

impl Feed {
    pub(crate) fn new(
        settings: SourceSettings,
        frames: EdgeSender<Frame>,
        status: StatusReporter,
        shutdown: CancellationToken,
        telemetry: Arc<Telemetry>,
    ) -> Feed {
        let captured = telemetry.frames_captured(&settings.camera);
        Feed {
            settings,
            frames,
            status,
            shutdown,
            telemetry,
            captured,
            queue: QueueWatch::default(),
            seq: 0,
            streaming_since: None,
            delivered: 0,
            unannounced: false,
        }
    }

    /// Builds and runs one pipeline to its end.
    ///
    /// The pipeline comes back still built so the caller can publish the outcome first: the
    /// teardown (dropping it sets it to Null) of a GigE camera that vanished takes seconds,
    /// because aravis waits for the camera to acknowledge the end of acquisition.
    pub(crate) fn run_pipeline(&mut self) -> (Outcome, Option<Assembled>) {
        self.streaming_since = None;
        self.delivered = 0;
        let assembled = match assemble(&self.settings) {
            Ok(assembled) => assembled,
            Err(e) => return (Outcome::Failed(e), None),
        };
        if assembled.pipeline.set_state(gst::State::Playing).is_err() {
            let error = match bus::poll(&assembled.bus) {
                Some(BusEvent::Error(failure)) => self.element_error(failure),
                _ => SourceError::StateChange { camera: self.camera(), state: "PLAYING" },
            };
            return (Outcome::Failed(error), Some(assembled));
        }
        let fires = self.install_fire(&assembled);
        let outcome = self.pump(&assembled, fires.as_ref());
        if let Some(t) = &self.settings.trigger {
            t.gate.set_fire(None);
        }
        (outcome, Some(assembled))
    }

    /// A software-triggered GigE / USB3 Vision camera is fired from this thread, which owns
    /// the aravis camera (it may not cross threads): arming the gate only queues a request.
    fn install_fire(&self, assembled: &Assembled) -> Option<Receiver<()>> {
        let trigger = self.settings.trigger.as_ref()?;
        if trigger.config.input != TriggerInput::Software {
            return None;
        }
        assembled.camera.as_ref()?;
        let (tx, rx) = std::sync::mpsc::channel();
        trigger
            .gate
            .set_fire(Some(Box::new(move || tx.send(()).map_err(|_| "the source has stopped".to_string()))));
        Some(rx)
    }

    /// Executes the triggers requested since the last look.
    fn fire_requested(&self, assembled: &Assembled, fires: Option<&Receiver<()>>) {
        let (Some(fires), Some(camera)) = (fires, &assembled.camera) else { return };
        while fires.try_recv().is_ok() {
            if let Err(e) = genicam::fire(camera) {
                tracing::error!(camera = %self.settings.camera, "TriggerSoftware failed: {e}");
            }
        }
    }

    fn pump(&mut self, assembled: &Assembled, fires: Option<&Receiver<()>>) -> Outcome {
        let mut last_frame = Instant::now();
        // A fired camera is polled often, so a trigger waits at most a few ms to be executed.
        let wait = if fires.is_some() { FIRE_POLL } else { PULL_WAIT };
        loop {
            if self.shutdown.is_cancelled() {
                return Outcome::Cancelled;
            }
            self.fire_requested(assembled, fires);
            if let Some(after) = self.silent_for(last_frame) {
                return Outcome::Failed(SourceError::Silent { camera: self.camera(), after });
            }
            match bus::poll(&assembled.bus) {
                Some(BusEvent::Error(failure)) => return Outcome::Failed(self.element_error(failure)),
                Some(BusEvent::Eos) => match self.at_end(assembled) {
                    Some(outcome) => return outcome,
                    None => continue,
                },
                None => {}
            }
            match assembled.appsink.try_pull_sample(wait) {
                Some(sample) => {
                    if let Err(outcome) = self.deliver(&sample) {
                        return outcome;
                    }
                    last_frame = Instant::now();
                }
                None => self.status.refresh(Instant::now()),
            }
        }
    }

    /// How long a live source has been silent, once that is longer than it may be.
    fn silent_for(&self, last_frame: Instant) -> Option<Duration> {
        if !self.settings.reconnects() || self.settings.fired_by_trigger() {
            return None;
        }
        let allowed = match self.delivered {
            0 => self.settings.stall_timeout.max(FIRST_FRAME_GRACE),
            _ => self.settings.stall_timeout,
        };
        Some(last_frame.elapsed()).filter(|silent| *silent >= allowed)
    }

    /// End of stream: hands over what the appsink still holds, then loops a file (`None`: keep
    /// pumping), ends it, or reports a live stream's end as a failure to reconnect from.
    fn at_end(&mut self, assembled: &Assembled) -> Option<Outcome> {
        while let Some(sample) = assembled.appsink.try_pull_sample(gst::ClockTime::ZERO) {
            if let Err(outcome) = self.deliver(&sample) {
                return Some(outcome);
            }
        }
        if self.settings.reconnects() {
            return Some(Outcome::Failed(SourceError::Ended { camera: self.camera() }));
        }
        if !self.settings.loops() || self.delivered == 0 {
            return Some(Outcome::Ended);
        }
        let flags = gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT;
        match assembled.pipeline.seek_simple(flags, gst::ClockTime::ZERO) {
            Ok(()) => None,
            // Some demuxers cannot seek; the supervisor rebuilds the pipeline instead.
            Err(_) => Some(Outcome::Ended),
        }
    }

    /// Converts a sample and pushes it to the edge; a triggered camera's frame only when
    /// its gate lets it through. `Err` ends the pipeline's run.
    fn deliver(&mut self, sample: &gst::Sample) -> Result<(), Outcome> {
        let seq = self.seq;
        self.seq += 1;
        let part = match &self.settings.trigger {
            Some(t) => match t.gate.take(SystemTime::now()) {
                Some(part) => {
                    self.unannounced = false;
                    Some(part)
                }
                None => {
                    if t.config.input == TriggerInput::Line && !std::mem::replace(&mut self.unannounced, true)
                    {
                        // The line fired but no MQTT trigger announced the part: there is no
                        // part id to answer with, so the frame is not judged. Logged once
                        // until an announced frame comes.
                        tracing::warn!(
                            camera = %self.settings.camera,
                            "A frame from the trigger line came without an announced part \
                             ({{station}}/trigger); not judged."
                        );
                    }
                    self.delivered_one(SystemTime::now());
                    return Ok(());
                }
            },
            None => None,
        };
        let mut frame = to_frame(sample, &self.settings.camera, seq).map_err(|reason| {
            Outcome::Failed(SourceError::Element {
                camera: self.camera(),
                element: format!("/GstPipeline:{}/GstAppSink:sink", self.settings.camera),
                reason,
                debug: None,
            })
        })?;
        frame.part = part;
        let captured_at = frame.captured_at;
        let pushed = self.frames.push(frame);
        if pushed == Pushed::Closed {
            return Err(Outcome::Closed);
        }
        self.queue.pushed(&self.settings.camera, &pushed, &self.telemetry);
        self.delivered_one(captured_at);
        Ok(())
    }

    /// Counts a frame the source delivered (scored or stopped at the trigger gate).
    fn delivered_one(&mut self, captured_at: SystemTime) {
        self.captured.inc();
        self.delivered += 1;
        self.status.frame(captured_at);
        if self.status.state() != SourceState::Streaming {
            self.streaming_since = Some(Instant::now());
            self.status.set(SourceState::Streaming, None);
            tracing::info!(camera = %self.settings.camera, "Source streaming.");
        }
    }

    /// How long the current pipeline has been delivering frames.
    pub(crate) fn streamed_for(&self) -> Duration {
        self.streaming_since.map(|since| since.elapsed()).unwrap_or_default()
    }

    fn element_error(&self, failure: Failure) -> SourceError {
        SourceError::Element {
            camera: self.camera(),
            element: failure.element,
            reason: failure.reason,
            debug: failure.debug,
        }
    }

    fn camera(&self) -> String {
        self.settings.camera.to_string()
    }
}
