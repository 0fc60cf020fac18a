//! SIGHUP: re-read the config file and the model bundles, and apply what can change without a
//! gap — replaced bundles (same input size) and camera thresholds. New models are loaded and
//! warmed up before the swap; on any error nothing changes and the old ones keep running.
//! Changes that need new pipelines (sources, cameras, MQTT, …) are refused with the keys that
//! differ, so nothing is half applied.

use std::collections::BTreeMap;
use std::path::Path;

use super::daemon::{load_model, LoadedModel, Running};
use crate::config::{self, Config};
use crate::decision::thresholds;
use crate::model::runtime::Runtime;
use crate::pipeline::decide::DecisionInput;
use crate::pipeline::scoring::ModelSwap;
use crate::settings::Settings;

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{keys} changed; these need a restart (systemctl restart inspectd)")]
    NeedsRestart { keys: String },
    #[error("model '{name}': {reason}")]
    Model { name: String, reason: String },
    #[error(transparent)]
    Load(#[from] super::daemon::DaemonError),
}

/// Applies the config file at `path` to `running`; returns a short description of the changes.
pub(crate) async fn reload(
    path: &Path,
    running: &mut Running,
    runtime: &Runtime,
) -> Result<String, ReloadError> {
    let settings = Settings::load(path)?;
    let next = &settings.config;
    let restart = restart_keys(&running.settings.config, next);
    if !restart.is_empty() {
        return Err(ReloadError::NeedsRestart { keys: restart.join(", ") });
    }
    let loaded = load_changed_models(runtime, running, next).await?;
    let mut changes: Vec<String> = loaded.keys().map(|n| format!("model {n}")).collect();
    for (name, model) in loaded {
        apply_model(running, &name, model, next);
    }
    for (id, cam) in &next.cameras {
        if cam.threshold != running.settings.config.cameras[id].threshold {
            retune(running, id, next);
            changes.push(format!("cameras.{id}.threshold"));
        }
    }
    running.settings = settings;
    Ok(if changes.is_empty() { "none".into() } else { changes.join(", ") })
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

/// Loads every model whose path or bundle contents changed, before anything is swapped.
async fn load_changed_models(
    runtime: &Runtime,
    running: &Running,
    next: &Config,
) -> Result<BTreeMap<String, LoadedModel>, ReloadError> {
    let mut loaded = BTreeMap::new();
    for (name, m) in &next.models {
        let slot = &running.models[name];
        if m.path == slot.path && weights_sha(&m.path).as_deref() == Some(slot.identity.sha.as_str()) {
            continue;
        }
        let (rt, path, n) = (runtime.clone(), m.path.clone(), name.clone());
        let model = tokio::task::spawn_blocking(move || load_model(&rt, &n, path))
            .await
            .map_err(|e| ReloadError::Model { name: name.clone(), reason: e.to_string() })??;
        if model.scorer.input_size() != slot.input {
            let reason = format!(
                "{} takes {:?} images but the running model takes {:?}; a new input size needs a restart",
                m.path.display(),
                model.scorer.input_size(),
                slot.input
            );
            return Err(ReloadError::Model { name: name.clone(), reason });
        }
        loaded.insert(name.clone(), model);
    }
    Ok(loaded)
}

/// The first 12 hex digits of a bundle's weights hash, as its manifest states it (the files
/// are verified against it when the bundle is loaded).
fn weights_sha(dir: &Path) -> Option<String> {
    let manifest = crate::model::bundle::load_manifest(dir).ok()?;
    Some(manifest.weights.sha256.chars().take(12).collect())
}

fn apply_model(running: &mut Running, name: &str, model: LoadedModel, next: &Config) {
    let slot = running.models.get_mut(name).expect("model names are unchanged");
    slot.identity = model.identity.clone();
    slot.path = next.models[name].path.clone();
    let norm = model.bundle.manifest.input.normalisation();
    let swap = ModelSwap { scorer: model.scorer, model: model.identity, norm };
    if let Ok(mut pending) = slot.swap.lock() {
        *pending = Some(swap);
    }
    let cameras: Vec<String> =
        next.cameras.iter().filter(|(_, c)| c.model == name).map(|(id, _)| id.clone()).collect();
    for id in cameras {
        retune(running, &id, next);
    }
}

/// Sends a camera's new thresholds to the decision thread.
fn retune(running: &Running, id: &str, next: &Config) {
    let cam = &next.cameras[id];
    let identity = &running.models[&cam.model].identity;
    let calibrated = identity.threshold.as_ref().map(|t| t.image);
    let Some((model_threshold, override_threshold)) = thresholds(calibrated, cam.threshold) else {
        return;
    };
    let _ = running.decide_tx.send(DecisionInput::Retune {
        camera: id.to_string(),
        model_threshold,
        override_threshold,
    });
}
