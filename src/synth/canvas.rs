//! Floating-point RGB canvas and soft-edged defect coverage.
//!
//! Rendering happens in `f32` and is quantised once at the end, so blending a
//! defect onto a good image leaves every pixel outside the defect mask with
//! exactly the same float, hence exactly the same byte, as the good image.

use image::{GrayImage, Luma, Rgb, RgbImage};

use super::noise::{mix, smoothstep};

/// RGB image with channels in `[0, 1]` (values outside are clamped only when
/// quantising). The procedural scenes are square; photographs need not be.
#[derive(Debug, Clone)]
pub(crate) struct Canvas {
    pub width: u32,
    pub height: u32,
    pub px: Vec<[f32; 3]>,
}

impl Canvas {
    /// Renders `shade(nx, ny)` at every pixel centre, where `nx`, `ny` are
    /// normalised to `[0, 1)` so patterns keep their look at any resolution.
    pub fn from_fn(size: u32, mut shade: impl FnMut(f32, f32) -> [f32; 3]) -> Self {
        let inv = 1.0 / size as f32;
        let mut px = Vec::with_capacity((size * size) as usize);
        for y in 0..size {
            let ny = (y as f32 + 0.5) * inv;
            for x in 0..size {
                px.push(shade((x as f32 + 0.5) * inv, ny));
            }
        }
        Self { width: size, height: size, px }
    }

    /// The pixels of an 8-bit image, scaled to `[0, 1]`.
    pub fn from_rgb(img: &RgbImage) -> Self {
        let px = img.pixels().map(|p| p.0.map(|v| v as f32 / 255.0)).collect();
        Self { width: img.width(), height: img.height(), px }
    }

    /// The pixel at integer coordinates, clamped to the image.
    pub fn at(&self, x: i64, y: i64) -> [f32; 3] {
        let x = x.clamp(0, self.width as i64 - 1) as usize;
        let y = y.clamp(0, self.height as i64 - 1) as usize;
        self.px[y * self.width as usize + x]
    }

    /// Quantises to 8-bit RGB with round-half-up.
    pub fn to_rgb(&self) -> RgbImage {
        let quant = |v: f32| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
        let mut img = RgbImage::new(self.width, self.height);
        for (dst, src) in img.pixels_mut().zip(&self.px) {
            *dst = Rgb([quant(src[0]), quant(src[1]), quant(src[2])]);
        }
        img
    }
}

/// Smallest blend weight inside a defect. Soft edges fade from this value at
/// the mask border to 1 in the interior; keeping it well above 0 guarantees
/// that every mask pixel visibly changes, so the mask matches what is drawn.
pub(crate) const MIN_ALPHA: f32 = 0.5;

/// Per-pixel defect blend weight: 0 outside the mask, `[MIN_ALPHA, 1]` inside.
#[derive(Debug, Clone)]
pub(crate) struct Coverage {
    pub width: u32,
    pub height: u32,
    pub alpha: Vec<f32>,
}

impl Coverage {
    /// Coverage of the shape `sdf < 0`, with `sdf` a signed distance in
    /// pixels evaluated at pixel centres; the weight ramps up over `edge`
    /// pixels inward from the border.
    pub fn from_sdf(size: u32, edge: f32, sdf: impl Fn(f32, f32) -> f32) -> Self {
        Self::from_sdf_rect(size, size, edge, sdf)
    }

    /// [`Coverage::from_sdf`] on a `width`×`height` image.
    pub fn from_sdf_rect(width: u32, height: u32, edge: f32, sdf: impl Fn(f32, f32) -> f32) -> Self {
        let mut alpha = Vec::with_capacity((width * height) as usize);
        for y in 0..height {
            for x in 0..width {
                let d = sdf(x as f32 + 0.5, y as f32 + 0.5);
                alpha.push(if d < 0.0 {
                    MIN_ALPHA + (1.0 - MIN_ALPHA) * smoothstep(0.0, edge, -d)
                } else {
                    0.0
                });
            }
        }
        Self { width, height, alpha }
    }

    /// Drops coverage wherever `keep(x, y)` is false at the pixel centre,
    /// e.g. to confine a defect to the part it sits on.
    pub fn clip(&mut self, keep: impl Fn(f32, f32) -> bool) {
        let width = self.width as usize;
        for (i, a) in self.alpha.iter_mut().enumerate() {
            if *a > 0.0 && !keep((i % width) as f32 + 0.5, (i / width) as f32 + 0.5) {
                *a = 0.0;
            }
        }
    }

    /// Fraction of the image covered by the mask.
    pub fn area_fraction(&self) -> f32 {
        let covered = self.alpha.iter().filter(|&&a| a > 0.0).count();
        covered as f32 / self.alpha.len().max(1) as f32
    }

    /// MVTec-style mask: 255 where defective, 0 elsewhere.
    pub fn to_mask(&self) -> GrayImage {
        let mut mask = GrayImage::new(self.width, self.height);
        for (dst, &a) in mask.pixels_mut().zip(&self.alpha) {
            *dst = Luma([if a > 0.0 { 255 } else { 0 }]);
        }
        mask
    }

    /// Blends `paint(x, y, base)` into `canvas` with this coverage; pixels
    /// outside the mask are not touched at all.
    pub fn blend_into(&self, canvas: &mut Canvas, paint: &dyn Fn(f32, f32, [f32; 3]) -> [f32; 3]) {
        let width = self.width as usize;
        for (i, (dst, &a)) in canvas.px.iter_mut().zip(&self.alpha).enumerate() {
            if a > 0.0 {
                let (x, y) = ((i % width) as f32 + 0.5, (i / width) as f32 + 0.5);
                *dst = mix(*dst, paint(x, y, *dst), a);
            }
        }
    }
}
