//! Parsing the configuration: the TOML file, overlaid by `INSPECTD__SECTION__KEY` environment
//! variables, deserialised section by section so that every problem is reported at once, each
//! naming its key and the file. `crate::settings` checks and converts the values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::types::*;

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

/// A config file deserialised, with the value problems found on the way (non-finite numbers,
/// which are dropped): `Settings` reports them together with its own.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub config: Config,
    pub problems: Vec<Problem>,
}

/// Reads, overlays and deserialises `file`: the structure only. Values are checked and
/// converted by `Settings::from_config`, the one conversion point.
pub fn parse(file: &Path) -> Result<Parsed, ConfigError> {
    let fail = |problems| ConfigError { file: file.to_path_buf(), problems };
    let merged = merged_value(file).map_err(|p| fail(vec![p]))?;
    checked_value(merged).map_err(fail)
}

/// Parses TOML text with the same rules (no environment overlay); for tests and tools.
pub fn parse_toml(text: &str, file: &Path) -> Result<Parsed, ConfigError> {
    let fail = |problems| ConfigError { file: file.to_path_buf(), problems };
    let value: toml::Value =
        toml::from_str(text).map_err(|e| fail(vec![Problem::new("(syntax)", e.to_string())]))?;
    checked_value(value).map_err(fail)
}

/// Reports non-finite numbers (TOML's `nan` and `inf`), which JSON cannot hold and no
/// setting accepts, then deserialises the rest.
fn checked_value(mut value: toml::Value) -> Result<Parsed, Vec<Problem>> {
    let mut problems = Vec::new();
    drop_non_finite(&mut value, "", &mut problems);
    let json = serde_json::to_value(&value).map_err(|e| vec![Problem::new("(syntax)", e.to_string())])?;
    match from_value(&json) {
        Ok(config) => Ok(Parsed { config, problems }),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

fn drop_non_finite(value: &mut toml::Value, key: &str, problems: &mut Vec<Problem>) {
    let join = |k: &str| if key.is_empty() { k.to_string() } else { format!("{key}.{k}") };
    match value {
        toml::Value::Table(t) => {
            t.retain(|k, v| match v {
                toml::Value::Float(f) if !f.is_finite() => {
                    problems.push(Problem::new(join(k), format!("{f} is not a finite number")));
                    false
                }
                _ => true,
            });
            for (k, v) in t.iter_mut() {
                drop_non_finite(v, &join(k), problems);
            }
        }
        toml::Value::Array(a) => a.iter_mut().for_each(|v| drop_non_finite(v, key, problems)),
        _ => {}
    }
}

fn merged_value(file: &Path) -> Result<toml::Value, Problem> {
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
    built.try_deserialize::<toml::Value>().map_err(|e| Problem::new("(syntax)", e.to_string()))
}

/// Deserialises each section (and each model and camera) on its own, collecting every error.
fn from_value(v: &Value) -> Result<Config, Vec<Problem>> {
    let mut problems = Vec::new();
    let empty = Value::Object(Default::default());
    let obj = v.as_object().cloned().unwrap_or_default();
    for key in obj.keys() {
        if !["node", "runtime", "mqtt", "evidence", "http", "models", "cameras", "stations", "sparkplug"]
            .contains(&key.as_str())
        {
            problems.push(Problem::new(
                key.clone(),
                "unknown section (expected node, runtime, mqtt, evidence, http, models, cameras, stations, sparkplug)",
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
    let stations = match obj.get("stations") {
        None => Some(BTreeMap::new()),
        some => table::<StationConfig>("stations", some, &mut problems),
    };
    let sparkplug = match obj.get("sparkplug") {
        None => Some(None),
        Some(v) => part::<SparkplugConfig>("sparkplug", v.clone(), &mut problems).map(Some),
    };
    match (node, runtime, mqtt, evidence, http, models, cameras, stations, sparkplug) {
        (
            Some(node),
            Some(runtime),
            Some(mqtt),
            Some(evidence),
            Some(http),
            Some(models),
            Some(cameras),
            Some(stations),
            Some(sparkplug),
        ) if problems.is_empty() => {
            Ok(Config { node, runtime, mqtt, evidence, http, models, cameras, stations, sparkplug })
        }
        _ => Err(problems),
    }
}

/// Deserialises one section. On an error the offending key is set aside and the section is
/// tried again, so that every bad key of a section is reported, not only the first.
fn part<T: DeserializeOwned>(key: &str, v: Value, problems: &mut Vec<Problem>) -> Option<T> {
    if v.is_null() {
        problems.push(Problem::new(key, "missing section"));
        return None;
    }
    let mut v = v;
    let mut removed: Vec<String> = Vec::new();
    let mut failed = false;
    // Each round removes one key, so a section cannot take more rounds than it has values.
    for _ in 0..=count_values(&v) {
        match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(t) => return (!failed).then_some(t),
            Err(e) => {
                let path = e.path().to_string();
                let full = if path == "." { key.to_string() } else { format!("{key}.{path}") };
                let message = e.inner().to_string();
                // A key set aside earlier now shows up as missing; it is already reported.
                let missing = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`'));
                let echo = missing.is_some_and(|leaf| removed.contains(&format!("{full}.{leaf}")));
                if !echo {
                    problems.push(Problem::new(full.clone(), message));
                }
                failed = true;
                if !remove_path(&mut v, e.path()) {
                    return None;
                }
                removed.push(full);
            }
        }
    }
    None
}

/// Number of values in a tree (objects and arrays count with their members).
fn count_values(v: &Value) -> usize {
    match v {
        Value::Object(o) => 1 + o.values().map(count_values).sum::<usize>(),
        Value::Array(a) => 1 + a.iter().map(count_values).sum::<usize>(),
        _ => 1,
    }
}

/// Removes the value at `path` from `v`; false when the path cannot be followed.
fn remove_path(v: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else { return false };
    let mut at = v;
    for segment in parents {
        let next = match (segment, at) {
            (Segment::Map { key }, Value::Object(o)) => o.get_mut(key),
            (Segment::Seq { index }, Value::Array(a)) => a.get_mut(*index),
            _ => None,
        };
        match next {
            Some(n) => at = n,
            None => return false,
        }
    }
    match (last, at) {
        (Segment::Map { key }, Value::Object(o)) => o.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
            a.remove(*index);
            true
        }
        _ => false,
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
