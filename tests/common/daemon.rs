//! Helpers for tests that run the `inspectd` binary as a daemon: a small model trained once per
//! test binary on synthetic washers, demo videos with defects at known frames, configs, and the
//! daemon process itself.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use inspectd::model::manifest::RadiusMode;
use inspectd::model::runtime::{Runtime, RuntimeSettings};
use inspectd::synth::video::{write_video, VideoPlan};
use inspectd::synth::{write_category, Category, SynthSpec};
use inspectd::train::calibrate::NormalCalibration;
use inspectd::train::fit::FitConfig;
use inspectd::train::run::{train, TrainSettings};

/// Model input size of the test model: small, so scoring is fast on two cores.
pub const SIZE: u32 = 128;

/// A calibrated washer model, trained once per test binary.
pub fn washer_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        remove_models_of_finished_runs();
        let root = std::env::temp_dir().join(format!("{MODEL_DIR_PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // The labelled test split calibrates the threshold (F1-optimal), as a user with defect
        // samples would; a handful of held-out good images alone gives a noisy threshold.
        let spec = SynthSpec {
            category: Category::Washer,
            size: SIZE,
            train_good: 32,
            test_good: 10,
            test_defect_per_type: 3,
            seed: 3,
        };
        let data = write_category(&spec, &root).expect("synthetic data").category_dir;
        let out = root.join("washer");
        let settings = TrainSettings {
            inputs: vec![data.clone()],
            out: out.clone(),
            backbone: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/models/backbone.onnx"),
            model_id: "washer-test".into(),
            width: SIZE,
            height: SIZE,
            // The recipe the daemon tests were tuned with (4 images per step).
            fit: FitConfig {
                epochs: 8,
                seed: 1,
                batch: 4,
                radius_mode: RadiusMode::Trainable,
                ..FitConfig::default()
            },
            select: None,
            sigma: 4.0,
            position_norm: true,
            holdout: 0.25,
            calibration: NormalCalibration::default(),
            validation: Some(data),
            min_images: 2,
            video_frames: 120,
            live: None,
            view: None,
        };
        let rt = Runtime::init(RuntimeSettings::default()).expect("ONNX Runtime (run scripts/setup)");
        train(&rt, &settings, &mut |_| {}).expect("train the test model");
        out
    })
}

/// Directory name of a test binary's model, followed by its process id.
const MODEL_DIR_PREFIX: &str = "inspectd-daemon-model-";

/// The model of a test binary outlives it (a static is never dropped), about 5 MB each; the
/// next binary removes those whose process has ended.
fn remove_models_of_finished_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let pid =
            name.to_str().and_then(|n| n.strip_prefix(MODEL_DIR_PREFIX)).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Writes a washer video with the given defect episodes `(first frame, length)`.
pub fn washer_video(path: &Path, frames: usize, fps: u32, defects: Vec<(usize, usize)>) -> VideoPlan {
    let plan = VideoPlan { category: Category::Washer, size: SIZE, seed: 9, frames, fps, defects };
    write_video(&plan, path).expect("encode the test video");
    plan
}

/// A running `inspectd run`, killed when dropped; its log goes to `log`.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Writes `config` next to the log and starts the daemon on it.
    pub fn start(dir: &Path, name: &str, config: &str) -> Daemon {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, config).expect("write config");
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_inspectd"))
            .args(["run", "--config"])
            .arg(&file)
            .env("INSPECTD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start inspectd");
        Daemon { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and waits up to `timeout` for the exit code.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("inspectd did not exit within {timeout:?} after SIG{signal}; log:\n{}", self.log());
    }

    /// Resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The common head of a test config: node, MQTT on `port`, the washer model.
pub fn config_head(node: &str, dir: &Path, port: u16) -> String {
    format!(
        r#"
[node]
id = "{node}"
state_dir = "{state}"
shutdown_deadline_s = 5.0

[mqtt]
port = {port}
keep_alive_s = 2
status_interval_s = 1.0

[http]
bind = ""

[models.washer]
path = "{model}"
batch = 4
max_wait_ms = 10
"#,
        state = dir.join("state").display(),
        model = washer_model().display()
    )
}

/// A `[cameras.{id}]` table: the washer model on a `videotestsrc` camera at model size.
pub fn test_camera(id: &str, fps: u32) -> String {
    format!(
        "\n[cameras.{id}]\nmodel = \"washer\"\n[cameras.{id}.source]\nkind = \"test\"\nfps = {fps}\nwidth = {SIZE}\nheight = {SIZE}\n"
    )
}

/// One `Alarm.` line of the daemon's log: what the decision stage generated, whether or not
/// it reached the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedAlarm {
    pub camera: String,
    pub alarm_id: String,
    /// `raised` or `cleared`, as in the MQTT payload.
    pub event: String,
}

/// The alarms a daemon's log reports, in the order it generated them.
pub fn logged_alarms(log: &str) -> Vec<LoggedAlarm> {
    strip_ansi(log)
        .lines()
        .filter(|line| line.contains(" Alarm. "))
        .map(|line| {
            let field = |name: &str| {
                let start = line.find(&format!(" {name}=")).unwrap_or_else(|| panic!("{name} in {line}"));
                let value = line[start + name.len() + 2..].split(' ').next().unwrap_or_default();
                value.trim_matches('"').to_string()
            };
            LoggedAlarm {
                camera: field("camera"),
                alarm_id: field("alarm_id"),
                event: field("event").to_lowercase(),
            }
        })
        .collect()
}

/// A log without terminal colour codes (tracing colours its fields even into a file).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
