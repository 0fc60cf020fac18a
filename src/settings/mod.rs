//! The one place where the parsed configuration becomes typed, ready-to-use settings
//! (ripgrep's low-level args → high-level args): durations are [`Duration`]s, counts are
//! non-zero, providers are enums with the required ones in the try-list, and the MQTT client
//! options are built. `run`, `check-config`, reload and replay all go through
//! [`Settings::load`], so a value that passes `check-config` cannot fail or panic later, and
//! every problem is reported at once with its key and the file.

use crate::cfa::knn::KnnPrecision;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::types::CameraMode;
use crate::config::{self, CameraConfig, Config, ConfigError, Parsed, Problem};
use crate::model::runtime::{Provider, RuntimeSettings};
use crate::publish::MqttSettings;
use crate::sparkplug::SparkplugSettings;

pub mod validate;

/// The daemon's settings, converted once from a valid [`Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file as parsed; reload compares it with the next one.
    pub config: Config,
    pub node: NodeSettings,
    pub runtime: RuntimeSettings,
    pub mqtt: MqttSettings,
    /// Seconds between periodic camera status messages.
    pub status_interval: Duration,
    pub models: BTreeMap<String, ModelSettings>,
    /// Enabled cameras only.
    pub cameras: BTreeMap<String, CameraSettings>,
    /// Every station: the configured ones, plus one per triggered camera in none (named
    /// after the camera).
    pub stations: BTreeMap<String, StationSettings>,
    /// The Sparkplug B edge node, when `[sparkplug]` is there and enabled.
    pub sparkplug: Option<SparkplugSettings>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StationSettings {
    pub cameras: Vec<String>,
    /// From the trigger to the part result; then the part is `timeout`.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    pub id: String,
    pub state_dir: PathBuf,
    pub shutdown_deadline: Duration,
    pub readiness_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    pub path: PathBuf,
    pub max_batch: NonZeroUsize,
    pub max_wait: Duration,
    /// `models.*.knn_window`, checked to be in 1..=64.
    pub knn_window: Option<usize>,
    /// `models.*.knn_precision`.
    pub knn_precision: KnnPrecision,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CameraSettings {
    /// The camera's table as written (source, model, alarm, ...).
    pub config: CameraConfig,
    pub queue: NonZeroUsize,
    /// How long a live source may deliver nothing before it is rebuilt.
    pub stall_timeout: Duration,
    /// Shortest time between two evidence saves of NG frames.
    pub evidence_interval: Duration,
    /// `trigger.timeout_s` of a triggered camera.
    pub trigger_timeout: Duration,
}

/// Longest duration any setting may have: far beyond any sensible value, and small enough
/// that adding it to `Instant::now()` cannot overflow.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

impl Settings {
    /// Reads, overlays and converts `file`: every problem, with its key, or the settings.
    pub fn load(file: &Path) -> Result<Settings, ConfigError> {
        Settings::from_parsed(config::parse(file)?, file)
    }

    /// Parses TOML text with the same rules (no environment overlay); for tests and tools.
    pub fn from_toml(text: &str, file: &Path) -> Result<Settings, ConfigError> {
        Settings::from_parsed(config::parse_toml(text, file)?, file)
    }

    /// Converts a parsed config; `file` names it in the error.
    pub fn from_config(config: Config, file: &Path) -> Result<Settings, ConfigError> {
        Settings::from_parsed(Parsed { config, problems: Vec::new() }, file)
    }

    fn from_parsed(parsed: Parsed, file: &Path) -> Result<Settings, ConfigError> {
        let Parsed { config, problems } = parsed;
        let mut p = Problems::default();
        for problem in problems {
            p.push(problem.key, problem.message);
        }
        let c = &config;
        let node = NodeSettings {
            id: c.node.id.clone(),
            state_dir: c.node.state_dir.clone(),
            shutdown_deadline: p.seconds("node.shutdown_deadline_s", c.node.shutdown_deadline_s, 0.1),
            readiness_timeout: p.seconds("node.readiness_timeout_s", c.node.readiness_timeout_s, 0.0),
        };
        let status_interval = p.seconds("mqtt.status_interval_s", c.mqtt.status_interval_s, 0.5);
        let mqtt = MqttSettings::new(&c.mqtt, &c.node)
            .map_err(|errors| {
                for e in errors {
                    let key = e.config_key().unwrap_or_else(|| "mqtt".into());
                    let shown = e.to_string();
                    let message = shown.strip_prefix(&format!("{key}: ")).unwrap_or(&shown).to_string();
                    p.push(key, message);
                }
            })
            .ok();
        let sparkplug = sparkplug(c, mqtt.as_ref(), &mut p);
        let models = c
            .models
            .iter()
            .map(|(name, m)| {
                let key = format!("models.{name}");
                let settings = ModelSettings {
                    path: m.path.clone(),
                    max_batch: p.count(&format!("{key}.batch"), m.batch, 64),
                    max_wait: Duration::from_millis(m.max_wait_ms.min(60_000)),
                    knn_window: m.knn_window.filter(|r| (1..=64).contains(r)),
                    knn_precision: m.knn_precision,
                };
                if let Some(r) = m.knn_window.filter(|r| !(1..=64).contains(r)) {
                    p.push(format!("{key}.knn_window"), format!("{r} is not in 1..=64 grid cells"));
                }
                if m.max_wait_ms > 60_000 {
                    p.push(format!("{key}.max_wait_ms"), "must be at most 60000 (one minute)");
                }
                (name.clone(), settings)
            })
            .collect();
        let cameras = c
            .cameras
            .iter()
            .filter(|(_, cam)| cam.enabled)
            .map(|(id, cam)| {
                let key = format!("cameras.{id}");
                let settings = CameraSettings {
                    config: cam.clone(),
                    queue: p.count(&format!("{key}.queue"), cam.queue, 1024),
                    stall_timeout: p.seconds(&format!("{key}.stall_timeout_s"), cam.stall_timeout_s, 0.5),
                    evidence_interval: p.seconds(
                        &format!("{key}.evidence.min_interval_s"),
                        cam.evidence.min_interval_s,
                        0.0,
                    ),
                    trigger_timeout: p.seconds(
                        &format!("{key}.trigger.timeout_s"),
                        cam.trigger.timeout_s,
                        0.01,
                    ),
                };
                if cam.threshold.is_some_and(|t| !t.is_finite()) {
                    p.push(format!("{key}.threshold"), "must be a finite number");
                }
                (id.clone(), settings)
            })
            .collect();
        let stations = stations(c, &cameras, &mut p);
        for problem in validate::validate(c) {
            p.push(problem.key, problem.message);
        }
        match mqtt {
            Some(mqtt) if p.0.is_empty() => Ok(Settings {
                runtime: runtime_settings(c),
                config,
                node,
                mqtt,
                status_interval,
                models,
                cameras,
                stations,
                sparkplug,
            }),
            _ => Err(ConfigError { file: file.to_path_buf(), problems: p.0 }),
        }
    }
}

/// `[sparkplug]`, converted when present and enabled (it reuses `[mqtt]`'s connection).
fn sparkplug(c: &Config, mqtt: Option<&MqttSettings>, p: &mut Problems) -> Option<SparkplugSettings> {
    let cfg = c.sparkplug.as_ref().filter(|s| s.enabled)?;
    match SparkplugSettings::new(cfg, &c.node.id, mqtt?) {
        Ok(settings) => Some(settings),
        Err(errors) => {
            for e in errors {
                let key = e.config_key();
                let shown = e.to_string();
                p.push(key.clone(), shown.strip_prefix(&format!("{key}: ")).unwrap_or(&shown).to_string());
            }
            None
        }
    }
}

/// The configured stations and one per triggered camera outside them. Membership is checked
/// in `validate`.
fn stations(
    c: &Config,
    cameras: &BTreeMap<String, CameraSettings>,
    p: &mut Problems,
) -> BTreeMap<String, StationSettings> {
    let longest = |members: &[String]| {
        members.iter().filter_map(|m| cameras.get(m)).map(|cam| cam.trigger_timeout).max().unwrap_or_default()
    };
    let mut out: BTreeMap<String, StationSettings> = c
        .stations
        .iter()
        .map(|(id, s)| {
            let timeout = match s.timeout_s {
                Some(t) => p.seconds(&format!("stations.{id}.timeout_s"), t, 0.01),
                None => longest(&s.cameras),
            };
            (id.clone(), StationSettings { cameras: s.cameras.clone(), timeout })
        })
        .collect();
    for (id, cam) in cameras {
        let triggered = cam.config.mode == CameraMode::Triggered;
        if triggered && !c.stations.values().any(|s| s.cameras.contains(id)) {
            out.insert(
                id.clone(),
                StationSettings { cameras: vec![id.clone()], timeout: cam.trigger_timeout },
            );
        }
    }
    out
}

/// Providers in the configured order, with every required one in the try-list: a required
/// provider that is never tried could never fail, and the promise "no silent CPU fallback"
/// would be empty. Shared with the command line's `--require-provider`.
pub fn runtime_settings(c: &Config) -> RuntimeSettings {
    let parse = |names: &[String]| names.iter().filter_map(|n| Provider::parse(n)).collect::<Vec<_>>();
    RuntimeSettings::new(
        c.runtime.library.clone(),
        parse(&c.runtime.providers),
        parse(&c.runtime.required_providers),
        c.runtime.threads,
    )
}

/// Problems found while converting; one per key (the first is the most specific).
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        if !self.0.iter().any(|p| p.key == key) {
            self.0.push(Problem::new(key, message));
        }
    }

    /// Seconds as a `Duration`: finite, in `min..=MAX_SECONDS`.
    fn seconds(&mut self, key: &str, value: f64, min: f64) -> Duration {
        if !value.is_finite() || value < min || value > MAX_SECONDS {
            let lower = if min > 0.0 { format!("{min}") } else { "0".into() };
            self.push(key, format!("{value} is not a number of seconds in {lower}..={MAX_SECONDS}"));
            return Duration::ZERO;
        }
        Duration::from_secs_f64(value)
    }

    /// A count in `1..=max`.
    fn count(&mut self, key: &str, value: usize, max: usize) -> NonZeroUsize {
        match NonZeroUsize::new(value).filter(|n| n.get() <= max) {
            Some(n) => n,
            None => {
                self.push(key, format!("{value} is not in 1..={max}"));
                NonZeroUsize::MIN
            }
        }
    }
}
