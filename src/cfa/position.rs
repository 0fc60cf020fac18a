//! Per-position standardisation of patch scores: each patch position's score is expressed in
//! standard deviations of what that position scores on good images.
//!
//! Why: a good image does not score the same everywhere. Patches at the border and in the
//! corners see the backbone's zero padding, and on an object each position sees its own part,
//! so their distances to the bank run higher and vary more (measured on the real-photo
//! benchmark: corners 4.5 ± 0.8 where the middle is 3.3 ± 0.4). The image score is the map's
//! maximum, so those positions set it on good images and hide a faint defect elsewhere.
//! Dividing each position by its own spread puts every position on one scale.
//!
//! The statistics come from the images the memory bank was built from, so the held-out images
//! stay unseen for the threshold. Each position's variance is shrunk towards the mean variance
//! over all positions by [`PRIOR_IMAGES`] pseudo-images, so a small training set cannot make
//! one position's spread (and so its standardised score) extreme.

use ndarray::{Array2, ArrayView2, Zip};

/// Pseudo-images of the mean variance each position's variance is shrunk towards.
pub const PRIOR_IMAGES: f32 = 8.0;

/// Mean and standard deviation of the raw patch score at each grid position `[h, w]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionStats {
    pub mean: Array2<f32>,
    pub std: Array2<f32>,
}

impl PositionStats {
    /// Statistics of `maps` (raw patch scores of good images, all `[h, w]`). `None` with fewer
    /// than two maps, or maps of different shapes.
    pub fn fit(maps: &[Array2<f32>]) -> Option<PositionStats> {
        PositionStats::fit_refs(&maps.iter().collect::<Vec<_>>())
    }

    /// [`PositionStats::fit`] over borrowed maps.
    pub fn fit_refs(maps: &[&Array2<f32>]) -> Option<PositionStats> {
        let first = maps.first()?;
        if maps.len() < 2 || maps.iter().any(|m| m.dim() != first.dim()) {
            return None;
        }
        let n = maps.len() as f64;
        let mut sum = Array2::<f64>::zeros(first.dim());
        let mut sum_sq = Array2::<f64>::zeros(first.dim());
        for m in maps {
            Zip::from(&mut sum).and(&mut sum_sq).and(*m).for_each(|s, q, &x| {
                *s += x as f64;
                *q += (x as f64) * (x as f64);
            });
        }
        let mean = sum.mapv(|s| s / n);
        let var = Zip::from(&sum_sq).and(&mean).map_collect(|&q, &m| (q / n - m * m).max(0.0));
        let mean_var = var.mean().unwrap_or(0.0);
        // A floor for a degenerate set (identical images): one part in a thousand of the
        // typical score, so standardising never divides by zero.
        let floor = (mean.mean().unwrap_or(0.0).abs() * 1e-3).max(1e-6);
        let prior = PRIOR_IMAGES as f64;
        let std = var.mapv(|v| ((n * v + prior * mean_var) / (n + prior)).sqrt().max(floor) as f32);
        Some(PositionStats { mean: mean.mapv(|m| m as f32), std })
    }

    /// Standardises `patch` in place: `(score - mean) / std` at each position.
    pub fn apply(&self, patch: &mut Array2<f32>) {
        Zip::from(patch).and(&self.mean).and(&self.std).for_each(|p, &m, &s| *p = (*p - m) / s);
    }

    /// The grid `(h, w)` the statistics are for.
    pub fn grid(&self) -> (usize, usize) {
        self.mean.dim()
    }

    /// Checks loaded statistics: matching shapes, finite means, positive finite deviations.
    pub fn check(mean: ArrayView2<f32>, std: ArrayView2<f32>) -> Result<(), String> {
        if mean.dim() != std.dim() {
            return Err(format!("position.mean is {:?} but position.std is {:?}", mean.dim(), std.dim()));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("position.mean holds {m}, not a finite number"));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!("position.std holds {s}, not a positive finite number"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_corner_that_runs_high_on_good_images_stops_setting_the_maximum() {
        // Good images: the corner scores about 5, everywhere else about 3.
        let good: Vec<Array2<f32>> = (0..20)
            .map(|i| {
                let j = (i % 5) as f32 * 0.1;
                array![[5.0 + 4.0 * j, 3.0 + j], [3.0 - j, 3.0 + 0.5 * j]]
            })
            .collect();
        let stats = PositionStats::fit(&good).expect("20 maps");
        // A faint defect at (1, 1): raw, the corner still wins; standardised, the defect does.
        let mut faint = array![[5.2f32, 3.1], [3.0, 3.6]];
        let raw_max = faint.iter().copied().fold(f32::MIN, f32::max);
        assert_eq!(raw_max, 5.2);
        stats.apply(&mut faint);
        let (at, _) = faint.indexed_iter().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
        assert_eq!(at, (1, 1));
    }

    #[test]
    fn variances_shrink_towards_the_mean_variance_and_never_reach_zero() {
        let same = vec![array![[1.0f32, 2.0]]; 4];
        let stats = PositionStats::fit(&same).unwrap();
        assert!(stats.std.iter().all(|&s| s > 0.0 && s.is_finite()));
        // One position varies, the other does not: the still one borrows some spread.
        let maps: Vec<_> = (0..4).map(|i| array![[i as f32, 1.0]]).collect();
        let stats = PositionStats::fit(&maps).unwrap();
        assert!(stats.std[(0, 1)] > 0.1, "{:?}", stats.std);
        assert!(stats.std[(0, 1)] < stats.std[(0, 0)]);
        assert!(PositionStats::fit(&maps[..1]).is_none());
    }

    #[test]
    fn loaded_statistics_are_checked() {
        let ok = array![[1.0f32, 2.0]];
        assert!(PositionStats::check(ok.view(), ok.view()).is_ok());
        assert!(PositionStats::check(ok.view(), array![[1.0f32, 0.0]].view()).is_err());
        assert!(PositionStats::check(array![[f32::NAN, 1.0]].view(), ok.view()).is_err());
        assert!(PositionStats::check(ok.view(), array![[1.0f32]].view()).is_err());
    }
}
