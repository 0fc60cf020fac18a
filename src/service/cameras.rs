//! One camera's decision-stage state, built from its config and its model: the threshold
//! layers, the alarm machine and the frame-health checks (the config's values are checked
//! beforehand, in `settings::validate`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::daemon::DaemonError;
use super::models::LoadedModel;
use crate::config::types::CameraConfig;
use crate::decision::{thresholds, CameraDecision, FrameHealth};
use crate::pipeline::decide::CameraOutputs;

/// The camera's decision, and its frame health with the model's focus reference.
pub(crate) fn camera_outputs(
    id: &str,
    cam: &CameraConfig,
    model: &LoadedModel,
) -> Result<CameraOutputs, DaemonError> {
    let calibrated = model.identity.threshold.as_ref().map(|t| t.image);
    let (threshold, configured) = thresholds(calibrated, cam.threshold).ok_or_else(|| DaemonError::Camera {
        camera: id.to_string(),
        reason: format!(
            "model '{}' ({}) has no calibrated threshold: retrain it with held-out images or set cameras.{id}.threshold",
            model.identity.name,
            model.bundle.dir.display()
        ),
    })?;
    let decision = CameraDecision::new(id, threshold, cam.alarm)
        .and_then(|d| d.with_threshold_override(configured))
        .map(|d| d.with_calibration(model.identity.threshold.clone()))
        .map_err(|e| DaemonError::Camera { camera: id.to_string(), reason: e.to_string() })?;
    let health = &cam.health;
    let focus = model.bundle.manifest.focus.as_ref().map(|f| f.median);
    if health.enabled && health.min_focus_ratio > 0.0 && focus.is_none() {
        tracing::info!(camera = id, model = %model.identity.name,
            "Out-of-focus check off: the bundle has no focus reference (retrain it to store one).");
    }
    let health = cam.health.enabled.then(|| FrameHealth::new(id, cam.health, focus)).transpose().map_err(
        |problems| DaemonError::Camera {
            camera: id.to_string(),
            reason: format!(
                "health.alarm: {}",
                problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            ),
        },
    )?;
    Ok(CameraOutputs {
        decision,
        evidence: cam.evidence,
        last_scored_ms: Arc::new(AtomicU64::new(0)),
        decided: 0,
        metrics: None,
        health,
        degraded: Default::default(),
    })
}
