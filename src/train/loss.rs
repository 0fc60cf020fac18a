//! The CFA training loss and its gradient (cfa.md §4), from each patch's K+J smallest squared
//! distances.
//!
//! `L_att` pulls the K nearest centres inside the hypersphere of radius r; `L_rep` pushes the
//! hard negatives (ranks K+1..K+J) out past r² - 0.1. The authors' code and anomalib slice
//! `[:, :, J:]`, which only equals ranks K+1..K+J when K == J; here the ranks are explicit.

/// Margin of the repulsion term (the paper's alpha).
pub const REPULSION_MARGIN: f32 = 0.1;
/// Loss scale used by the paper and anomalib.
pub const LOSS_SCALE: f32 = 1000.0;

/// Loss of a batch and its gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct LossGrad {
    pub loss: f32,
    /// `dloss/dd` for each patch's K+J nearest distances, row-major `[patches, K+J]`.
    pub grad: Vec<f32>,
    /// `dloss/dr`.
    pub grad_radius: f32,
}

/// Computes the loss from `nearest`, each patch's K+J smallest squared distances in ascending
/// order, row-major `[patches, K+J]`.
pub fn cfa_loss(nearest: &[f32], k: usize, j: usize, radius: f32) -> LossGrad {
    let width = k + j;
    assert!(width > 0 && nearest.len().is_multiple_of(width), "rows of K+J distances");
    let patches = nearest.len() / width;
    let r2 = radius * radius;
    let att_weight = LOSS_SCALE / (patches * k) as f32;
    let rep_weight = if j > 0 { LOSS_SCALE / (patches * j) as f32 } else { 0.0 };
    let (mut att, mut rep, mut grad_r2) = (0.0f64, 0.0f64, 0.0f64);
    let mut grad = vec![0.0f32; nearest.len()];
    for (row, g) in nearest.chunks_exact(width).zip(grad.chunks_exact_mut(width)) {
        for rank in 0..k {
            let excess = row[rank] - r2;
            if excess > 0.0 {
                att += excess as f64;
                g[rank] = att_weight;
                grad_r2 -= att_weight as f64;
            }
        }
        for rank in k..width {
            let deficit = r2 - row[rank] - REPULSION_MARGIN;
            if deficit > 0.0 {
                rep += deficit as f64;
                g[rank] = -rep_weight;
                grad_r2 += rep_weight as f64;
            }
        }
    }
    let loss = att as f32 * att_weight + rep as f32 * rep_weight;
    LossGrad { loss, grad, grad_radius: (grad_r2 * 2.0 * radius as f64) as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_loss_and_gradient() {
        // One patch, K = 1, J = 1, r = 1: d = [3, 0.5].
        // L_att = 3 - 1 = 2; L_rep = max(0, 1 - 0.5 - 0.1) = 0.4; loss = 1000 · 2.4.
        let lg = cfa_loss(&[3.0, 0.5], 1, 1, 1.0);
        assert!((lg.loss - 2400.0).abs() < 1e-3, "{}", lg.loss);
        assert_eq!(lg.grad, vec![1000.0, -1000.0]);
        // d/dr of (d1 - r²) + (r² - d2 - 0.1) = -2r + 2r = 0.
        assert!(lg.grad_radius.abs() < 1e-3);
    }

    #[test]
    fn inactive_terms_contribute_nothing() {
        let lg = cfa_loss(&[0.1, 5.0], 1, 1, 1.0);
        assert_eq!(lg.loss, 0.0);
        assert_eq!(lg.grad, vec![0.0, 0.0]);
    }

    #[test]
    fn hard_negatives_are_ranks_after_k_even_when_k_differs_from_j() {
        // K = 2, J = 1, r = 2 (r² = 4): ranks 1..2 attract, rank 3 repels.
        let lg = cfa_loss(&[1.0, 5.0, 3.0], 2, 1, 2.0);
        // L_att = mean(0, 1) over K = 2 → 0.5; L_rep = 4 - 3 - 0.1 = 0.9.
        assert!((lg.loss - 1000.0 * (0.5 + 0.9)).abs() < 1e-2, "{}", lg.loss);
        assert_eq!(lg.grad, vec![0.0, 500.0, -1000.0]);
    }
}
