//! The daemon's configuration, as typed structs (design.md §4). Every struct denies unknown
//! keys, so a typo is an error rather than a silently ignored setting. Defaults are `const fn`s
//! so the documented example and the code cannot drift apart.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub evidence: EvidenceConfig,
    #[serde(default)]
    pub http: HttpConfig,
    /// Model bundles by name; cameras refer to them.
    pub models: BTreeMap<String, ModelConfig>,
    /// Cameras by id (the id is an MQTT topic segment).
    pub cameras: BTreeMap<String, CameraConfig>,
    /// Triggered cameras that inspect one part together: one trigger fires all of them, and
    /// one part verdict combines theirs. A triggered camera in no station is its own.
    #[serde(default)]
    pub stations: BTreeMap<String, StationConfig>,
    /// The optional Sparkplug B edge node (`crate::sparkplug`).
    #[serde(default)]
    pub sparkplug: Option<SparkplugConfig>,
}

/// The `[sparkplug]` table. Its presence turns the edge node on, unless `enabled = false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparkplugConfig {
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The Sparkplug group, the second topic level; hosts group edge nodes by it.
    pub group_id: String,
    /// The edge node id, the fourth topic level; defaults to `node.id`.
    #[serde(default)]
    pub edge_node_id: Option<String>,
}

const fn enabled_by_default() -> bool {
    true
}

/// `[stations.ID]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationConfig {
    /// Camera ids, each with `mode = "triggered"` and in no other station.
    pub cameras: Vec<String>,
    /// Seconds from a trigger to the part result; after it the part is `timeout`. Defaults
    /// to the longest `trigger.timeout_s` of its cameras.
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

/// This inspection station.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node id, the second MQTT topic segment.
    pub id: String,
    /// Outbox and evidence live here (systemd's StateDirectory).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Seconds to drain frames in flight and flush MQTT on SIGTERM before giving up.
    #[serde(default = "default_shutdown_deadline")]
    pub shutdown_deadline_s: f64,
    /// Seconds after which READY=1 is sent even if a camera or MQTT is not up yet.
    #[serde(default = "default_readiness_timeout")]
    pub readiness_timeout_s: f64,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/inspectd")
}
const fn default_shutdown_deadline() -> f64 {
    10.0
}
const fn default_readiness_timeout() -> f64 {
    60.0
}

/// ONNX Runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// libonnxruntime.so; searched for when absent.
    #[serde(default)]
    pub library: Option<PathBuf>,
    /// Execution providers in order: tensorrt, cuda, cpu.
    #[serde(default = "default_providers")]
    pub providers: Vec<String>,
    /// Providers that must work (no CPU fallback).
    #[serde(default)]
    pub required_providers: Vec<String>,
    /// Intra-op threads of the shared pool (0: one per core).
    #[serde(default)]
    pub threads: usize,
}

fn default_providers() -> Vec<String> {
    vec!["cpu".to_string()]
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            library: None,
            providers: default_providers(),
            required_providers: Vec::new(),
            threads: 0,
        }
    }
}

/// The MQTT broker and what is published (design.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    #[serde(default = "default_mqtt_host")]
    pub host: String,
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Defaults to `inspectd-{node id}`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// First topic segment.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (never logged). `INSPECTD__MQTT__PASSWORD` also works.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub results: ResultPolicy,
    /// Seconds between periodic camera status messages.
    #[serde(default = "default_status_interval")]
    pub status_interval_s: f64,
    /// Most alarms kept in the on-disk outbox while the broker is unreachable.
    #[serde(default = "default_outbox_max")]
    pub outbox_max_alarms: usize,
}

fn default_mqtt_host() -> String {
    "127.0.0.1".to_string()
}
const fn default_mqtt_port() -> u16 {
    1883
}
fn default_prefix() -> String {
    "inspectd".to_string()
}
const fn default_keep_alive() -> u64 {
    15
}
const fn default_status_interval() -> f64 {
    10.0
}
const fn default_outbox_max() -> usize {
    10_000
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: default_mqtt_host(),
            port: default_mqtt_port(),
            client_id: None,
            prefix: default_prefix(),
            keep_alive_s: default_keep_alive(),
            username: None,
            password_file: None,
            password: None,
            tls: None,
            results: ResultPolicy::default(),
            status_interval_s: default_status_interval(),
            outbox_max_alarms: default_outbox_max(),
        }
    }
}

/// TLS to the broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate (PEM) that signed the broker's certificate.
    pub ca: PathBuf,
    /// Client certificate and key (PEM) for mutual TLS.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// Which scored frames produce a `result` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultPolicy {
    #[serde(default)]
    pub mode: ResultMode,
    /// With mode = "every_n": publish every n-th frame (NG frames always).
    #[serde(default = "default_every")]
    pub every: u64,
    #[serde(default)]
    pub qos: u8,
}

const fn default_every() -> u64 {
    1
}

