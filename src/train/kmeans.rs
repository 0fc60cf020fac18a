//! k-means with k-means++ seeding (cfa.md §3: memory-bank compression when gamma_c > 1, as
//! anomalib does with scikit-learn's KMeans).

use ndarray::{Array2, ArrayView2, Axis};

use crate::util::rng::SplitMix64;

/// Lloyd iterations stop here at the latest (scikit-learn's limit in anomalib).
pub const MAX_ITERATIONS: usize = 3000;

/// Clusters the rows of `points` into `k` centres, deterministically from `seed`.
/// Stops when no assignment changes.
pub fn kmeans(points: ArrayView2<f32>, k: usize, seed: u64) -> Array2<f32> {
    let n = points.nrows();
    assert!(k >= 1 && k <= n, "1 <= k <= points");
    let mut centres = seed_plus_plus(points, k, seed);
    let mut assignment = vec![usize::MAX; n];
    for _ in 0..MAX_ITERATIONS {
        let changed = assign(points, centres.view(), &mut assignment);
        update(points, &assignment, &mut centres);
        if !changed {
            break;
        }
    }
    centres
}

fn squared(a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>) -> f32 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// k-means++: each new centre is drawn with probability proportional to its squared distance
/// from the nearest centre chosen so far.
fn seed_plus_plus(points: ArrayView2<f32>, k: usize, seed: u64) -> Array2<f32> {
    let mut rng = SplitMix64::new(seed);
    let n = points.nrows();
    let mut centres = Array2::<f32>::zeros((k, points.ncols()));
    centres.row_mut(0).assign(&points.row(rng.below(n)));
    let mut nearest: Vec<f32> = points.axis_iter(Axis(0)).map(|p| squared(p, centres.row(0))).collect();
    for c in 1..k {
        let total: f64 = nearest.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 {
            let mut target = rng.unit() as f64 * total;
            nearest.iter().position(|&d| {
                target -= d as f64;
                target <= 0.0
            })
        } else {
            None
        };
        let chosen = pick.unwrap_or_else(|| rng.below(n));
        centres.row_mut(c).assign(&points.row(chosen));
        for (d, p) in nearest.iter_mut().zip(points.axis_iter(Axis(0))) {
            *d = d.min(squared(p, centres.row(c)));
        }
    }
    centres
}

/// Assigns each point to its nearest centre; returns whether any assignment changed.
fn assign(points: ArrayView2<f32>, centres: ArrayView2<f32>, assignment: &mut [usize]) -> bool {
    let mut changed = false;
    for (p, slot) in points.axis_iter(Axis(0)).zip(assignment.iter_mut()) {
        let best = centres
            .axis_iter(Axis(0))
            .map(|c| squared(p, c))
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i)
            .expect("k >= 1");
        changed |= *slot != best;
        *slot = best;
    }
    changed
}

/// Moves each centre to the mean of its points; an empty cluster keeps its centre.
fn update(points: ArrayView2<f32>, assignment: &[usize], centres: &mut Array2<f32>) {
    let mut sums = Array2::<f32>::zeros(centres.dim());
    let mut counts = vec![0usize; centres.nrows()];
    for (p, &a) in points.axis_iter(Axis(0)).zip(assignment) {
        sums.row_mut(a).scaled_add(1.0, &p);
        counts[a] += 1;
    }
    for (c, &count) in counts.iter().enumerate() {
        if count > 0 {
            centres.row_mut(c).assign(&(&sums.row(c) / count as f32));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_well_separated_clusters() {
        let mut rng = SplitMix64::new(5);
        let truth = [[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let points = Array2::from_shape_fn((90, 2), |(i, d)| truth[i % 3][d] + rng.unit() - 0.5);
        let centres = kmeans(points.view(), 3, 1);
        for t in truth {
            let closest =
                centres.axis_iter(Axis(0)).map(|c| squared(c, ndarray::aview1(&t))).fold(f32::MAX, f32::min);
            assert!(closest < 0.1, "no centre near {t:?}: {centres:?}");
        }
        assert_eq!(kmeans(points.view(), 3, 1), centres, "seeded");
    }
}
