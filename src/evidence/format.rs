//! The image format evidence is written in.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ImageResult, RgbImage};

use super::error::EvidenceError;

/// JPEG quality: high enough that a fine scratch survives compression, so the evidence
/// still shows what the model saw; evidence is small next to a video stream either way.
const JPEG_QUALITY: u8 = 90;

/// `png` (lossless, larger) or `jpeg` (the default: several times smaller, so retention
/// keeps more history on an edge PC's disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceFormat {
    Png,
    Jpeg,
}

impl EvidenceFormat {
    /// Reads the `evidence.format` setting.
    pub fn parse(value: &str) -> Result<Self, EvidenceError> {
        match value {
            "png" => Ok(EvidenceFormat::Png),
            "jpeg" => Ok(EvidenceFormat::Jpeg),
            _ => Err(EvidenceError::Format { value: value.to_string() }),
        }
    }

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            EvidenceFormat::Png => "png",
            EvidenceFormat::Jpeg => "jpg",
        }
    }

    /// The encoded file contents.
    pub(crate) fn encode(self, image: &RgbImage) -> ImageResult<Vec<u8>> {
        let mut bytes = Vec::new();
        match self {
            EvidenceFormat::Png => image.write_with_encoder(PngEncoder::new(&mut bytes))?,
            EvidenceFormat::Jpeg => {
                image.write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY))?
            }
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_documented_names_are_accepted() {
        assert_eq!(EvidenceFormat::parse("png").ok(), Some(EvidenceFormat::Png));
        assert_eq!(EvidenceFormat::parse("jpeg").ok(), Some(EvidenceFormat::Jpeg));
        let err = EvidenceFormat::parse("bmp").expect_err("rejected").to_string();
        assert!(err.starts_with("evidence.format: \"bmp\""), "{err}");
    }

    #[test]
    fn encoded_bytes_decode_to_the_same_size_in_both_formats() {
        let image = RgbImage::from_pixel(8, 6, image::Rgb([10, 200, 30]));
        for format in [EvidenceFormat::Png, EvidenceFormat::Jpeg] {
            let bytes = format.encode(&image).expect("encodes");
            let back = image::load_from_memory(&bytes).expect("decodes").to_rgb8();
            assert_eq!(back.dimensions(), (8, 6), "{format:?}");
        }
    }
}
