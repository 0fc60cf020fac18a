//! The view: how one camera frame becomes the model's inputs, and how their anomaly maps
//! become one map in the frame's own pixels.
//!
//! A frame is first cut to its ROI (sensor pixels). The ROI then reaches the model in one of
//! three ways ([`Fit`]):
//! - **tiles**: model-size windows at native resolution with overlap, all scored as one batch
//!   and stitched back with blended overlaps ([`stitch`]), so a 5 px hole stays 5 px;
//! - **letterbox**: the whole ROI resized into the model input with its aspect ratio kept and
//!   the rest filled with the mean colour (normalised to zero);
//! - **stretch**: the whole ROI resized to the model input, aspect ratio lost. Bundles from
//!   before the view was stored work this way, so they score exactly as they always did.
//!
//! The stitched map has the ROI's size. An optional ignore mask at ROI resolution (white =
//! inspect, black = ignore) zeroes the map where it is black (or lowers it to the map's
//! minimum, where standardised scores run below zero), before the score and the regions, so a
//! serial number or a moving fixture never raises an alarm. Regions found on the map are
//! moved into sensor pixels by the ROI's corner (`Region::offset`).
//!
//! Train, eval, score, replay and the daemon all go through [`View::prepare`] and
//! [`View::assemble`], so a model sees the same thing everywhere.

pub mod stitch;

use std::sync::Arc;

use image::{GrayImage, RgbImage};
use ndarray::{s, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

use stitch::TileGrid;

/// A rectangle in sensor pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub fn whole(width: u32, height: u32) -> Rect {
        Rect { x: 0, y: 0, width, height }
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

impl std::fmt::Display for Rect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{} at ({}, {})", self.width, self.height, self.x, self.y)
    }
}

/// How the ROI is brought to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// Model-size tiles at native resolution, `overlap` pixels shared by neighbours.
    Tiles { overlap: u32 },
    /// Resized whole, aspect ratio kept, padded with the mean colour.
    Letterbox,
    /// Resized whole to the model size (bundles without a stored view).
    Stretch,
}

/// Why a frame cannot be brought into a view.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("frame is {got_w}x{got_h} but the model's view expects {want_w}x{want_h} frames; use a camera with that resolution or retrain the model on this one")]
    FrameSize { got_w: u32, got_h: u32, want_w: u32, want_h: u32 },
    #[error("roi {roi} does not fit in the {frame_w}x{frame_h} frame; move or shrink the roi")]
    RoiOutside { roi: Rect, frame_w: u32, frame_h: u32 },
    #[error(
        "roi {roi} is smaller than one {tile_w}x{tile_h} tile; use a larger roi or train without --tile"
    )]
    RoiSmallerThanTile { roi: Rect, tile_w: u32, tile_h: u32 },
    #[error("the ignore mask is {mask_w}x{mask_h} but the roi is {roi_w}x{roi_h}; the mask must have the roi's size")]
    MaskSize { mask_w: u32, mask_h: u32, roi_w: u32, roi_h: u32 },
    #[error("tile overlap {overlap} must be smaller than the tile ({tile} px)")]
    Overlap { overlap: u32, tile: u32 },
}

/// A frame cut into model inputs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Model-size images: one, or every tile in [`TileGrid::tiles`] order.
    pub inputs: Vec<RgbImage>,
    /// Where the inputs came from, in sensor pixels.
    pub roi: Rect,
}

/// A view ready to use: the stored one, with a camera's ROI override applied.
#[derive(Debug, Clone)]
pub struct View {
    /// Frame size the view was made for; `None` accepts any (stretched bundles, and letterbox
    /// views without an ROI or mask, which fit any frame).
    pub frame: Option<(u32, u32)>,
    /// The inspected part of the frame; `None` is the whole frame.
    pub roi: Option<Rect>,
    pub fit: Fit,
    /// Model input `(width, height)`.
    pub input: (u32, u32),
    /// Ignore mask at ROI resolution: 0 = ignore, anything else = inspect.
    pub mask: Option<Arc<GrayImage>>,
}

/// What a camera's config changes in its model's view: the ROI (a camera that moved) and
/// polygons never judged, in sensor pixels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraView {
    pub roi: Option<Rect>,
    pub ignore: Vec<Vec<[f32; 2]>>,
}

impl CameraView {
    /// The view this camera's frames of `frame` size go through.
    pub fn resolve(&self, base: &View, frame: (u32, u32)) -> View {
        let mut view = View { roi: self.roi.or(base.roi), ..base.clone() };
        if !self.ignore.is_empty() {
            let roi = view.roi.unwrap_or(Rect::whole(frame.0, frame.1));
            let own = base.mask.as_deref().filter(|m| m.dimensions() == roi.size());
            view.mask = Some(Arc::new(ignore_polygons(roi, &self.ignore, own)));
        }
        view
    }
}

