//! Anomaly-detection metrics: AUROC, AUPRO, F1 and quantiles.
//!
//! Conventions shared by every function here:
//! - a higher score means "more anomalous";
//! - a label/mask value of `true` marks an anomalous (positive) sample;
//! - metrics that are undefined for the input (a class missing, NaN scores)
//!   return `None` instead of a made-up number, so a broken evaluation cannot
//!   silently pass an accuracy gate;
//! - mismatched input lengths/shapes are caller bugs and panic (documented
//!   per function), in line with `ndarray`'s own shape checks.
//!
//! The ranking metrics sort samples once (O(n log n)) and sweep thresholds
//! over the sorted order, so pixel-level evaluation over ~10^7 pixels stays
//! in the sub-second range.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::components::label_regions;
use super::keys::{label_key_positive, label_key_score, label_keys, ordered_bits, score_from_bits};

/// Area under the ROC curve of `scores` against `labels`.
///
/// Exact: it equals the Mann–Whitney U statistic with average ranks, i.e. the
/// probability that a random positive outscores a random negative, counting
/// ties as one half. All-equal scores therefore give exactly 0.5.
///
/// Returns `None` when either class is absent or any score is NaN.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn auroc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "auroc: scores/labels length mismatch");
    let pairs = scores.iter().copied().zip(labels.iter().copied());
    let mut keys = label_keys(pairs, scores.len())?;
    auroc_of_keys(&mut keys)
}

/// Pixel-level AUROC over a set of anomaly maps and ground-truth masks.
///
/// Same result as [`auroc`] on the flattened pixels, but builds the sort keys
/// straight from the maps so callers need not concatenate ~10^7 pixels into
/// separate score and label vectors first.
///
/// # Panics
/// If the slices differ in length or a map's shape differs from its mask's.
pub fn pixel_auroc(maps: &[ArrayView2<f32>], masks: &[ArrayView2<bool>]) -> Option<f64> {
    let total = checked_pixel_count(maps, masks);
    let pairs = maps.iter().zip(masks).flat_map(|(map, mask)| map.iter().copied().zip(mask.iter().copied()));
    let mut keys = label_keys(pairs, total)?;
    auroc_of_keys(&mut keys)
}

/// Sorts label keys and evaluates the rank-sum statistic group by group.
fn auroc_of_keys(keys: &mut [u64]) -> Option<f64> {
    keys.sort_unstable();
    // 2U accumulated in integers: every term is p * (2 * below + n_tied).
    let (mut twice_u, mut neg_below, mut positives) = (0u128, 0u64, 0u64);
    for group in keys.chunk_by(|a, b| label_key_score(*a) == label_key_score(*b)) {
        let p = group.iter().filter(|k| label_key_positive(**k)).count() as u64;
        let n = group.len() as u64 - p;
        twice_u += u128::from(p) * u128::from(2 * neg_below + n);
        neg_below += n;
        positives += p;
    }
    if positives == 0 || neg_below == 0 {
        return None;
    }
    Some(twice_u as f64 / (2.0 * positives as f64 * neg_below as f64))
}

/// Confusion counts and derived rates at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    pub fn_: u64,
    /// `tp / (tp + fp)`, or 0 when nothing is predicted positive.
    pub precision: f64,
    /// `tp / (tp + fn)`, or 0 when there are no positives.
    pub recall: f64,
    /// `2tp / (2tp + fp + fn)`, or 0 when that denominator is 0.
    pub f1: f64,
}

impl Confusion {
    fn from_counts(tp: u64, fp: u64, tn: u64, fn_: u64) -> Self {
        Self {
            tp,
            fp,
            tn,
            fn_,
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
            f1: ratio(2 * tp, 2 * tp + fp + fn_),
        }
    }
}