impl Default for ResultPolicy {
    fn default() -> Self {
        ResultPolicy { mode: ResultMode::All, every: 1, qos: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultMode {
    #[default]
    All,
    Ng,
    EveryN,
}

/// Where evidence (frames and heatmaps of alarms) goes and how much is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceConfig {
    /// Defaults to `{state_dir}/evidence`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    #[serde(default = "default_evidence_files")]
    pub max_files: usize,
    #[serde(default = "default_evidence_bytes")]
    pub max_bytes: u64,
    /// `png` or `jpeg`.
    #[serde(default = "default_evidence_format")]
    pub format: String,
}

impl EvidenceConfig {
    /// The evidence folder: `dir`, or `{state_dir}/evidence`.
    pub fn resolved_dir(&self, state_dir: &std::path::Path) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| state_dir.join("evidence"))
    }
}

const fn default_evidence_files() -> usize {
    2000
}
const fn default_evidence_bytes() -> u64 {
    2 << 30
}
fn default_evidence_format() -> String {
    "jpeg".to_string()
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            dir: None,
            max_files: default_evidence_files(),
            max_bytes: default_evidence_bytes(),
            format: default_evidence_format(),
        }
    }
}

/// Health and metrics endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `host:port`; empty disables the endpoint.
    #[serde(default = "default_http_bind")]
    pub bind: String,
    /// Serve the set-up page (`/ui/`) and its API (`/api/...`) on the same endpoint. Off by
    /// default: it shows the line's frames, scores and evidence.
    #[serde(default)]
    pub ui: bool,
    /// Changes through the page or the API (a threshold, an acknowledgement, "mark as good")
    /// need `Authorization: Bearer <token>`; without a token configured, they are read-only.
    #[serde(default)]
    pub ui_token: Option<UiToken>,
}

fn default_http_bind() -> String {
    "127.0.0.1:9898".to_string()
}

/// The set-up API's token: compared in constant time, never shown in logs or `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UiToken(pub String);

impl std::fmt::Debug for UiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UiToken(***)")
    }
}

impl UiToken {
    /// Whether `offered` is the token; takes the same time wherever the first difference is.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut diff = expected.len() ^ offered.len();
        for (i, e) in expected.iter().enumerate() {
            diff |= usize::from(e ^ offered.get(i).copied().unwrap_or(!e));
        }
        diff == 0
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { bind: default_http_bind(), ui: false, ui_token: None }
    }
}

/// A model bundle and how its frames are batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub path: PathBuf,
    /// Most frames per scoring run (across the cameras sharing this model).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Longest a frame waits for a batch to fill, in milliseconds.
    #[serde(default = "default_max_wait")]
    pub max_wait_ms: u64,
    /// Experimental, approximate: the CPU kNN searches only memory-bank centres within this
    /// many grid cells of each patch's position (README "Where the kNN runs"; measure it with
    /// `inspectd eval --knn-window` first). Unset: the exact search.
    #[serde(default)]
    pub knn_window: Option<usize>,
    /// The CPU kNN's arithmetic: `auto` (int8 candidates re-ranked in fp32 where the CPU has
    /// AVX-512 VNNI, else fp32), `int8` (an error without VNNI) or `fp32` (README, "Reduced
    /// precision").
    #[serde(default)]
    pub knn_precision: crate::cfa::knn::KnnPrecision,
}

const fn default_batch() -> usize {
    4
}
const fn default_max_wait() -> u64 {
    20
}

/// One camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Name of an entry in `[models]`.
    pub model: String,
    pub source: SourceConfig,
    /// Overrides the model's calibrated threshold (raw score).
    #[serde(default)]
    pub threshold: Option<f32>,
    /// The inspected rectangle, in sensor pixels. For a model with a stored view it moves the
    /// view's ROI (a camera that moved; the tile size stays the model's); for a model without
    /// one it is cropped before resizing to the model size.
    #[serde(default)]
    pub roi: Option<Roi>,
    /// Areas never judged (serial numbers, moving fixtures): polygons of `[x, y]` sensor
    /// pixels, applied to the anomaly map before the score and the regions, on top of the
    /// model's own ignore mask. Needs a model with a stored view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<Vec<[f32; 2]>>,
    /// Frames waiting for scoring; live sources drop the oldest when it is full.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// A live source that delivers no frame for this long (seconds) is treated as failed and
    /// rebuilt with backoff: a camera that lost power, or a network path that went silent,
    /// sends no error. Not applied to files.
    #[serde(default = "default_stall_timeout_s")]
    pub stall_timeout_s: f64,
    #[serde(default)]
    pub alarm: AlarmConfig,
    #[serde(default)]
    pub health: FrameHealthConfig,
    #[serde(default)]
    pub evidence: CameraEvidence,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `continuous` (every frame is judged) or `triggered` (one frame per trigger, one part
    /// result per trigger).
    #[serde(default)]
    pub mode: CameraMode,
    #[serde(default)]
    pub trigger: TriggerConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraMode {
    #[default]
    Continuous,
    Triggered,
}

/// `[cameras.ID.trigger]`: how a triggered camera is fired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// `software`: an MQTT trigger fires the camera (GenICam TriggerSoftware on GigE/USB3
    /// Vision; the next frame on a stream). `line`: the camera's hardware line fires it, and
    /// the MQTT trigger only announces the part id (GigE/USB3 Vision only).
    #[serde(default)]
    pub input: TriggerInput,
    /// Seconds from the trigger to the part result before it is `timeout`.
    #[serde(default = "default_trigger_timeout_s")]
    pub timeout_s: f64,
    /// GigE / USB3 Vision with `input = "line"`: the GenICam TriggerSource line (`Line1`).
    #[serde(default)]
    pub line: Option<String>,
    /// GigE / USB3 Vision: GenICam TriggerActivation (`RisingEdge`, `FallingEdge`, ...);
    /// the camera's own setting when absent.
    #[serde(default)]
    pub activation: Option<String>,
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            input: TriggerInput::default(),
            timeout_s: default_trigger_timeout_s(),
            line: None,
            activation: None,
        }
    }
}

