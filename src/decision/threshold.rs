//! The threshold a camera judges against, and who set it.
//!
//! Three layers, lowest first: the model bundle's calibration, the camera's `threshold` in
//! the config, and a threshold set at run time (MQTT `threshold/set`, the set-up page,
//! Sparkplug). The highest layer present wins, so an operator's runtime choice survives a
//! config reload and a retrained model, until it is reset.
//!
//! A runtime threshold is a raw score, or a *sensitivity* in 0..=1 mapped through the
//! model's calibration statistics: sensitivity `s` flags a frame whose normalised score (the
//! `score_norm` of results, 0.5 at the calibrated threshold) is at least `1 − s`, so
//! `threshold = calibrated + (0.5 − s) · (max − min)` of the calibration scores. 0.5 is the
//! calibrated threshold; higher is stricter. A threshold set as a sensitivity follows a
//! reloaded model's calibration.

use serde::{Deserialize, Serialize};

use crate::model::manifest::Threshold as Calibration;

/// Which layer the threshold in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdSource {
    Model,
    Config,
    Runtime,
}

/// A threshold set at run time, as persisted in the state directory and echoed on
/// `threshold/state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeThreshold {
    /// The raw score threshold.
    pub threshold: f32,
    /// The sensitivity asked for, when it was set as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<f32>,
    /// Who or what set it: the requester's own name when it gave one, else the channel.
    pub set_by: String,
    /// When (RFC 3339 UTC).
    pub set_at: String,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdChange {
    Raw(f32),
    Sensitivity(f32),
    /// Remove the runtime threshold: the config's (or the model's) applies again.
    Reset,
    /// The payload could not be read; refused with this reason.
    Unreadable(String),
}

/// A runtime threshold request for one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdRequest {
    pub camera: String,
    pub change: ThresholdChange,
    pub set_by: String,
}

/// The last refused request, echoed so the requester sees why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub reason: String,
    pub set_by: String,
    pub at: String,
}

/// The retained `threshold/state` body: what is in force, every layer, the last refusal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdState {
    pub threshold: f32,
    pub source: ThresholdSource,
    /// The model bundle's calibrated threshold (the config's, for a model without calibration).
    pub model_threshold: f32,
    pub config_threshold: Option<f32>,
    pub runtime: Option<RuntimeThreshold>,
    /// Set when the latest request was refused; cleared by the next accepted one.
    pub refused: Option<Refusal>,
}

/// The three layers of one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdLayers {
    model: f32,
    calibration: Option<Calibration>,
    config: Option<f32>,
    runtime: Option<RuntimeThreshold>,
    refused: Option<Refusal>,
}

impl ThresholdLayers {
    pub fn new(model: f32, config: Option<f32>) -> ThresholdLayers {
        ThresholdLayers { model, calibration: None, config, runtime: None, refused: None }
    }

    /// The threshold in force and where it comes from.
    pub fn current(&self) -> (f32, ThresholdSource) {
        match (&self.runtime, self.config) {
            (Some(r), _) => (r.threshold, ThresholdSource::Runtime),
            (None, Some(c)) => (c, ThresholdSource::Config),
            (None, None) => (self.model, ThresholdSource::Model),
        }
    }

    /// Why the threshold in force looks set for another model's scale, when a configured or
    /// raw runtime threshold sits outside where the model's calibration puts good parts.
    /// A sensitivity follows the calibration, so it never is. The warning names the layer
    /// and says what to do.
    pub fn off_scale(&self, camera: &str) -> Option<String> {
        let (threshold, _) = self.current();
        let layer = match (&self.runtime, self.config) {
            (Some(r), _) if r.sensitivity.is_some() => return None,
            (Some(r), _) => format!("camera {camera}: the runtime threshold set by {}", r.set_by),
            (None, Some(_)) => format!("cameras.{camera}.threshold"),
            (None, None) => return None,
        };
        let why = off_scale(threshold, self.calibration.as_ref()?)?;
        Some(format!("{layer}: {why}; {OFF_SCALE_FIX}"))
    }

    /// The model's threshold and calibration statistics.
    pub fn model(&self) -> (f32, Option<&Calibration>) {
        (self.model, self.calibration.as_ref())
    }

    pub fn set_config(&mut self, config: Option<f32>) {
        self.config = config;
    }

    /// A (re)loaded model's threshold and calibration. A runtime threshold set as a
    /// sensitivity is mapped again through the new calibration.
    pub fn set_model(&mut self, model: f32, calibration: Option<Calibration>) {
        self.model = model;
        self.calibration = calibration;
        let Some(runtime) = &mut self.runtime else { return };
        if let (Some(s), Some(cal)) = (runtime.sensitivity, &self.calibration) {
            if let Ok(t) = from_sensitivity(cal, s) {
                runtime.threshold = t;
            }
        }
    }

