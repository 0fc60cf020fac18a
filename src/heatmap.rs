//! Heatmap overlays: the anomaly map in colour over the inspected image, for operators and
//! evidence files.

use image::{Rgb, RgbImage};
use ndarray::ArrayView2;

use crate::flow::frame::Region;
use crate::view::Rect;

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

/// The frame at its own resolution with the ROI's `map` (ROI-sized) overlaid where it was
/// inspected, and `regions` (sensor pixels) boxed in `colour`: what evidence, `score
/// --heatmap` and the live view show an operator.
pub fn annotate(
    frame: &RgbImage,
    roi: Rect,
    map: ArrayView2<f32>,
    vmax: f32,
    alpha: f32,
    regions: &[Region],
    colour: Rgb<u8>,
) -> RgbImage {
    let mut out = frame.clone();
    let inside = roi.x + roi.width <= frame.width() && roi.y + roi.height <= frame.height();
    if inside && map.dim() == (roi.height as usize, roi.width as usize) {
        let cut = image::imageops::crop_imm(frame, roi.x, roi.y, roi.width, roi.height).to_image();
        image::imageops::replace(&mut out, &overlay(&cut, map, vmax, alpha), roi.x.into(), roi.y.into());
    }
    for r in regions {
        draw_box(&mut out, r, colour);
    }
    out
}

/// Box colour of a region on an NG frame, and on any other.
pub const NG_COLOUR: Rgb<u8> = Rgb([255, 32, 32]);
pub const REGION_COLOUR: Rgb<u8> = Rgb([255, 220, 0]);

/// A rectangle around `r`, clipped to the image: 2 pixels wide, plus one more per 1000 px of
/// the image's longer side so it stays visible on a 12 MP frame.
pub fn draw_box(image: &mut RgbImage, r: &Region, colour: Rgb<u8>) {
    let (w, h) = image.dimensions();
    if w == 0 || h == 0 {
        return;
    }
    let (x0, y0) = (r.x.min(w - 1), r.y.min(h - 1));
    let (x1, y1) = ((r.x + r.w).saturating_sub(1).min(w - 1), (r.y + r.h).saturating_sub(1).min(h - 1));
    for t in 0..2 + w.max(h) / 1000 {
        for x in x0..=x1 {
            image.put_pixel(x, (y0 + t).min(h - 1), colour);
            image.put_pixel(x, y1.saturating_sub(t), colour);
        }
        for y in y0..=y1 {
            image.put_pixel((x0 + t).min(w - 1), y, colour);
            image.put_pixel(x1.saturating_sub(t), y, colour);
        }
    }
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

    #[test]
    fn annotate_keeps_the_frame_size_and_colours_only_the_roi() {
        let frame = RgbImage::from_pixel(40, 30, Rgb([100, 100, 100]));
        let roi = Rect { x: 10, y: 5, width: 20, height: 10 };
        let map = ndarray::Array2::from_elem((10, 20), 2.0f32);
        let region = Region { x: 12, y: 6, w: 4, h: 4, peak: 2.0, area: 16 };
        let out = annotate(&frame, roi, map.view(), 2.0, 0.5, &[region], NG_COLOUR);
        assert_eq!(out.dimensions(), (40, 30));
        assert_eq!(out.get_pixel(0, 0), &Rgb([100, 100, 100]), "outside the roi is untouched");
        assert_ne!(out.get_pixel(20, 12), &Rgb([100, 100, 100]), "the roi is coloured");
        assert_eq!(out.get_pixel(12, 6), &NG_COLOUR, "the region is boxed in sensor pixels");
    }
}