/// The mean colour padding is filled with: the ImageNet mean, which normalises to zero.
const PAD: [u8; 3] = [124, 116, 104];

impl View {
    /// The view of bundles without one: any frame, stretched whole to the model size.
    pub fn stretch(input: (u32, u32)) -> View {
        View { frame: None, roi: None, fit: Fit::Stretch, input, mask: None }
    }

    /// Whether this is a bundle's stored view (frames at their own size are cut by it) rather
    /// than the stretch of bundles without one.
    pub fn stored(&self) -> bool {
        self.fit != Fit::Stretch
    }

    /// Checks that the view is usable on frames of its own size (or of `frame` when the view
    /// accepts any): ROI inside, at least one tile, a mask of the ROI's size.
    pub fn check(&self, frame: (u32, u32)) -> Result<Rect, ViewError> {
        let roi = self.roi_in(frame)?;
        if let Fit::Tiles { overlap } = self.fit {
            let tile = self.input.0.min(self.input.1);
            if overlap >= tile {
                return Err(ViewError::Overlap { overlap, tile });
            }
            if roi.width < self.input.0 || roi.height < self.input.1 {
                return Err(ViewError::RoiSmallerThanTile {
                    roi,
                    tile_w: self.input.0,
                    tile_h: self.input.1,
                });
            }
        }
        if let Some(mask) = &self.mask {
            if mask.dimensions() != roi.size() {
                let (mask_w, mask_h) = mask.dimensions();
                return Err(ViewError::MaskSize { mask_w, mask_h, roi_w: roi.width, roi_h: roi.height });
            }
        }
        Ok(roi)
    }

    /// The ROI in a frame of `(width, height)`, checking the frame's size.
    pub fn roi_in(&self, (width, height): (u32, u32)) -> Result<Rect, ViewError> {
        if let Some((want_w, want_h)) = self.frame {
            if (want_w, want_h) != (width, height) {
                return Err(ViewError::FrameSize { got_w: width, got_h: height, want_w, want_h });
            }
        }
        let roi = self.roi.unwrap_or(Rect::whole(width, height));
        let fits = roi.width > 0
            && roi.height > 0
            && u64::from(roi.x) + u64::from(roi.width) <= u64::from(width)
            && u64::from(roi.y) + u64::from(roi.height) <= u64::from(height);
        if !fits {
            return Err(ViewError::RoiOutside { roi, frame_w: width, frame_h: height });
        }
        Ok(roi)
    }

    /// Model inputs per frame of `frame` size.
    pub fn inputs_per_frame(&self, frame: (u32, u32)) -> Result<usize, ViewError> {
        let roi = self.check(frame)?;
        Ok(match self.fit {
            Fit::Tiles { overlap } => TileGrid::new(roi.size(), self.input, overlap).len(),
            _ => 1,
        })
    }

    /// Cuts `frame` into its model inputs.
    pub fn prepare(&self, frame: &RgbImage) -> Result<Prepared, ViewError> {
        let roi = self.check(frame.dimensions())?;
        let cut = || image::imageops::crop_imm(frame, roi.x, roi.y, roi.width, roi.height).to_image();
        let (mw, mh) = self.input;
        let inputs = match self.fit {
            Fit::Tiles { overlap } => TileGrid::new(roi.size(), self.input, overlap)
                .tiles()
                .map(|t| image::imageops::crop_imm(frame, roi.x + t.x, roi.y + t.y, mw, mh).to_image())
                .collect(),
            Fit::Stretch if roi == Rect::whole(frame.width(), frame.height()) => {
                vec![crate::cfa::preprocess::resize(frame, mw, mh)]
            }
            Fit::Stretch => vec![crate::cfa::preprocess::resize(&cut(), mw, mh)],
            Fit::Letterbox => {
                let content = letterbox(roi.size(), self.input);
                let small = crate::cfa::preprocess::resize(&cut(), content.width, content.height);
                let mut canvas = RgbImage::from_pixel(mw, mh, image::Rgb(PAD));
                image::imageops::replace(&mut canvas, &small, content.x.into(), content.y.into());
                vec![canvas]
            }
        };
        Ok(Prepared { inputs, roi })
    }