const fn default_trigger_timeout_s() -> f64 {
    2.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerInput {
    #[default]
    Software,
    Line,
}

const fn default_queue() -> usize {
    4
}
const fn default_stall_timeout_s() -> f64 {
    5.0
}
pub(crate) const fn default_true() -> bool {
    true
}

/// A rectangle in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roi {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// Alarm debounce: raise after `k` NG in the last `n` frames, clear after `clear_after`
/// consecutive OK frames; with `latch`, stay raised until acknowledged over MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmConfig {
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default = "default_n")]
    pub n: usize,
    #[serde(default = "default_clear")]
    pub clear_after: usize,
    #[serde(default)]
    pub latch: bool,
}

const fn default_k() -> usize {
    3
}
const fn default_n() -> usize {
    5
}
const fn default_clear() -> usize {
    5
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig { k: default_k(), n: default_n(), clear_after: default_clear(), latch: false }
    }
}

/// Frame health: which frames are too broken to judge (`[cameras.X.health]`). Such a frame
/// gets verdict `invalid` with the reason, never `OK`, and `alarm` debounces a camera-health
/// alarm over them like the defect alarm over NG frames.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameHealthConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// This many byte-identical frames in a row make the stream frozen (0: never). A real
    /// sensor's noise makes two frames differ; a stuck driver or decoder repeats one.
    #[serde(default = "default_frozen_frames")]
    pub frozen_frames: usize,
    /// Luma at or below which a pixel counts as clipped dark.
    #[serde(default = "default_dark_level")]
    pub dark_level: u8,
    /// Luma at or above which a pixel counts as clipped bright.
    #[serde(default = "default_bright_level")]
    pub bright_level: u8,
    /// A frame with more than this fraction of its pixels clipped dark (or bright) is badly
    /// exposed (a covered lens, a failed light, a saturated sensor).
    #[serde(default = "default_clipped_fraction")]
    pub clipped_fraction: f32,
    /// A frame whose focus measure (variance of the Laplacian) is below this fraction of the
    /// model's calibration images' median is out of focus (0: never). Needs a bundle trained
    /// by this version, which stores that median.
    #[serde(default = "default_min_focus_ratio")]
    pub min_focus_ratio: f32,
    /// The camera-health alarm: `k` unusable frames of the last `n` raise it.
    #[serde(default)]
    pub alarm: AlarmConfig,
}

const fn default_frozen_frames() -> usize {
    30
}
const fn default_dark_level() -> u8 {
    10
}
const fn default_bright_level() -> u8 {
    245
}
const fn default_clipped_fraction() -> f32 {
    0.95
}
const fn default_min_focus_ratio() -> f32 {
    0.25
}

impl Default for FrameHealthConfig {
    fn default() -> Self {
        FrameHealthConfig {
            enabled: true,
            frozen_frames: default_frozen_frames(),
            dark_level: default_dark_level(),
            bright_level: default_bright_level(),
            clipped_fraction: default_clipped_fraction(),
            min_focus_ratio: default_min_focus_ratio(),
            alarm: AlarmConfig::default(),
        }
    }
}

/// What evidence a camera saves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraEvidence {
    /// Save frame + heatmap when an alarm is raised.
    #[serde(default = "default_true")]
    pub on_alarm: bool,
    /// Also save every NG frame, at most one per `min_interval_s`.
    #[serde(default)]
    pub every_ng: bool,
    #[serde(default = "default_min_interval")]
    pub min_interval_s: f64,
}

const fn default_min_interval() -> f64 {
    5.0
}

impl Default for CameraEvidence {
    fn default() -> Self {
        CameraEvidence { on_alarm: true, every_ng: false, min_interval_s: default_min_interval() }
    }
}

pub use super::sources::*;
