//! SIGHUP: re-read the config file and the model bundles, and apply what can change without a
//! gap — replaced bundles (same input size) and camera thresholds. This module is the pure
//! half: [`plan`] compares the running configuration with the next one and says what to load
//! and retune, or refuses with the keys that need new pipelines (sources, cameras, MQTT, …),
//! so nothing is half applied. The apply step (`apply_reload`) loads the new models off the
//! async threads, swaps them in and retunes the decision thread without blocking.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::config::{self, Config};

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{keys} changed; these need a restart (systemctl restart inspectd)")]
    NeedsRestart { keys: String },
    #[error("model '{name}': {reason}")]
    Model { name: String, reason: String },
}

/// A running model, as the plan sees it: its bundle directory and weights hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningModel {
    pub path: PathBuf,
    pub sha: String,
}

/// What a reload does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Models whose path or bundle changed: load, then swap.
    pub models: Vec<String>,
    /// Cameras whose own threshold changed.
    pub thresholds: Vec<String>,
    /// Cameras to retune: those above and every camera of a swapped model (its calibrated
    /// threshold may have changed).
    pub retune: Vec<String>,
}

impl Plan {
    /// A short description for the log: `model part-a, cameras.cam1.threshold`, or `none`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .models
            .iter()
            .map(|n| format!("model {n}"))
            .chain(self.thresholds.iter().map(|c| format!("cameras.{c}.threshold")))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Compares `old` with `new`. `running` holds the running models; `new_shas` the weights hash
/// each of `new`'s bundles states (`None`: unreadable, so it is loaded, and refused there).
pub fn plan(
    old: &Config,
    new: &Config,
    running: &BTreeMap<String, RunningModel>,
    new_shas: &BTreeMap<String, Option<String>>,
) -> Result<Plan, ReloadError> {
    let restart = restart_keys(old, new);
    if !restart.is_empty() {
        return Err(ReloadError::NeedsRestart { keys: restart.join(", ") });
    }
    let models: Vec<String> = new
        .models
        .iter()
        .filter(|(name, m)| {
            let now = running.get(*name);
            let sha = new_shas.get(*name).cloned().flatten();
            let window_changed = old
                .models
                .get(*name)
                .is_some_and(|o| o.knn_window != m.knn_window || o.knn_precision != m.knn_precision);
            now.is_none_or(|r| r.path != m.path || sha.as_deref() != Some(r.sha.as_str())) || window_changed
        })
        .map(|(name, _)| name.clone())
        .collect();
    let thresholds: Vec<String> = new
        .cameras
        .iter()
        .filter(|(id, cam)| old.cameras.get(*id).is_some_and(|o| o.threshold != cam.threshold))
        .map(|(id, _)| id.clone())
        .collect();
    let retune: BTreeSet<String> = new
        .cameras
        .iter()
        .filter(|(id, cam)| cam.enabled && (thresholds.contains(id) || models.contains(&cam.model)))
        .map(|(id, _)| id.clone())
        .collect();
    Ok(Plan { models, thresholds, retune: retune.into_iter().collect() })
}

/// Keys whose change needs new pipelines: everything except model paths/bundles and camera
/// thresholds.
fn restart_keys(old: &Config, new: &Config) -> Vec<String> {
    let mut keys = Vec::new();
    let sections = [
        ("node", old.node == new.node),
        ("runtime", old.runtime == new.runtime),
        ("mqtt", old.mqtt == new.mqtt),
        ("evidence", old.evidence == new.evidence),
        ("http", old.http == new.http),
        ("stations", old.stations == new.stations),
        ("sparkplug", old.sparkplug == new.sparkplug),
    ];
    keys.extend(sections.iter().filter(|(_, same)| !same).map(|(k, _)| k.to_string()));
    let strip_models = |m: &BTreeMap<String, config::ModelConfig>| {
        m.iter().map(|(k, v)| (k.clone(), (v.batch, v.max_wait_ms))).collect::<BTreeMap<_, _>>()
    };
    if strip_models(&old.models) != strip_models(&new.models) {
        keys.push("models (names, batch, max_wait_ms)".into());
    }
    let ids: std::collections::BTreeSet<&String> = old.cameras.keys().chain(new.cameras.keys()).collect();
    for id in ids {
        let (a, b) = (old.cameras.get(id), new.cameras.get(id));
        let same = match (a, b) {
            (Some(a), Some(b)) => {
                config::CameraConfig { threshold: None, ..a.clone() }
                    == config::CameraConfig { threshold: None, ..b.clone() }
            }
            _ => false,
        };
        if !same {
            keys.push(format!("cameras.{id}"));
        }
    }
    keys
}

/// The first 12 hex digits of a bundle's weights hash, as its manifest states it (the files
/// are verified against it when the bundle is loaded).
pub fn weights_sha(dir: &Path) -> Option<String> {
    let manifest = crate::model::bundle::load_manifest(dir).ok()?;
    Some(manifest.weights.sha256.chars().take(12).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(threshold: Option<f32>, path: &str, pattern: &str) -> Config {
        let mut c = config::parse_toml(
            &format!(
                "[node]\nid = \"n\"\n[models.m]\npath = \"{path}\"\n[cameras.c]\nmodel = \"m\"\n\
                 [cameras.c.source]\nkind = \"test\"\npattern = \"{pattern}\"\n"
            ),
            Path::new("t.toml"),
        )
        .unwrap()
        .config;
        c.cameras.get_mut("c").unwrap().threshold = threshold;
        c
    }

    fn running(path: &str, sha: &str) -> BTreeMap<String, RunningModel> {
        BTreeMap::from([("m".to_string(), RunningModel { path: path.into(), sha: sha.into() })])
    }

    fn shas(sha: Option<&str>) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([("m".to_string(), sha.map(String::from))])
    }

    #[test]
    fn nothing_changed_is_an_empty_plan() {
        let c = config(None, "/m", "smpte");
        let p = plan(&c, &c, &running("/m", "abc"), &shas(Some("abc"))).unwrap();
        assert_eq!(p, Plan::default());
        assert_eq!(p.summary(), "none");
    }

    #[test]
    fn new_weights_or_path_reload_the_model_and_retune_its_cameras() {
        let c = config(None, "/m", "smpte");
        let p = plan(&c, &c, &running("/m", "abc"), &shas(Some("def"))).unwrap();
        assert_eq!((p.models.clone(), p.retune.clone()), (vec!["m".to_string()], vec!["c".to_string()]));
        let moved = config(None, "/m2", "smpte");
        assert_eq!(plan(&c, &moved, &running("/m", "abc"), &shas(Some("abc"))).unwrap().models, vec!["m"]);
        assert_eq!(plan(&c, &c, &running("/m", "abc"), &shas(None)).unwrap().models, vec!["m"], "unreadable");
    }

    #[test]
    fn a_new_knn_window_reloads_the_model() {
        let old = config(None, "/m", "smpte");
        let mut new = old.clone();
        new.models.get_mut("m").unwrap().knn_window = Some(8);
        let p = plan(&old, &new, &running("/m", "abc"), &shas(Some("abc"))).unwrap();
        assert_eq!(p.models, vec!["m"]);
    }

    #[test]
    fn a_threshold_change_retunes_only_and_a_source_change_needs_a_restart() {
        let (old, new) = (config(None, "/m", "smpte"), config(Some(0.5), "/m", "smpte"));
        let p = plan(&old, &new, &running("/m", "abc"), &shas(Some("abc"))).unwrap();
        assert_eq!((p.models.len(), p.retune.clone()), (0, vec!["c".to_string()]));
        assert_eq!(p.summary(), "cameras.c.threshold");
        let err = plan(&old, &config(None, "/m", "ball"), &running("/m", "abc"), &shas(Some("abc")))
            .expect_err("a new source");
        assert!(err.to_string().contains("cameras.c"), "{err}");
        let mut stations = config(None, "/m", "smpte");
        stations
            .stations
            .insert("st".into(), config::StationConfig { cameras: vec!["c".into()], timeout_s: None });
        let err = plan(&old, &stations, &running("/m", "abc"), &shas(Some("abc"))).expect_err("new station");
        assert!(err.to_string().contains("stations"), "{err}");
    }
}
