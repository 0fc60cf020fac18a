//! Camera sources as written in `[cameras.ID.source]`: one typed table per kind, each
//! denying unknown keys, rendered into the templates in `pipelines/` (`crate::source`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::types::default_true;

/// A camera source: one template per kind in `pipelines/`, with typed parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// GigE Vision through aravis.
    Gige(AravisSource),
    /// USB3 Vision through aravis.
    Usb3vision(AravisSource),
    Rtsp(RtspSource),
    V4l2(V4l2Source),
    File(FileSource),
    Test(TestSource),
    /// A raw launch string for experts; it must end in `appsink name=sink`.
    Pipeline(RawPipeline),
}

impl SourceConfig {
    /// Live sources drop the oldest frame when scoring falls behind; files block.
    pub fn is_live(&self) -> bool {
        match self {
            SourceConfig::File(f) => f.realtime,
            SourceConfig::Pipeline(p) => p.live,
            _ => true,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Gige(_) => "gige",
            SourceConfig::Usb3vision(_) => "usb3vision",
            SourceConfig::Rtsp(_) => "rtsp",
            SourceConfig::V4l2(_) => "v4l2",
            SourceConfig::File(_) => "file",
            SourceConfig::Test(_) => "test",
            SourceConfig::Pipeline(_) => "pipeline",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AravisSource {
    /// Camera name as aravis lists it (e.g. `Aravis-Fake-GV01`); first camera when absent.
    #[serde(default)]
    pub camera: Option<String>,
    /// Sensor pixel format: `mono8`, `rgb8`, `bayer_bggr8`, `bayer_rggb8`, `bayer_grbg8`, `bayer_gbrg8`.
    #[serde(default = "default_pixel_format")]
    pub pixel_format: String,
    #[serde(default)]
    pub exposure_us: Option<f64>,
    #[serde(default)]
    pub gain_db: Option<f64>,
    #[serde(default)]
    pub fps: Option<f64>,
    /// GigE only: stream packet size in bytes (GenICam `GevSCPSPacketSize`).
    #[serde(default)]
    pub packet_size: Option<i64>,
    /// GigE only: delay between stream packets in ticks (GenICam `GevSCPD`).
    #[serde(default)]
    pub packet_delay: Option<i64>,
    /// Any other GenICam feature, `Name = value` (a number, true/false, or an enumeration
    /// entry's name), set before acquisition starts and checked against what the camera
    /// reports (unknown feature, out of range, not an entry: an error naming the range).
    #[serde(default)]
    pub features: BTreeMap<String, FeatureValue>,
}

impl Default for AravisSource {
    fn default() -> Self {
        AravisSource {
            camera: None,
            pixel_format: default_pixel_format(),
            exposure_us: None,
            gain_db: None,
            fps: None,
            packet_size: None,
            packet_delay: None,
            features: BTreeMap::new(),
        }
    }
}

/// A GenICam feature value as written in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FeatureValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for FeatureValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeatureValue::Bool(b) => write!(f, "{b}"),
            FeatureValue::Int(i) => write!(f, "{i}"),
            FeatureValue::Float(x) => write!(f, "{x}"),
            FeatureValue::Text(t) => write!(f, "{t:?}"),
        }
    }
}

fn default_pixel_format() -> String {
    "bayer_bggr8".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtspSource {
    /// `rtsp://host[:port]/path`, without credentials.
    pub url: String,
    /// `tcp` or `udp`.
    #[serde(default = "default_transport")]
    pub transport: String,
    #[serde(default = "default_latency")]
    pub latency_ms: u32,
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (never logged).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn default_transport() -> String {
    "tcp".to_string()
}
const fn default_latency() -> u32 {
    200
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct V4l2Source {
    pub device: PathBuf,
    /// Raw format or `mjpeg`; negotiated when absent.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub fps: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    pub path: PathBuf,
    /// Start again at the end instead of stopping.
    #[serde(default, rename = "loop")]
    pub looping: bool,
    /// Play at the file's frame rate with the live drop policy instead of as fast as scoring allows.
    #[serde(default)]
    pub realtime: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSource {
    /// A videotestsrc pattern name: smpte, snow, ball, checkers-1, ... (see gst-inspect-1.0 videotestsrc).
    #[serde(default = "default_pattern")]
    pub pattern: String,
    #[serde(default = "default_test_fps")]
    pub fps: u32,
    #[serde(default = "default_test_size")]
    pub width: u32,
    #[serde(default = "default_test_size")]
    pub height: u32,
}

fn default_pattern() -> String {
    "smpte".to_string()
}
const fn default_test_fps() -> u32 {
    10
}
const fn default_test_size() -> u32 {
    320
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// gst-launch syntax; must contain `appsink name=sink`.
    pub launch: String,
    /// Whether it is live (drop-oldest) or a file-like source (block).
    #[serde(default = "default_true")]
    pub live: bool,
}
