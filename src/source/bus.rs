//! Turns a pipeline's bus messages into the two events the sources act on: an element failed,
//! or the stream ended. Everything else (state changes, tags, latency) is not acted on.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer::MessageView;

/// An error an element posted, with the element's path so the log names the culprit.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// e.g. `/GstPipeline:cam1/GstAravis:src`.
    pub element: String,
    pub reason: String,
    /// GStreamer's debug detail (source file, internal state); for logs only.
    pub debug: Option<String>,
}

/// What the bus said.
#[derive(Debug)]
pub(crate) enum BusEvent {
    Error(Failure),
    Eos,
}

/// The next error or end-of-stream already on the bus; never waits.
pub(crate) fn poll(bus: &gst::Bus) -> Option<BusEvent> {
    std::iter::from_fn(|| bus.pop()).find_map(|message| classify(&message))
}

/// How prerolling a non-live pipeline went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Preroll {
    /// The first frame is decoded and waiting in the sink.
    Ready,
    /// The stream ended before a frame was decoded (an empty file).
    Ended,
    /// Nothing happened within the timeout.
    TimedOut,
}

/// Waits up to `timeout` for the pipeline to preroll, fail or end.
pub(crate) fn wait_prerolled(bus: &gst::Bus, timeout: gst::ClockTime) -> Result<Preroll, Failure> {
    let types = [gst::MessageType::AsyncDone, gst::MessageType::Error, gst::MessageType::Eos];
    let Some(message) = bus.timed_pop_filtered(timeout, &types) else { return Ok(Preroll::TimedOut) };
    match classify(&message) {
        Some(BusEvent::Error(failure)) => Err(failure),
        Some(BusEvent::Eos) => Ok(Preroll::Ended),
        None => Ok(Preroll::Ready),
    }
}

fn classify(message: &gst::Message) -> Option<BusEvent> {
    match message.view() {
        MessageView::Error(err) => Some(BusEvent::Error(Failure {
            element: element_path(message),
            reason: err.error().to_string(),
            debug: err.debug().map(|d| d.to_string()),
        })),
        MessageView::Eos(_) => Some(BusEvent::Eos),
        MessageView::Warning(warning) => {
            let element = element_path(message);
            tracing::debug!(%element, reason = %warning.error(), "GStreamer warning.");
            None
        }
        _ => None,
    }
}

fn element_path(message: &gst::Message) -> String {
    message.src().map(|src| src.path_string().to_string()).unwrap_or_else(|| "pipeline".to_string())
}
