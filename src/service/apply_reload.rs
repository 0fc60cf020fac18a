//! Applying a SIGHUP reload to the running daemon: [`super::reload::plan`] decides what may
//! change; this loads and warms up the new models off the async threads, swaps them in
//! between batches and retunes the decision thread, with systemd told around it.

use std::collections::BTreeMap;
use std::path::Path;

use super::daemon::{forward, Running};
use super::endpoints::Service;
use super::models::{load_model, scorer_options};
use super::reload::{self, ReloadError};
use crate::decision::thresholds;
use crate::model::runtime::Runtime;
use crate::pipeline::decide::DecisionInput;
use crate::pipeline::scoring::ModelSwap;
use crate::settings::Settings;
use crate::telemetry::{Event, Reload};

/// RELOADING=1, the reload, the metrics' model labels, READY=1 (also after a refusal: the old
/// configuration is still running).
pub(crate) async fn reload(config_file: &Path, running: &mut Running, runtime: &Runtime, svc: &Service) {
    // A lost notification only delays systemd's view; the reload itself must still happen.
    let _ = svc.notifier.reloading();
    match apply_reload(config_file, running, runtime).await {
        Ok(summary) => Reload { outcome: Ok(&summary) }.emit(&svc.telemetry),
        Err(e) => {
            Reload { outcome: Err(&e) }.emit(&svc.telemetry);
            let _ = svc.notifier.status(&format!("reload refused: {e}"));
        }
    }
    for (id, cam) in &running.settings.cameras {
        svc.metrics.set_model(id, &running.models[&cam.config.model].identity);
    }
    let _ = svc.notifier.ready();
}

/// The apply step of a reload: reads the file and the bundles' hashes off the async threads,
/// asks [`reload::plan`] what changes, loads and warms up every new model before anything is
/// swapped, then swaps them in and retunes the decision thread without blocking.
async fn apply_reload(file: &Path, running: &mut Running, runtime: &Runtime) -> Result<String, ReloadError> {
    let file = file.to_path_buf();
    let (settings, shas) = tokio::task::spawn_blocking(move || {
        let settings = Settings::load(&file)?;
        let shas: BTreeMap<String, Option<String>> =
            settings.models.iter().map(|(n, m)| (n.clone(), reload::weights_sha(&m.path))).collect();
        Ok::<_, ReloadError>((settings, shas))
    })
    .await
    .map_err(|e| ReloadError::Model { name: "(all)".into(), reason: e.to_string() })??;
    let current = running
        .models
        .iter()
        .map(|(n, s)| (n.clone(), reload::RunningModel { path: s.path.clone(), sha: s.identity.sha.clone() }))
        .collect();
    let plan = reload::plan(&running.settings.config, &settings.config, &current, &shas)?;
    let mut loaded = Vec::new();
    for name in &plan.models {
        let m = &settings.models[name];
        let (rt, path, n, options) = (runtime.clone(), m.path.clone(), name.clone(), scorer_options(m));
        let model = tokio::task::spawn_blocking(move || load_model(&rt, &n, path, options))
            .await
            .map_err(|e| ReloadError::Model { name: name.clone(), reason: e.to_string() })?
            .map_err(|e| ReloadError::Model { name: name.clone(), reason: e.to_string() })?;
        let slot = &running.models[name];
        if model.bundle.view(None).stored() != slot.viewed {
            let reason = format!(
                "{} {} a stored view ([view]) and the running model {}; adding or removing one changes what the cameras deliver and needs a restart",
                settings.models[name].path.display(),
                if slot.viewed { "has no" } else { "has" },
                if slot.viewed { "has" } else { "has none" },
            );
            return Err(ReloadError::Model { name: name.clone(), reason });
        }
        if model.scorer.input_size() != slot.input {
            let reason = format!(
                "{} takes {:?} images but the running model takes {:?}; a new input size needs a restart",
                settings.models[name].path.display(),
                model.scorer.input_size(),
                slot.input
            );
            return Err(ReloadError::Model { name: name.clone(), reason });
        }
        loaded.push((name.clone(), model));
    }
    for (name, model) in loaded {
        let slot = running.models.get_mut(&name).expect("model names are unchanged");
        slot.identity = model.identity.clone();
        slot.path = settings.models[&name].path.clone();
        let norm = model.bundle.manifest.input.normalisation();
        let view = model.bundle.view(None);
        let swap = ModelSwap { scorer: model.scorer, model: model.identity, norm, view };
        if let Ok(mut pending) = slot.swap.lock() {
            *pending = Some(swap);
        }
    }
    for id in &plan.retune {
        let cam = &settings.config.cameras[id];
        let calibration = running.models[&cam.model].identity.threshold.clone();
        let calibrated = calibration.as_ref().map(|t| t.image);
        if let Some((model_threshold, override_threshold)) = thresholds(calibrated, cam.threshold) {
            let retune = DecisionInput::Retune {
                camera: id.clone(),
                model_threshold,
                calibration,
                override_threshold,
            };
            forward(&running.decide_tx, retune).await;
        }
    }
    running.settings = settings;
    Ok(plan.summary())
}
