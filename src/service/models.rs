//! Loading model bundles for the daemon (at start and on reload): verified, the scorer
//! built and warmed up, off the async threads.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use super::daemon::DaemonError;
use crate::model::bundle::Bundle;
use crate::model::runtime::Runtime;
use crate::model::scorer::{Scorer, ScorerOptions};
use crate::pipeline::scoring::ModelIdentity;
use crate::settings::ModelSettings;

/// A loaded model, ready for its scoring thread.
pub(crate) struct LoadedModel {
    pub identity: Arc<ModelIdentity>,
    pub bundle: Bundle,
    pub scorer: Scorer,
}

/// Loads and warms up every model off the async threads.
pub(crate) async fn load_models(
    runtime: &Runtime,
    models: &BTreeMap<String, ModelSettings>,
) -> Result<HashMap<String, LoadedModel>, DaemonError> {
    let mut loaded = HashMap::new();
    for (name, m) in models {
        let (rt, path, n, options) = (runtime.clone(), m.path.clone(), name.clone(), scorer_options(m));
        let model = tokio::task::spawn_blocking(move || load_model(&rt, &n, path, options))
            .await
            .map_err(|e| DaemonError::Thread(std::io::Error::other(e.to_string())))??;
        info!(
            model = %name,
            id = %model.identity.id,
            provider = %model.scorer.provider(),
            knn = ?model.scorer.knn_path(),
            knn_window = ?m.knn_window,
            int8_candidates = ?model.scorer.int8_candidates(),
            "Model loaded and warmed up."
        );
        loaded.insert(name.clone(), model);
    }
    Ok(loaded)
}

/// How a configured model's scorer runs its kNN.
pub(crate) fn scorer_options(m: &ModelSettings) -> ScorerOptions {
    ScorerOptions { knn_window: m.knn_window, knn_precision: m.knn_precision, ..ScorerOptions::default() }
}

pub(crate) fn load_model(
    runtime: &Runtime,
    name: &str,
    path: PathBuf,
    options: ScorerOptions,
) -> Result<LoadedModel, DaemonError> {
    let bundle = Bundle::load(&path).map_err(|source| DaemonError::Bundle { name: name.into(), source })?;
    let scorer = Scorer::with_options(runtime, &bundle, options)
        .map_err(|source| DaemonError::Score { name: name.into(), source })?;
    let identity = Arc::new(ModelIdentity {
        name: name.to_string(),
        id: bundle.manifest.model.id.clone(),
        sha: bundle.short_sha().to_string(),
        threshold: bundle.manifest.threshold.clone(),
    });
    Ok(LoadedModel { identity, bundle, scorer })
}
