//! From the K nearest squared distances to a per-pixel anomaly map and an image score
//! (cfa.md §5).

use ndarray::{Array2, ArrayView2, Axis};

use super::blur::GaussianBlur;
use super::resize::resize_bilinear;

/// Patch scores `[h, w]` from each patch's K smallest squared distances (`[h·w, K]`, ascending):
/// `a = softmin(sqrt(d))[0] · sqrt(d_1)`.
pub fn patch_scores(topk: ArrayView2<f32>, h: usize, w: usize) -> Array2<f32> {
    let scores: Vec<f32> = topk
        .axis_iter(Axis(0))
        .map(|d| {
            let s1 = d[0].max(0.0).sqrt();
            // softmin's first weight, shifted by s1 so the exponentials cannot overflow.
            let denom: f32 = d.iter().map(|&dk| (-(dk.max(0.0).sqrt() - s1)).exp()).sum();
            s1 / denom
        })
        .collect();
    Array2::from_shape_vec((h, w), scores).expect("topk has h·w rows")
}

/// The anomaly map at image size: patch scores upsampled bilinearly, then blurred.
pub fn anomaly_map(patch: ArrayView2<f32>, height: usize, width: usize, blur: &GaussianBlur) -> Array2<f32> {
    let (h, w) = patch.dim();
    let planar = patch.into_shape_with_order((1, h, w)).expect("contiguous patch map");
    let up = resize_bilinear(planar, height, width);
    let up = up.index_axis(Axis(0), 0);
    blur.apply(up)
}

/// The image score: the map's maximum.
pub fn image_score(map: ArrayView2<f32>) -> f32 {
    map.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn patch_score_weights_the_nearest_by_softmin() {
        let topk = array![[4.0f32, 4.0, 4.0], [0.0, 100.0, 100.0]];
        let a = patch_scores(topk.view(), 1, 2);
        // Equal distances: weight 1/3 of sqrt(4) = 2.
        assert!((a[(0, 0)] - 2.0 / 3.0).abs() < 1e-6);
        // A perfect match scores 0 whatever the others are.
        assert_eq!(a[(0, 1)], 0.0);
    }
}
