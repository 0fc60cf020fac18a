//! One camera's decision-stage state, built from its config and its model: the threshold
//! layers, the alarm machine and the frame-health checks (the config's values are checked
//! beforehand, in `settings::validate`); and what its config changes in its model's view
//! (roi, ignore polygons), checked against that view at start and by `check-config`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use super::daemon::DaemonError;
use super::models::LoadedModel;
use crate::config::types::CameraConfig;
use crate::decision::{thresholds, CameraDecision, FrameHealth};
use crate::pipeline::decide::CameraOutputs;
use crate::view::{CameraView, Rect, View};

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
    if let Some(why) = decision.thresholds().off_scale(id) {
        tracing::warn!("{why}");
    }
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

/// Refuses at start what would drop every frame: `ignore` on a model without a view, and a
/// camera `roi` that does not fit the frames the model's view was trained on.
pub(crate) fn check_camera_view(
    id: &str,
    model: &str,
    view: &View,
    cam: &CameraConfig,
) -> Result<(), DaemonError> {
    let refuse = |reason: String| DaemonError::Camera { camera: id.to_string(), reason };
    if !view.stored() && !cam.ignore.is_empty() {
        return Err(refuse(format!(
            "cameras.{id}.ignore needs a model trained with a view (inspectd train --roi, --tile, --mask or --letterbox); model '{model}' stretches whole frames"
        )));
    }
    if let Some(frame) = view.frame.filter(|_| view.stored()) {
        camera_view(cam)
            .resolve(view, frame)
            .check(frame)
            .map_err(|e| refuse(format!("cameras.{id}.roi: {e}")))?;
    }
    Ok(())
}

/// What a camera's config changes in its model's view.
pub(crate) fn camera_view(cam: &CameraConfig) -> CameraView {
    CameraView {
        roi: cam.roi.map(|r| Rect { x: r.x, y: r.y, width: r.width, height: r.height }),
        ignore: cam.ignore.clone(),
    }
}
