//! Loading the configuration: the TOML file, overlaid by `INSPECTD__SECTION__KEY` environment
//! variables, deserialised section by section so that every problem is reported at once, each
//! naming its key and the file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::types::*;
use super::validate::validate;

/// Prefix of environment overrides: `INSPECTD__MQTT__HOST=broker` sets `mqtt.host`.
pub const ENV_PREFIX: &str = "INSPECTD";

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `cameras.line1.alarm.k`.
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { key: key.into(), message: message.into() }
    }
}

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{} has {n} problem{}:", self.file.display(), if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Loads, overlays, deserialises and validates `file`.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError { file: file.to_path_buf(), problems };
    let merged = merged_value(file).map_err(|p| fail(vec![p]))?;
    let config = from_value(&merged).map_err(fail)?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(fail(problems))
    }
}

/// Parses TOML text with the same rules (no environment overlay); for tests and tools.
pub fn from_toml(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let fail = |problems| ConfigError { file: file.to_path_buf(), problems };
    let value: Value =
        toml::from_str(text).map_err(|e| fail(vec![Problem::new("(syntax)", e.to_string())]))?;
    let config = from_value(&value).map_err(fail)?;
    let problems = validate(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(fail(problems))
    }
}

fn merged_value(file: &Path) -> Result<Value, Problem> {
    if !file.is_file() {
        return Err(Problem::new(
            "(file)",
            "not found; pass --config FILE (see config/inspectd.toml for an example)",
        ));
    }
    let built = config::Config::builder()
        .add_source(config::File::from(file).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("runtime.providers")
                .with_list_parse_key("runtime.required_providers"),
        )
        .build()
        .map_err(|e| Problem::new("(syntax)", e.to_string()))?;
    built.try_deserialize::<Value>().map_err(|e| Problem::new("(syntax)", e.to_string()))
}

/// Deserialises each section (and each model and camera) on its own, collecting every error.
fn from_value(v: &Value) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let empty = Value::Object(Default::default());
    let obj = v.as_object().cloned().unwrap_or_default();
    for key in obj.keys() {
        if !["node", "runtime", "mqtt", "evidence", "http", "models", "cameras"].contains(&key.as_str()) {
            problems.push(Problem::new(
                key.clone(),
                "unknown section (expected node, runtime, mqtt, evidence, http, models, cameras)",
            ));
        }
    }
    let section = |name: &str| obj.get(name).unwrap_or(&empty).clone();
    let node = part::<NodeConfig>("node", obj.get("node").cloned().unwrap_or(Value::Null), &mut problems);
    let runtime = part::<RuntimeConfig>("runtime", section("runtime"), &mut problems);
    let mqtt = part::<MqttConfig>("mqtt", section("mqtt"), &mut problems);
    let evidence = part::<EvidenceConfig>("evidence", section("evidence"), &mut problems);
    let http = part::<HttpConfig>("http", section("http"), &mut problems);
    let models = table::<ModelConfig>("models", obj.get("models"), &mut problems);
    let cameras = table::<CameraConfig>("cameras", obj.get("cameras"), &mut problems);
    match (node, runtime, mqtt, evidence, http, models, cameras) {
        (Some(node), Some(runtime), Some(mqtt), Some(evidence), Some(http), Some(models), Some(cameras))
            if problems.is_empty() =>
        {
            Ok(Config { node, runtime, mqtt, evidence, http, models, cameras })
        }
        _ => Err(problems),
    }
}

fn part<T: DeserializeOwned>(key: &str, v: Value, problems: &mut Vec<Problem>) -> Option<T> {
    if v.is_null() {
        problems.push(Problem::new(key, "missing section"));
        return None;
    }
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let path = e.path().to_string();
            let full = if path == "." { key.to_string() } else { format!("{key}.{path}") };
            problems.push(Problem::new(full, e.into_inner().to_string()));
            None
        }
    }
}

fn table<T: DeserializeOwned>(
    key: &str,
    v: Option<&Value>,
    problems: &mut Vec<Problem>,
) -> Option<BTreeMap<String, T>> {
    let Some(obj) = v.and_then(Value::as_object) else {
        problems.push(Problem::new(key, format!("missing section: add at least one [{key}.NAME] table")));
        return None;
    };
    let mut out = BTreeMap::new();
    let before = problems.len();
    for (name, entry) in obj {
        if let Some(t) = part::<T>(&format!("{key}.{name}"), entry.clone(), problems) {
            out.insert(name.clone(), t);
        }
    }
    (problems.len() == before).then_some(out)
}
