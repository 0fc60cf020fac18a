//! Image → network input: resize to the model size, scale to [0, 1], normalise with the
//! ImageNet mean/std, planar CHW (cfa.md §1).

use image::imageops::FilterType;
use image::RgbImage;

/// Mean and standard deviation per RGB channel.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalisation {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalisation {
    /// ImageNet statistics, which every supported backbone was trained with.
    pub const IMAGENET: Normalisation =
        Normalisation { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
}

/// Resizes `image` to `width × height`: bilinear with antialiasing when shrinking, like PIL's
/// `BILINEAR`, which the reference features were computed with. SIMD (fast_image_resize), so
/// preprocessing stays a small share of the frame time.
pub fn resize(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    fast_resize(image, width, height)
        .unwrap_or_else(|| image::imageops::resize(image, width, height, FilterType::Triangle))
}

fn fast_resize(image: &RgbImage, width: u32, height: u32) -> Option<RgbImage> {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{FilterType as F, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let src = ImageRef::new(image.width(), image.height(), image.as_raw(), PixelType::U8x3).ok()?;
    let mut dst = Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(F::Bilinear));
    Resizer::new().resize(&src, &mut dst, &options).ok()?;
    RgbImage::from_raw(width, height, dst.into_vec())
}

/// Writes `image` (already at model size) into `out` as normalised planar RGB, `3·H·W` floats.
pub fn normalise_into(image: &RgbImage, norm: &Normalisation, out: &mut [f32]) {
    normalise_rgb_into(image.as_raw(), norm, out);
}

/// Like [`normalise_into`] for tightly packed RGB bytes (a decoded frame).
pub fn normalise_rgb_into(rgb: &[u8], norm: &Normalisation, out: &mut [f32]) {
    let plane = rgb.len() / 3;
    assert_eq!(out.len(), 3 * plane, "output holds one image");
    // Precompute per-channel lookup tables: 256 entries beat a divide per pixel.
    let tables: [[f32; 256]; 3] =
        std::array::from_fn(|c| std::array::from_fn(|v| (v as f32 / 255.0 - norm.mean[c]) / norm.std[c]));
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        r[i] = tables[0][px[0] as usize];
        g[i] = tables[1][px[1] as usize];
        b[i] = tables[2][px[2] as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_is_planar_and_uses_imagenet_stats() {
        let mut img = RgbImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
        img.put_pixel(1, 0, image::Rgb([0, 255, 0]));
        let mut out = vec![0.0; 6];
        normalise_into(&img, &Normalisation::IMAGENET, &mut out);
        let n = Normalisation::IMAGENET;
        assert!((out[0] - (1.0 - n.mean[0]) / n.std[0]).abs() < 1e-6);
        assert!((out[1] - (0.0 - n.mean[0]) / n.std[0]).abs() < 1e-6);
        assert!((out[2] - (0.0 - n.mean[1]) / n.std[1]).abs() < 1e-6);
        assert!((out[3] - (1.0 - n.mean[1]) / n.std[1]).abs() < 1e-6);
        assert!((out[5] - (0.0 - n.mean[2]) / n.std[2]).abs() < 1e-6);
    }

    #[test]
    fn resize_keeps_size_when_already_right() {
        let img = RgbImage::from_pixel(8, 4, image::Rgb([10, 20, 30]));
        assert_eq!(resize(&img, 8, 4), img);
        let small = resize(&img, 4, 2);
        assert_eq!(small.dimensions(), (4, 2));
        assert_eq!(small.get_pixel(1, 1), &image::Rgb([10, 20, 30]));
    }
}
