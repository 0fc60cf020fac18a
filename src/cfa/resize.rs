//! Bilinear resizing with PyTorch's `align_corners=False` sampling, on planar `[C, H, W]` data.
//!
//! Both the descriptor (coarse feature maps brought to stride 4) and the anomaly map (patch
//! scores brought to image size) use it, and both must match PyTorch to 1e-4.

use ndarray::{Array3, ArrayView3};

/// One output coordinate's two source taps and the weight of the second.
#[derive(Debug, Clone, Copy)]
struct Tap {
    lo: usize,
    hi: usize,
    frac: f32,
}

/// Source taps for resizing an axis of `input` samples to `output` samples.
fn taps(input: usize, output: usize) -> Vec<Tap> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            // PyTorch clamps negative source coordinates to 0 (align_corners=False).
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let lo = (src.floor() as usize).min(input - 1);
            let hi = (lo + 1).min(input - 1);
            Tap { lo, hi, frac: src - lo as f32 }
        })
        .collect()
}

/// Resizes every channel of `input` to `(height, width)`.
pub fn resize_bilinear(input: ArrayView3<f32>, height: usize, width: usize) -> Array3<f32> {
    let (channels, in_h, in_w) = input.dim();
    if (in_h, in_w) == (height, width) {
        return input.to_owned();
    }
    let rows = taps(in_h, height);
    let cols = taps(in_w, width);
    let mut out = Array3::<f32>::zeros((channels, height, width));
    let mut row_buf = vec![0.0f32; in_w];
    for c in 0..channels {
        let plane = input.index_axis(ndarray::Axis(0), c);
        for (y, r) in rows.iter().enumerate() {
            // Blend the two source rows first, then sample columns from the blend.
            for (x, v) in row_buf.iter_mut().enumerate() {
                let a = plane[(r.lo, x)];
                let b = plane[(r.hi, x)];
                *v = a + (b - a) * r.frac;
            }
            for (x, t) in cols.iter().enumerate() {
                let a = row_buf[t.lo];
                let b = row_buf[t.hi];
                out[(c, y, x)] = a + (b - a) * t.frac;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn upsampling_two_by_two_matches_pytorch() {
        // torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
        let x = array![[[1.0f32, 2.0], [3.0, 4.0]]];
        let y = resize_bilinear(x.view(), 4, 4);
        let expected =
            [[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]];
        for (r, row) in expected.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                assert!((y[(0, r, c)] - v).abs() < 1e-6, "({r},{c}) {} != {v}", y[(0, r, c)]);
            }
        }
    }

    #[test]
    fn same_size_is_identity_and_non_square_works() {
        let x = Array3::from_shape_fn((2, 3, 5), |(c, y, x)| (c * 100 + y * 10 + x) as f32);
        assert_eq!(resize_bilinear(x.view(), 3, 5), x);
        let y = resize_bilinear(x.view(), 6, 10);
        assert_eq!(y.dim(), (2, 6, 10));
        // Corners replicate the input corners under align_corners=False.
        assert_eq!(y[(1, 5, 9)], x[(1, 2, 4)]);
    }
}
