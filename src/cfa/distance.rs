//! Squared L2 distances between patch features and memory-bank centres, and their K smallest
//! (cfa.md §4). The CPU path used by training and tests; inference runs the same math inside
//! the generated ONNX graph.

use ndarray::{Array1, Array2, ArrayView2, Axis};

/// `D[p, n] = |phi_p|² + |c_n|² - 2·phi_p·c_n`, clamped at 0.
///
/// `phi` is `[P, C']`, `bank` is `[C', N]` (the bundle's layout). Rounding makes near-identical
/// pairs slightly negative; clamping keeps the later square root finite.
pub fn squared_distances(phi: ArrayView2<f32>, bank: ArrayView2<f32>) -> Array2<f32> {
    let phi_sq: Array1<f32> = phi.map_axis(Axis(1), |r| r.dot(&r));
    let bank_sq: Array1<f32> = bank.map_axis(Axis(0), |c| c.dot(&c));
    let mut d = phi.dot(&bank);
    for (mut row, p) in d.axis_iter_mut(Axis(0)).zip(phi_sq.iter()) {
        for (v, c) in row.iter_mut().zip(bank_sq.iter()) {
            *v = (p + c - 2.0 * *v).max(0.0);
        }
    }
    d
}

/// The `k` smallest values of `row` with their column indices, ascending.
pub fn smallest_k(row: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in row.iter().enumerate() {
        if best.len() == k && v >= best[k - 1].1 {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b <= v);
        best.insert(at, (i, v));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn distances_are_squared_euclidean_and_never_negative() {
        let phi = array![[0.0f32, 0.0], [3.0, 4.0]];
        let bank = array![[0.0f32, 3.0], [0.0, 4.0]]; // centres (0,0) and (3,4)
        let d = squared_distances(phi.view(), bank.view());
        assert_eq!(d, array![[0.0, 25.0], [25.0, 0.0]]);
        let same = array![[1e3f32, 1e-3]];
        let d = squared_distances(same.view(), same.t());
        assert!(d[(0, 0)] >= 0.0);
    }

    #[test]
    fn smallest_k_is_sorted_and_stable() {
        let row = [5.0f32, 1.0, 3.0, 1.0, 0.5, 9.0];
        assert_eq!(smallest_k(&row, 3), vec![(4, 0.5), (1, 1.0), (3, 1.0)]);
        assert_eq!(smallest_k(&row, 10).len(), 6);
    }
}
