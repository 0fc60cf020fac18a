//! Heatmap overlays: the anomaly map in colour over the inspected image, for operators and
//! evidence files.

use image::{Rgb, RgbImage};
use ndarray::ArrayView2;

/// Maps `t` in [0, 1] to a blue → cyan → yellow → red ramp ("jet"), the colouring inspection
/// tools conventionally use.
pub fn jet(t: f32) -> Rgb<u8> {
    let t = t.clamp(0.0, 1.0);
    let channel = |centre: f32| ((1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb([channel(3.0), channel(2.0), channel(1.0)])
}

/// Blends the colour-mapped `map` (values scaled by `1 / vmax`) over `image` at `alpha`.
/// `image` and `map` must have the same size.
pub fn overlay(image: &RgbImage, map: ArrayView2<f32>, vmax: f32, alpha: f32) -> RgbImage {
    let (h, w) = map.dim();
    assert_eq!((image.width() as usize, image.height() as usize), (w, h), "map matches the image");
    let scale = if vmax > 0.0 { 1.0 / vmax } else { 0.0 };
    let mut out = image.clone();
    for (x, y, px) in out.enumerate_pixels_mut() {
        let colour = jet(map[(y as usize, x as usize)] * scale);
        for c in 0..3 {
            px[c] = (px[c] as f32 * (1.0 - alpha) + colour[c] as f32 * alpha).round() as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_runs_blue_to_red() {
        assert_eq!(jet(0.0), Rgb([0, 0, 128]));
        assert_eq!(jet(1.0), Rgb([128, 0, 0]));
        assert_eq!(jet(0.5), Rgb([128, 255, 128]));
    }

    #[test]
    fn hot_pixels_turn_red_and_cold_ones_blue() {
        let image = RgbImage::from_pixel(2, 1, Rgb([100, 100, 100]));
        let map = ndarray::array![[0.0f32, 2.0]];
        let out = overlay(&image, map.view(), 2.0, 0.5);
        let (cold, hot) = (out.get_pixel(0, 0), out.get_pixel(1, 0));
        assert!(cold[2] > cold[0] && hot[0] > hot[2], "{cold:?} {hot:?}");
    }
}