    /// One anomaly map at ROI resolution from the maps of a frame's inputs (each at model
    /// size, in [`Prepared::inputs`] order), with the ignore mask applied.
    pub fn assemble(&self, roi: Rect, maps: &[ArrayView2<f32>]) -> Array2<f32> {
        let size = (roi.height as usize, roi.width as usize);
        let mut map = match self.fit {
            Fit::Tiles { overlap } => TileGrid::new(roi.size(), self.input, overlap).stitch(maps, roi.size()),
            Fit::Stretch => resize_map(maps[0], size),
            Fit::Letterbox => {
                let c = letterbox(roi.size(), self.input);
                let (x, y, w, h) = (c.x as usize, c.y as usize, c.width as usize, c.height as usize);
                resize_map(maps[0].slice(s![y..y + h, x..x + w]), size)
            }
        };
        if let Some(mask) = &self.mask {
            apply_mask(&mut map, mask);
        }
        map
    }
}

/// Where the ROI's content lies inside the model input when letterboxed.
pub fn letterbox(roi: (u32, u32), input: (u32, u32)) -> Rect {
    let scale = (input.0 as f32 / roi.0 as f32).min(input.1 as f32 / roi.1 as f32);
    let w = ((roi.0 as f32 * scale).round() as u32).clamp(1, input.0);
    let h = ((roi.1 as f32 * scale).round() as u32).clamp(1, input.1);
    Rect { x: (input.0 - w) / 2, y: (input.1 - h) / 2, width: w, height: h }
}

/// Bilinear resize of a map to `(height, width)`; the same size is returned as it is.
fn resize_map(map: ArrayView2<f32>, (height, width): (usize, usize)) -> Array2<f32> {
    if map.dim() == (height, width) {
        return map.to_owned();
    }
    let planar = map.to_owned().insert_axis(Axis(0));
    crate::cfa::resize::resize_bilinear(planar.view(), height, width).index_axis_move(Axis(0), 0)
}

/// Zeroes the map where the mask is black, or sets it to the map's lowest value where that is
/// below zero (standardised maps), so an ignored pixel can never set the image score.
pub fn apply_mask(map: &mut Array2<f32>, mask: &GrayImage) {
    let floor = map.iter().fold(0.0f32, |low, &v| low.min(v));
    for ((y, x), v) in map.indexed_iter_mut() {
        if mask.get_pixel(x as u32, y as u32).0[0] == 0 {
            *v = floor;
        }
    }
}

/// Reads an ignore mask: a PNG (or any image) where white means inspect and black means
/// ignore. Anything at or above mid-grey counts as white.
pub fn load_mask(path: &std::path::Path) -> Result<GrayImage, String> {
    let img = image::open(path).map_err(|e| format!("{}: {e}", path.display()))?.to_luma8();
    Ok(binarise(img))
}

/// A mask with only 0 and 255.
pub fn binarise(mut mask: GrayImage) -> GrayImage {
    for p in mask.pixels_mut() {
        p.0[0] = if p.0[0] >= 128 { 255 } else { 0 };
    }
    mask
}

/// Rasterises polygons (sensor pixels) into an ignore mask at ROI resolution: pixels whose
/// centre lies inside any polygon become black (ignored), the rest keep `base` or white.
pub fn ignore_polygons(roi: Rect, polygons: &[Vec<[f32; 2]>], base: Option<&GrayImage>) -> GrayImage {
    let mut mask =
        base.cloned().unwrap_or_else(|| GrayImage::from_pixel(roi.width, roi.height, image::Luma([255])));
    for (x, y, p) in mask.enumerate_pixels_mut() {
        let (px, py) = ((roi.x + x) as f32 + 0.5, (roi.y + y) as f32 + 0.5);
        if polygons.iter().any(|poly| inside(poly, px, py)) {
            p.0[0] = 0;
        }
    }
    mask
}