    /// A runtime threshold restored from the state directory.
    pub fn restore(&mut self, runtime: RuntimeThreshold) -> Result<(), String> {
        check_raw(runtime.threshold)?;
        self.runtime = Some(runtime);
        let (model, calibration) = (self.model, self.calibration.take());
        self.set_model(model, calibration);
        Ok(())
    }

    /// Applies a request made at `at` (RFC 3339). On success returns the runtime threshold
    /// now in force (`None` after a reset), for the caller to persist; on refusal the reason,
    /// which [`ThresholdLayers::state`] also carries from now on.
    pub fn apply(
        &mut self,
        change: &ThresholdChange,
        set_by: &str,
        at: &str,
    ) -> Result<Option<RuntimeThreshold>, String> {
        let outcome = self.resolve(change).map(|value| {
            value.map(|(threshold, sensitivity)| RuntimeThreshold {
                threshold,
                sensitivity,
                set_by: set_by.to_string(),
                set_at: at.to_string(),
            })
        });
        match outcome {
            Ok(runtime) => {
                self.runtime = runtime.clone();
                self.refused = None;
                Ok(runtime)
            }
            Err(reason) => {
                self.refused =
                    Some(Refusal { reason: reason.clone(), set_by: set_by.to_string(), at: at.to_string() });
                Err(reason)
            }
        }
    }

    /// The raw threshold (and sensitivity) a change asks for; `None` for a reset.
    fn resolve(&self, change: &ThresholdChange) -> Result<Option<(f32, Option<f32>)>, String> {
        match change {
            ThresholdChange::Raw(t) => check_raw(*t).map(|()| Some((*t, None))),
            ThresholdChange::Sensitivity(s) => {
                let cal = self.calibration.as_ref().ok_or_else(|| {
                    "the camera's model has no calibration statistics to map a sensitivity through; \
                     send a raw {\"threshold\": …} instead"
                        .to_string()
                })?;
                from_sensitivity(cal, *s).map(|t| Some((t, Some(*s))))
            }
            ThresholdChange::Reset => Ok(None),
            ThresholdChange::Unreadable(reason) => Err(reason.clone()),
        }
    }

    pub fn state(&self) -> ThresholdState {
        let (threshold, source) = self.current();
        ThresholdState {
            threshold,
            source,
            model_threshold: self.model,
            config_threshold: self.config,
            runtime: self.runtime.clone(),
            refused: self.refused.clone(),
        }
    }
}

/// The raw threshold for sensitivity `s` under `cal` (module docs).
pub fn from_sensitivity(cal: &Calibration, s: f32) -> Result<f32, String> {
    if !(0.0..=1.0).contains(&s) {
        return Err(format!("sensitivity {s} is outside 0..=1"));
    }
    let span = (cal.stats.max - cal.stats.min).max(f32::EPSILON);
    let t = cal.image + (0.5 - s) * span;
    check_raw(t).map_err(|_| {
        format!("sensitivity {s} maps to threshold {t} under the model's calibration, which is not above 0; use a lower sensitivity")
    })?;
    Ok(t)
}

/// A raw threshold must be a finite score above zero: scores are distances, so 0 or less
/// would pass nothing and NaN would pass everything.
fn check_raw(t: f32) -> Result<(), String> {
    if t.is_finite() && t > 0.0 {
        Ok(())
    } else {
        Err(format!("threshold {t} must be a finite number above 0"))
    }
}

/// Spreads of the good calibration scores above their maximum beyond which a threshold
/// looks set for another scale (a defect would have to score that far out to be NG).
const FAR_ABOVE_SPREADS: f32 = 10.0;

/// Why `threshold` cannot be meant for the model `calibration` describes: below the median of
/// its good calibration images (about half of good parts NG), or far above their maximum (only
/// gross defects NG). `None` when it is plausible, or the calibration has too few images.
pub fn off_scale(threshold: f32, calibration: &Calibration) -> Option<String> {
    let s = &calibration.stats;
    if s.count < 2 {
        return None;
    }
    let scale = format!(
        "the model's good calibration images score {:.3} to {:.3} (median {:.3}; calibrated threshold {:.3})",
        s.min, s.max, s.p50, calibration.image
    );
    if threshold < s.p50 {
        return Some(format!("threshold {threshold} is below the median good score, so about half of good parts or more will be NG: {scale}"));
    }
    let spread = (s.max - s.p50).max(s.std).max(f32::EPSILON);
    if threshold > s.max + FAR_ABOVE_SPREADS * spread {
        return Some(format!(
            "threshold {threshold} is far above every good score, so subtle defects will pass: {scale}"
        ));
    }
    None
}

