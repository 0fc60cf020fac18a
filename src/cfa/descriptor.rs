//! The CFA descriptor ("target-oriented features", cfa.md §2) computed on the CPU.
//!
//! Inference runs the generated ONNX graph instead ([`super::graph`]); this reference is what
//! training differentiates through and what the graph is tested against.

use ndarray::{s, Array1, Array2, Array3, ArrayView3, Axis};

use super::resize::resize_bilinear;

/// Descriptor parameters: a 1×1 convolution over `[features…, row, col]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DescriptorWeights {
    /// `[C', C + 2]`: input channels are f1, f2, f3, then the row and column coordinates.
    pub weight: Array2<f32>,
    /// `[C']`.
    pub bias: Array1<f32>,
}

impl DescriptorWeights {
    /// Output channels C'.
    pub fn out_channels(&self) -> usize {
        self.weight.nrows()
    }

    /// Input channels C + 2 (features plus the two coordinates).
    pub fn in_channels(&self) -> usize {
        self.weight.ncols()
    }

    /// PyTorch Conv2d's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), seeded.
    pub fn init(in_features: usize, out_channels: usize, seed: u64) -> Self {
        let fan_in = in_features + 2;
        let bound = 1.0 / (fan_in as f32).sqrt();
        let mut rng = crate::util::rng::SplitMix64::new(seed);
        let mut uniform = || (rng.unit() * 2.0 - 1.0) * bound;
        let weight = Array2::from_shape_simple_fn((out_channels, fan_in), &mut uniform);
        let bias = Array1::from_shape_simple_fn(out_channels, &mut uniform);
        DescriptorWeights { weight, bias }
    }
}

/// 3×3 average pool, stride 1, zero padding 1, divisor always 9 (`count_include_pad=True`).
pub fn avg_pool3x3(input: ArrayView3<f32>) -> Array3<f32> {
    let (c, h, w) = input.dim();
    let mut out = Array3::<f32>::zeros((c, h, w));
    for ch in 0..c {
        let plane = input.index_axis(Axis(0), ch);
        for y in 0..h {
            let (y0, y1) = (y.saturating_sub(1), (y + 2).min(h));
            for x in 0..w {
                let (x0, x1) = (x.saturating_sub(1), (x + 2).min(w));
                out[(ch, y, x)] = plane.slice(s![y0..y1, x0..x1]).sum() / 9.0;
            }
        }
    }
    out
}

/// The descriptor's input for one image: pooled features at f1's resolution, then the row and
/// column coordinates in [-1, 1], flattened to `[C + 2, h·w]`.
pub fn descriptor_input(f1: ArrayView3<f32>, f2: ArrayView3<f32>, f3: ArrayView3<f32>) -> Array2<f32> {
    let (_, h, w) = f1.dim();
    let levels = [
        avg_pool3x3(f1),
        resize_bilinear(avg_pool3x3(f2).view(), h, w),
        resize_bilinear(avg_pool3x3(f3).view(), h, w),
    ];
    let channels: usize = levels.iter().map(|l| l.dim().0).sum();
    let mut x = Array2::<f32>::zeros((channels + 2, h * w));
    let mut row = 0;
    for level in &levels {
        let c = level.dim().0;
        let flat = level.view().into_shape_with_order((c, h * w)).expect("contiguous level");
        x.slice_mut(s![row..row + c, ..]).assign(&flat);
        row += c;
    }
    for p in 0..h * w {
        x[(channels, p)] = coordinate(p / w, h);
        x[(channels + 1, p)] = coordinate(p % w, w);
    }
    x
}

/// `2·i/(n-1) - 1`, with a single row or column at 0 rather than dividing by zero.
pub fn coordinate(i: usize, n: usize) -> f32 {
    if n <= 1 {
        return -1.0;
    }
    2.0 * i as f32 / (n - 1) as f32 - 1.0
}

/// Applies the 1×1 convolution: `phi = W·x + b`, returned as `[h·w, C']` (patch-major, the
/// layout the distance computation wants).
pub fn apply(weights: &DescriptorWeights, x: &Array2<f32>) -> Array2<f32> {
    let mut phi = x.t().dot(&weights.weight.t());
    phi += &weights.bias;
    phi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_divides_by_nine_at_borders() {
        let x = Array3::from_elem((1, 3, 3), 9.0f32);
        let p = avg_pool3x3(x.view());
        assert_eq!(p[(0, 1, 1)], 9.0);
        assert_eq!(p[(0, 0, 0)], 4.0);
        assert_eq!(p[(0, 0, 1)], 6.0);
    }

    #[test]
    fn coordinates_span_minus_one_to_one() {
        assert_eq!(coordinate(0, 16), -1.0);
        assert_eq!(coordinate(15, 16), 1.0);
        assert_eq!(coordinate(0, 1), -1.0);
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let a = DescriptorWeights::init(176, 176, 7);
        let b = DescriptorWeights::init(176, 176, 7);
        let c = DescriptorWeights::init(176, 176, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let bound = 1.0 / 178f32.sqrt();
        assert!(a.weight.iter().chain(a.bias.iter()).all(|v| v.abs() <= bound));
        assert_eq!(a.weight.dim(), (176, 178));
    }
}