/// `num / den`, defined as 0 for an empty denominator (scikit-learn's
/// `zero_division=0`), so degenerate thresholds rank as worst, not as NaN.
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Confusion matrix when predicting "anomalous" for `score >= threshold`.
///
/// The inclusive comparison makes a threshold taken from
/// [`best_f1_threshold`] (which is itself one of the scores) flag the sample
/// it came from. A NaN score never compares `>=`, so it counts as predicted
/// normal.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn f1_at(scores: &[f32], labels: &[bool], threshold: f32) -> Confusion {
    assert_eq!(scores.len(), labels.len(), "f1_at: scores/labels length mismatch");
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for (&score, &label) in scores.iter().zip(labels) {
        match (score >= threshold, label) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    Confusion::from_counts(tp, fp, tn, fn_)
}

/// Threshold (one of the scores) that maximises F1 under the `>=` rule of
/// [`f1_at`], with that F1.
///
/// Every distinct score is tried. When several thresholds reach the same F1
/// (compared exactly, as fractions) the highest one wins: it flags the fewest
/// samples, which is the conservative choice for an alarm threshold.
///
/// Returns `None` when there are no positives (F1 is 0 everywhere), the input
/// is empty, or a score is NaN.
///
/// # Panics
/// If `scores` and `labels` differ in length.
pub fn best_f1_threshold(scores: &[f32], labels: &[bool]) -> Option<(f32, f64)> {
    assert_eq!(scores.len(), labels.len(), "best_f1_threshold: length mismatch");
    let pairs = scores.iter().copied().zip(labels.iter().copied());
    let mut keys = label_keys(pairs, scores.len())?;
    keys.sort_unstable();
    let positives = labels.iter().filter(|&&l| l).count() as u64;
    if positives == 0 {
        return None;
    }
    // Sweep from the highest score down; F1 = 2tp / (tp + fp + positives).
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut best: Option<(u64, u64, u64)> = None; // (score key, num, den)
    for group in keys.chunk_by(|a, b| label_key_score(*a) == label_key_score(*b)).rev() {
        let p = group.iter().filter(|k| label_key_positive(**k)).count() as u64;
        tp += p;
        fp += group.len() as u64 - p;
        let (num, den) = (2 * tp, tp + fp + positives);
        // Strictly greater (exact fraction compare): ties keep the higher
        // threshold found earlier in this descending sweep.
        let better = match best {
            None => true,
            Some((_, bn, bd)) => u128::from(num) * u128::from(bd) > u128::from(bn) * u128::from(den),
        };
        if better {
            best = Some((label_key_score(group[0]), num, den));
        }
    }
    best.map(|(key, num, den)| (score_from_bits(key as u32), num as f64 / den as f64))
}

/// The `q`-quantile of `values` with linear interpolation between order
/// statistics — numpy's default (`method="linear"`), so calibration numbers
/// can be cross-checked against Python tooling.
///
/// Runs in expected O(n) via selection rather than a full sort. Returns `None`
/// for empty input, `q` outside `[0, 1]`, or any NaN value.
pub fn quantile(values: &[f32], q: f64) -> Option<f64> {
    if values.is_empty() || !(0.0..=1.0).contains(&q) || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut sorted = values.to_vec();
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let t = pos - lo as f64;
    let (_, &mut a, upper) = sorted.select_nth_unstable_by(lo, f32::total_cmp);
    let a = f64::from(a);
    // The next order statistic is the minimum of the part above `lo`.
    let b = upper.iter().copied().min_by(f32::total_cmp).map_or(a, f64::from);
    Some(numpy_lerp(a, b, t))
}