/// What to do about an off-scale threshold (the end of the warning).
pub const OFF_SCALE_FIX: &str = "a threshold set for an earlier model does not carry over to a retrained one (each model scores on its own scale): remove it to use the calibrated threshold, or set it again from this model's scores";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::ScoreStats;

    fn calibration() -> Calibration {
        let stats =
            ScoreStats { count: 10, min: 1.0, max: 3.0, mean: 2.0, std: 0.5, p50: 2.0, p95: 2.8, p99: 2.9 };
        Calibration { image: 3.2, method: "normal-quantile".into(), stats }
    }

    fn layers() -> ThresholdLayers {
        let mut l = ThresholdLayers::new(3.2, None);
        l.set_model(3.2, Some(calibration()));
        l
    }

    #[test]
    fn precedence_is_model_then_config_then_runtime_and_reset_falls_back() {
        let mut l = layers();
        assert_eq!(l.current(), (3.2, ThresholdSource::Model));
        l.set_config(Some(4.0));
        assert_eq!(l.current(), (4.0, ThresholdSource::Config));
        let set = l.apply(&ThresholdChange::Raw(5.0), "plc", "t1").expect("valid");
        assert_eq!(set.map(|r| r.threshold), Some(5.0));
        assert_eq!(l.current(), (5.0, ThresholdSource::Runtime));
        l.set_config(Some(4.5));
        l.set_model(2.0, Some(calibration()));
        assert_eq!(l.current(), (5.0, ThresholdSource::Runtime), "reloads keep the runtime value");
        assert_eq!(l.apply(&ThresholdChange::Reset, "plc", "t2"), Ok(None));
        assert_eq!(l.current(), (4.5, ThresholdSource::Config));
    }

    #[test]
    fn sensitivity_maps_through_the_calibration_and_follows_a_new_model() {
        let mut l = layers();
        l.apply(&ThresholdChange::Sensitivity(0.5), "ui", "t").expect("valid");
        assert_eq!(l.current().0, 3.2, "0.5 is the calibrated threshold");
        l.apply(&ThresholdChange::Sensitivity(0.75), "ui", "t").expect("valid");
        assert!((l.current().0 - 2.7).abs() < 1e-6, "stricter: 3.2 - 0.25 * 2");
        let mut retrained = calibration();
        retrained.image = 6.0;
        l.set_model(6.0, Some(retrained));
        assert!((l.current().0 - 5.5).abs() < 1e-6, "{:?}", l.current());
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason_and_leave_the_threshold_alone() {
        let mut l = layers();
        l.apply(&ThresholdChange::Raw(4.0), "plc", "t1").expect("valid");
        for (change, reason) in [
            (ThresholdChange::Raw(-1.0), "above 0"),
            (ThresholdChange::Raw(f32::NAN), "finite"),
            (ThresholdChange::Sensitivity(1.5), "outside 0..=1"),
            (ThresholdChange::Unreadable("not JSON".into()), "not JSON"),
        ] {
            let err = l.apply(&change, "plc", "t2").expect_err("refused");
            assert!(err.contains(reason), "{change:?}: {err}");
            let state = l.state();
            assert_eq!((state.threshold, state.source), (4.0, ThresholdSource::Runtime));
            assert_eq!(state.refused.map(|r| r.reason), Some(err));
        }
        l.apply(&ThresholdChange::Raw(4.5), "plc", "t3").expect("valid");
        assert_eq!(l.state().refused, None, "an accepted request clears the refusal");
    }

    #[test]
    fn a_sensitivity_needs_calibration_statistics() {
        let mut l = ThresholdLayers::new(2.0, Some(2.0));
        let err = l.apply(&ThresholdChange::Sensitivity(0.6), "ui", "t").expect_err("refused");
        assert!(err.contains("raw"), "{err}");
    }

    #[test]
    fn a_threshold_off_the_models_scale_is_named_with_its_layer() {
        // Good calibration scores 1..3, median 2: a threshold under 2 flags half the good parts;
        // one above 3 + 10 · max(3 − 2, 0.5) = 13 passes all but gross defects.
        let cal = calibration();
        assert_eq!(off_scale(2.5, &cal), None);
        assert_eq!(off_scale(12.0, &cal), None);
        assert!(off_scale(1.5, &cal).is_some_and(|w| w.contains("below the median") && w.contains("3.200")));
        assert!(off_scale(14.0, &cal).is_some_and(|w| w.contains("far above")));
        let mut l = layers();
        assert_eq!(l.off_scale("cam1"), None, "the calibrated threshold is never off scale");
        l.set_config(Some(1.0));
        let w = l.off_scale("cam1").expect("config below the median");
        assert!(w.contains("cameras.cam1.threshold") && w.contains("retrained"), "{w}");
        l.apply(&ThresholdChange::Raw(20.0), "plc", "t").unwrap();
        assert!(l.off_scale("cam1").is_some_and(|w| w.contains("runtime threshold set by plc")));
        l.apply(&ThresholdChange::Sensitivity(0.9), "ui", "t").unwrap();
        assert_eq!(l.off_scale("cam1"), None, "a sensitivity follows the calibration");
    }
}
