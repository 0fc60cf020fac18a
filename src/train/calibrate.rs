//! Thresholds and score statistics (cfa.md §6): from held-out good images when that is all
//! there is, or F1-optimal on a labelled validation set.

use crate::eval::metrics::{best_f1_threshold, quantile};
use crate::model::manifest::{ScoreStats, Threshold};

/// How a threshold is derived from good images only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormalCalibration {
    /// Quantile of the held-out good scores the threshold starts from.
    pub quantile: f64,
    /// Added margin, in standard deviations of the held-out good scores.
    pub margin_std: f32,
}

impl Default for NormalCalibration {
    fn default() -> Self {
        NormalCalibration { quantile: 0.99, margin_std: 1.0 }
    }
}

/// Summary statistics of `scores` (non-empty).
pub fn stats(scores: &[f32]) -> ScoreStats {
    let n = scores.len() as f64;
    let mean = scores.iter().map(|&s| s as f64).sum::<f64>() / n;
    let var = scores.iter().map(|&s| (s as f64 - mean).powi(2)).sum::<f64>() / n;
    let q = |p| quantile(scores, p).unwrap_or(f64::NAN) as f32;
    ScoreStats {
        count: scores.len(),
        min: scores.iter().copied().fold(f32::INFINITY, f32::min),
        max: scores.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        mean: mean as f32,
        std: var.sqrt() as f32,
        p50: q(0.5),
        p95: q(0.95),
        p99: q(0.99),
    }
}

/// Threshold from good images only: `quantile + margin · std`.
pub fn from_normal(scores: &[f32], cfg: NormalCalibration) -> Option<Threshold> {
    if scores.is_empty() {
        return None;
    }
    let s = stats(scores);
    let base = quantile(scores, cfg.quantile)? as f32;
    Some(Threshold {
        image: base + cfg.margin_std * s.std,
        method: format!(
            "normal-quantile (q{} + {}·std of {} held-out good images)",
            cfg.quantile, cfg.margin_std, s.count
        ),
        stats: s,
    })
}

/// F1-optimal threshold on a labelled set (anomalous = true); stats cover all its scores, so
/// min-max normalisation spans good and bad as in anomalib.
pub fn from_labelled(scores: &[f32], labels: &[bool]) -> Option<Threshold> {
    let (threshold, f1) = best_f1_threshold(scores, labels)?;
    Some(Threshold {
        image: threshold,
        method: format!("f1-validation (F1 {f1:.3} on {} labelled images)", scores.len()),
        stats: stats(scores),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_threshold_sits_above_the_good_scores() {
        let scores = [1.0f32, 1.1, 0.9, 1.05, 0.95];
        let t = from_normal(&scores, NormalCalibration::default()).unwrap();
        assert!(t.image > 1.1, "{}", t.image);
        assert_eq!(t.stats.count, 5);
        assert!((t.stats.mean - 1.0).abs() < 1e-6);
        assert!(from_normal(&[], NormalCalibration::default()).is_none());
    }

    #[test]
    fn labelled_threshold_separates_classes() {
        let t = from_labelled(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]).unwrap();
        assert!(t.image > 0.2 && t.image <= 0.8, "{}", t.image);
        assert!(t.method.starts_with("f1-validation"));
    }
}