/// numpy's `_lerp`: evaluates from the nearer end so `t == 1` yields `b`
/// exactly and results match numpy to the last bit.
fn numpy_lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Area under the per-region-overlap (PRO) curve up to `fpr_limit`,
/// normalised by `fpr_limit` so a perfect detector scores 1.0.
///
/// Follows the MVTec AD definition (also anomalib's): ground-truth regions
/// are the 8-connected components of the masks, taken over all images. For a
/// threshold `t` (pixels with score `>= t` are predicted anomalous):
/// PRO = mean over regions of (predicted pixels in region / region area), and
/// FPR = predicted pixels outside all regions / all such pixels. Every
/// distinct score is a threshold; the curve starts at (0, 0), tied scores
/// become straight segments, and the trapezoid integral is cut at
/// `fpr_limit` with the PRO interpolated linearly there.
///
/// Returns `None` if there is no anomalous region, no normal pixel, a NaN
/// score, or `fpr_limit` is not in `(0, 1]`.
///
/// # Panics
/// If the slices differ in length or a map's shape differs from its mask's.
pub fn aupro(maps: &[ArrayView2<f32>], masks: &[ArrayView2<bool>], fpr_limit: f64) -> Option<f64> {
    let total = checked_pixel_count(maps, masks);
    if !(fpr_limit > 0.0 && fpr_limit <= 1.0) {
        return None;
    }
    let (mut keys, areas) = region_keys(maps, masks, total)?;
    let negatives = keys.iter().filter(|&&k| k as u32 == 0).count() as u64;
    if areas.is_empty() || negatives == 0 {
        return None;
    }
    keys.sort_unstable();
    let curve = pro_curve(&keys, &areas, negatives, fpr_limit);
    Some(area_up_to(&curve, fpr_limit) / fpr_limit)
}

/// Packs every pixel as `score << 32 | region id` (id 0 = normal pixel) and
/// returns the keys with the area of each region (index = id - 1).
fn region_keys(
    maps: &[ArrayView2<f32>],
    masks: &[ArrayView2<bool>],
    total: usize,
) -> Option<(Vec<u64>, Vec<u64>)> {
    let mut keys = Vec::with_capacity(total);
    let mut areas = Vec::new();
    for (map, mask) in maps.iter().zip(masks) {
        let regions = label_regions(*mask, areas.len() as u32 + 1);
        areas.extend_from_slice(&regions.areas);
        for (&score, &id) in map.iter().zip(&regions.ids) {
            keys.push((u64::from(ordered_bits(score)?) << 32) | u64::from(id));
        }
    }
    Some((keys, areas))
}

/// Sweeps thresholds from the highest score down and returns (FPR, PRO)
/// points, stopping at the first point at or beyond `fpr_limit`.
///
/// Each pixel is visited once: a normal pixel bumps the false-positive count,
/// a region pixel adds `1 / area` to the running sum of per-region overlaps.
fn pro_curve(keys: &[u64], areas: &[u64], negatives: u64, fpr_limit: f64) -> Vec<(f64, f64)> {
    let inv_area: Vec<f64> = areas.iter().map(|&a| 1.0 / a as f64).collect();
    let regions = areas.len() as f64;
    let mut curve = vec![(0.0, 0.0)];
    let (mut fp, mut overlap_sum) = (0u64, 0.0f64);
    for group in keys.chunk_by(|a, b| a >> 32 == b >> 32).rev() {
        for &key in group {
            match key as u32 {
                0 => fp += 1,
                id => overlap_sum += inv_area[id as usize - 1],
            }
        }
        let fpr = fp as f64 / negatives as f64;
        curve.push((fpr, (overlap_sum / regions).min(1.0)));
        if fpr >= fpr_limit {
            break;
        }
    }
    curve
}

/// Trapezoid area under a curve with non-decreasing x, from x = 0 to `limit`,
/// interpolating y linearly at `limit` when it falls inside a segment.
fn area_up_to(curve: &[(f64, f64)], limit: f64) -> f64 {
    let mut area = 0.0;
    for pair in curve.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if x1 <= limit {
            area += (x1 - x0) * (y0 + y1) / 2.0;
            continue;
        }
        if x0 < limit {
            let y_at = y0 + (y1 - y0) * (limit - x0) / (x1 - x0);
            area += (limit - x0) * (y0 + y_at) / 2.0;
        }
        break;
    }
    area
}

/// Total pixel count of map/mask pairs after checking they line up.
fn checked_pixel_count(maps: &[ArrayView2<f32>], masks: &[ArrayView2<bool>]) -> usize {
    assert_eq!(maps.len(), masks.len(), "maps/masks count mismatch");
    maps.iter()
        .zip(masks)
        .map(|(map, mask)| {
            assert_eq!(map.dim(), mask.dim(), "map/mask shape mismatch");
            map.len()
        })
        .sum()
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
