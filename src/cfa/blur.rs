//! Separable Gaussian blur with reflect padding (kornia `filter2d` semantics), used to smooth
//! the upsampled anomaly map exactly as anomalib does.

use ndarray::{Array2, ArrayView2};

/// Kernel size anomalib derives from sigma: `2·int(4·sigma + 0.5) + 1` (33 for sigma 4).
pub fn kernel_size(sigma: f32) -> usize {
    2 * ((4.0 * sigma + 0.5) as usize) + 1
}

/// The normalised 1-D Gaussian kernel for `sigma`.
pub fn kernel(sigma: f32) -> Vec<f32> {
    let size = kernel_size(sigma);
    let centre = (size / 2) as f32;
    let raw: Vec<f32> = (0..size)
        .map(|i| {
            let x = i as f32 - centre;
            (-(x * x) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let sum: f32 = raw.iter().sum();
    raw.into_iter().map(|v| v / sum).collect()
}

/// Mirrors an index into `0..n` without repeating the edge sample (numpy/torch "reflect").
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// A blur prepared for one image size: kernel plus the reflected tap indices of each axis.
#[derive(Debug, Clone)]
pub struct GaussianBlur {
    kernel: Vec<f32>,
    sigma: f32,
}

impl GaussianBlur {
    pub fn new(sigma: f32) -> Self {
        GaussianBlur { kernel: kernel(sigma), sigma }
    }

    pub fn sigma(&self) -> f32 {
        self.sigma
    }

    /// Blurs `input`, writing rows then columns (two passes of a 1-D kernel).
    pub fn apply(&self, input: ArrayView2<f32>) -> Array2<f32> {
        let (h, w) = input.dim();
        let half = (self.kernel.len() / 2) as isize;
        let mut tmp = Array2::<f32>::zeros((h, w));
        let padded_w: Vec<usize> = (-half..w as isize + half).map(|i| reflect(i, w)).collect();
        // Each row is padded once, then every tap is a contiguous multiply-add over the row
        // (vectorised), instead of a gather per output pixel.
        let mut padded = vec![0.0f32; padded_w.len()];
        for y in 0..h {
            let row = input.row(y);
            for (p, &i) in padded.iter_mut().zip(&padded_w) {
                *p = row[i];
            }
            let out = tmp.row_mut(y).into_slice().expect("a new array's rows are contiguous");
            for (t, &k) in self.kernel.iter().enumerate() {
                for (o, &v) in out.iter_mut().zip(&padded[t..t + w]) {
                    *o += k * v;
                }
            }
        }
        // The vertical pass accumulates whole rows so the inner loop runs over contiguous memory.
        let mut out = Array2::<f32>::zeros((h, w));
        for y in 0..h {
            let mut acc = out.row_mut(y);
            for (t, k) in self.kernel.iter().enumerate() {
                let src = reflect(y as isize + t as isize - half, h);
                acc.scaled_add(*k, &tmp.row(src));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_size_follows_anomalib() {
        assert_eq!(kernel_size(4.0), 33);
        assert_eq!(kernel_size(1.0), 9);
        let k = kernel(4.0);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(k[16] > k[15] && (k[15] - k[17]).abs() < 1e-9);
    }

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let idx: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(idx, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn constant_image_stays_constant_and_impulse_spreads_symmetrically() {
        let blur = GaussianBlur::new(1.0);
        let flat = Array2::from_elem((12, 7), 2.5f32);
        assert!(blur.apply(flat.view()).iter().all(|v| (v - 2.5).abs() < 1e-5));
        let mut impulse = Array2::<f32>::zeros((11, 11));
        impulse[(5, 5)] = 1.0;
        let out = blur.apply(impulse.view());
        assert!((out.sum() - 1.0).abs() < 1e-5);
        assert!((out[(4, 5)] - out[(6, 5)]).abs() < 1e-7 && (out[(5, 4)] - out[(4, 5)]).abs() < 1e-7);
    }
}