/// Even-odd rule point-in-polygon test.
fn inside(poly: &[[f32; 2]], x: f32, y: f32) -> bool {
    let mut inside = false;
    let n = poly.len();
    for i in 0..n {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[(i + n - 1) % n]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 7]))
    }

    #[test]
    fn a_frame_of_the_wrong_size_names_both_sizes() {
        let view = View { frame: Some((1024, 768)), ..View::stretch((256, 256)) };
        let err = view.prepare(&frame(640, 480)).unwrap_err().to_string();
        assert!(err.contains("640x480") && err.contains("1024x768"), "{err}");
    }

    #[test]
    fn tiles_are_native_crops_of_the_roi() {
        let roi = Rect { x: 10, y: 20, width: 300, height: 200 };
        let view = View { roi: Some(roi), fit: Fit::Tiles { overlap: 16 }, ..View::stretch((128, 128)) };
        let img = frame(400, 300);
        let prepared = view.prepare(&img).unwrap();
        assert_eq!(prepared.inputs.len(), 3 * 2);
        // The last tile of the first row is flush with the ROI's right edge.
        let last = &prepared.inputs[2];
        assert_eq!(last.get_pixel(127, 0), img.get_pixel(10 + 299, 20));
        assert_eq!(prepared.inputs[0].get_pixel(0, 0), img.get_pixel(10, 20));
        assert_eq!(view.inputs_per_frame((400, 300)), Ok(6));
    }

    #[test]
    fn a_roi_smaller_than_a_tile_or_outside_the_frame_is_refused() {
        let tiles = View { fit: Fit::Tiles { overlap: 0 }, ..View::stretch((256, 256)) };
        assert!(matches!(tiles.prepare(&frame(200, 300)), Err(ViewError::RoiSmallerThanTile { .. })));
        let outside =
            View { roi: Some(Rect { x: 300, y: 0, width: 200, height: 10 }), ..View::stretch((64, 64)) };
        assert!(matches!(outside.prepare(&frame(400, 300)), Err(ViewError::RoiOutside { .. })));
    }

    #[test]
    fn letterbox_keeps_the_aspect_ratio_and_maps_back_to_roi_size() {
        let view = View { fit: Fit::Letterbox, ..View::stretch((256, 256)) };
        let img = frame(1024, 512);
        let prepared = view.prepare(&img).unwrap();
        assert_eq!(prepared.inputs[0].dimensions(), (256, 256));
        assert_eq!(letterbox((1024, 512), (256, 256)), Rect { x: 0, y: 64, width: 256, height: 128 });
        assert_eq!(prepared.inputs[0].get_pixel(5, 5).0, PAD, "padding above the content");
        let mut map = Array2::<f32>::zeros((256, 256));
        map.slice_mut(s![64..192, ..]).fill(2.0);
        let out = view.assemble(prepared.roi, &[map.view()]);
        assert_eq!(out.dim(), (512, 1024));
        assert!(out.iter().all(|&v| (v - 2.0).abs() < 1e-5), "padding leaked into the map");
    }

    #[test]
    fn the_mask_zeroes_ignored_pixels_and_must_match_the_roi() {
        let mut mask = GrayImage::from_pixel(64, 64, image::Luma([255]));
        mask.put_pixel(3, 4, image::Luma([0]));
        let view = View { mask: Some(Arc::new(mask)), ..View::stretch((64, 64)) };
        let out = view.assemble(Rect::whole(64, 64), &[Array2::from_elem((64, 64), 1.0).view()]);
        assert_eq!((out[(4, 3)], out[(3, 4)]), (0.0, 1.0));
        // A standardised map runs below zero on good parts: the ignored pixel must not be the
        // maximum then either.
        let out = view.assemble(Rect::whole(64, 64), &[Array2::from_elem((64, 64), -1.5).view()]);
        assert_eq!((out[(4, 3)], out[(3, 4)]), (-1.5, -1.5));
        assert!(matches!(view.check((80, 64)), Err(ViewError::MaskSize { .. })));
    }

    #[test]
    fn polygons_mark_pixels_inside_as_ignored() {
        let roi = Rect { x: 100, y: 50, width: 20, height: 20 };
        let square = vec![[105.0, 55.0], [110.0, 55.0], [110.0, 60.0], [105.0, 60.0]];
        let mask = ignore_polygons(roi, &[square], None);
        assert_eq!(mask.get_pixel(7, 7).0[0], 0);
        assert_eq!(mask.get_pixel(2, 2).0[0], 255);
        assert_eq!(mask.pixels().filter(|p| p.0[0] == 0).count(), 25);
    }

    #[test]
    fn a_camera_moves_the_roi_and_adds_its_polygons_to_the_mask() {
        let base = View { fit: Fit::Letterbox, ..View::stretch((64, 64)) };
        let cam = CameraView {
            roi: Some(Rect { x: 10, y: 10, width: 100, height: 50 }),
            ignore: vec![vec![[10.0, 10.0], [20.0, 10.0], [20.0, 20.0], [10.0, 20.0]]],
        };
        let view = cam.resolve(&base, (200, 100));
        assert_eq!(view.roi, cam.roi);
        let mask = view.mask.expect("polygons make a mask");
        assert_eq!(mask.dimensions(), (100, 50));
        assert_eq!((mask.get_pixel(5, 5).0[0], mask.get_pixel(50, 30).0[0]), (0, 255));
    }
}
