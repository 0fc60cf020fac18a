//! Camera sources: GStreamer pipelines that turn a camera, stream or file into
//! [`Frame`](crate::flow::frame::Frame)s at the model's input size (design.md §1, §4).
//!
//! ```text
//! pipelines/<kind>.pipeline ─ template.rs (validated placeholders) ─ assemble.rs (parse, set
//!   risky strings as properties, configure appsink) ─ camera.rs (one thread per camera: pull
//!   frames, push to the edge, watch the bus, rebuild with backoff) ─► EdgeSender<Frame>
//! ```
//!
//! - Live sources (cameras, RTSP, `test`, realtime files) use an appsink with `max-buffers=2`,
//!   `drop=true` and the drop-oldest edge, so GStreamer's streaming threads never wait for
//!   scoring. Files use the blocking edge: nothing is lost, decoding simply waits.
//! - A live source that fails or ends is torn down (state Null) and rebuilt with exponential
//!   backoff and jitter; a file ends (state Stopped, edge closed) or loops.
//! - [`VideoReader`] is the blocking, offline counterpart for training and replay.

mod assemble;
mod bus;
mod camera;
mod convert;
mod error;
mod genicam;
mod reader;
mod status;
mod stream;
mod template;
mod validate;

use std::sync::Arc;
use std::time::Duration;

/// `cameras.*.stall_timeout_s` by default, and for callers without a camera config.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(5);

use crate::config::types::{Roi, SourceConfig, TriggerConfig};
use crate::flow::edge::Overflow;
use crate::flow::trigger::TriggerGate;

pub use camera::{run, spawn, thread_name};
pub use error::SourceError;
pub use reader::{sample_frames, VideoReader};
pub use status::{SourceState, SourceStatus};
pub use template::{launch_string, template};
pub use validate::{is_genicam_name, validate, PIXEL_FORMATS, TEST_PATTERNS, V4L2_FORMATS};

/// `width × height` that keeps frames at the source's own resolution: a model with a stored
/// view (ROI, tiles, letterbox) cuts frames itself, and evidence is kept at sensor resolution.
pub const NATIVE_SIZE: (u32, u32) = (0, 0);

/// Everything a camera source needs, resolved once from the config and the model bundle.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// Camera id from the config: names the pipeline and labels frames, logs and errors.
    pub camera: Arc<str>,
    pub source: SourceConfig,
    /// Crop in source pixels, applied before scaling to the model size.
    pub roi: Option<Roi>,
    /// The model's input width; frames are scaled to it so the scorer never resizes.
    /// [`NATIVE_SIZE`] keeps the source's own resolution (a model with a stored view).
    pub width: u32,
    /// The model's input height.
    pub height: u32,
    /// A live source that delivers no frame for this long is failed and rebuilt (files and
    /// non-live pipelines are never stalled: they wait for their consumer).
    pub stall_timeout: Duration,
    /// A triggered camera: only the first frame after each trigger passes its gate.
    pub trigger: Option<Triggered>,
}

/// What a triggered camera's source needs.
#[derive(Debug, Clone)]
pub struct Triggered {
    pub gate: Arc<TriggerGate>,
    /// How it is fired (GigE / USB3 Vision: the GenICam trigger settings).
    pub config: TriggerConfig,
}

impl SourceSettings {
    /// A triggered GigE / USB3 Vision camera sends frames only when fired, so silence
    /// between triggers is no fault.
    pub fn fired_by_trigger(&self) -> bool {
        self.trigger.is_some() && matches!(self.source, SourceConfig::Gige(_) | SourceConfig::Usb3vision(_))
    }

    /// The overflow policy the frame edge of this source must use: live sources drop the
    /// oldest frame when scoring falls behind, files wait so no frame is lost.
    pub fn overflow(&self) -> Overflow {
        if self.source.is_live() {
            Overflow::DropOldest
        } else {
            Overflow::Block
        }
    }

    /// Whether a failure or the end of the stream leads to a rebuild rather than the end:
    /// true for cameras and live raw pipelines, never for files (a broken file stays broken).
    pub fn reconnects(&self) -> bool {
        !matches!(self.source, SourceConfig::File(_)) && self.source.is_live()
    }

    /// Whether the end of a file starts it again.
    fn loops(&self) -> bool {
        matches!(&self.source, SourceConfig::File(f) if f.looping)
    }

    /// Whether the appsink paces frames by their timestamps (a file played in real time).
    fn paced(&self) -> bool {
        matches!(&self.source, SourceConfig::File(f) if f.realtime)
    }
}
