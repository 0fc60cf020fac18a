//! Scoring an MVTec-AD-layout category with a bundle and computing its metrics
//! (`inspectd eval`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use image::imageops::FilterType;
use ndarray::Array2;
use serde::Serialize;

use super::metrics::pixel_auroc as pixel_auroc_of;
use super::metrics::{aupro, auroc, f1_at};
use crate::input::images::{self, ImageError};
use crate::input::mvtec::{self, TestImage};
use crate::model::bundle::Bundle;
use crate::model::scorer::{ScoreError, Scorer};
use crate::view::Rect;

/// FPR limit of the standard AUPRO.
pub const AUPRO_FPR_LIMIT: f64 = 0.3;

/// Metrics of one category.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryReport {
    pub category: String,
    pub model: String,
    pub images: usize,
    pub image_auroc: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub aupro: Option<f64>,
    /// Threshold-based figures; absent when the bundle is not calibrated.
    pub at_threshold: Option<ThresholdReport>,
    pub per_defect: Vec<DefectReport>,
    pub images_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThresholdReport {
    pub threshold: f32,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// One defect type against the good test images.
#[derive(Debug, Clone, Serialize)]
pub struct DefectReport {
    pub defect: String,
    pub images: usize,
    pub image_auroc: Option<f64>,
    pub pixel_auroc: Option<f64>,
    pub mean_score: f32,
    /// Share of this type's images at or above the threshold.
    pub recall: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error(transparent)]
    Score(#[from] ScoreError),
}

/// A scored test image.
struct Scored {
    test: TestImage,
    score: f32,
    /// At ROI resolution, ignored pixels zeroed.
    map: Array2<f32>,
    roi: Rect,
    frame: (u32, u32),
}

/// Scores every test image of `dir` and computes the metrics.
pub fn evaluate(scorer: &mut Scorer, bundle: &Bundle, dir: &Path) -> Result<CategoryReport, EvalError> {
    let tests = mvtec::test_images(dir)?;
    let view = bundle.view(None);
    let started = Instant::now();
    let mut scored = Vec::with_capacity(tests.len());
    for chunk in tests.chunks(8) {
        let imgs = chunk.iter().map(|t| images::load_rgb(&t.path)).collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&image::RgbImage> = imgs.iter().collect();
        let (results, _) = scorer.score_frames(&view, &refs)?;
        for ((t, r), img) in chunk.iter().zip(results).zip(&imgs) {
            let frame = img.dimensions();
            scored.push(Scored { test: t.clone(), score: r.score, map: r.map, roi: r.roi, frame });
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let inspect = view.mask.as_deref();
    let masks = scored.iter().map(|s| load_mask(s, inspect)).collect::<Result<Vec<_>, _>>()?;
    // Ignored pixels are left out of the pixel AUROC; AUPRO keeps the image layout it needs
    // for its regions, with ignored pixels as normal ones scored 0 (the lowest).
    let kept = |s: &Scored, gt: &Array2<bool>| kept_pixels(s.map.view(), gt.view(), inspect);
    let pixel_auroc =
        |scored: &[Scored], masks: &[Option<Array2<bool>>], keep: &dyn Fn(&TestImage) -> bool| {
            let (maps, gts): (Vec<_>, Vec<_>) = scored
                .iter()
                .zip(masks)
                .filter(|(s, m)| keep(&s.test) && m.is_some())
                .map(|(s, m)| kept(s, m.as_ref().expect("filtered")))
                .unzip();
            let maps: Vec<_> = maps.iter().map(|m| m.view()).collect();
            let gts: Vec<_> = gts.iter().map(|m| m.view()).collect();
            pixel_auroc_of(&maps, &gts)
        };
    let threshold = bundle.manifest.threshold.as_ref().map(|t| t.image);
    Ok(CategoryReport {
        category: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        model: bundle.manifest.model.id.clone(),
        images: scored.len(),
        image_auroc: image_auroc(&scored, |_| true),
        pixel_auroc: pixel_auroc(&scored, &masks, &|_| true),
        aupro: pixels(&scored, &masks, |_| true, |m, k| aupro(m, k, AUPRO_FPR_LIMIT)),
        at_threshold: threshold.map(|t| at_threshold(&scored, t)),
        per_defect: per_defect(&scored, &masks, threshold, &pixel_auroc),
        images_per_second: scored.len() as f64 / elapsed.max(1e-9),
    })
}

/// The ground-truth mask over the map's ROI (resized to the frame first if it differs; nearest
/// neighbour keeps it binary), with ignored pixels normal; all-normal for good images; `None`
/// for a defect image without a mask (left out of pixel metrics).
fn load_mask(s: &Scored, inspect: Option<&image::GrayImage>) -> Result<Option<Array2<bool>>, ImageError> {
    let (w, h) = (s.roi.width as usize, s.roi.height as usize);
    if !s.test.is_anomalous() {
        return Ok(Some(Array2::from_elem((h, w), false)));
    }
    let Some(path) = &s.test.mask else { return Ok(None) };
    let mut grey = image::imageops::grayscale(&images::load_rgb(path)?);
    if grey.dimensions() != s.frame {
        grey = image::imageops::resize(&grey, s.frame.0, s.frame.1, FilterType::Nearest);
    }
    let (rx, ry) = (s.roi.x, s.roi.y);
    let ignored = |x: u32, y: u32| inspect.is_some_and(|m| m.get_pixel(x, y)[0] == 0);
    Ok(Some(Array2::from_shape_fn((h, w), |(y, x)| {
        let (x, y) = (x as u32, y as u32);
        grey.get_pixel(rx + x, ry + y)[0] > 127 && !ignored(x, y)
    })))
}

/// A map's and its ground truth's inspected pixels, as one row each (all of them when
/// nothing is ignored).
fn kept_pixels(
    map: ndarray::ArrayView2<f32>,
    gt: ndarray::ArrayView2<bool>,
    inspect: Option<&image::GrayImage>,
) -> (Array2<f32>, Array2<bool>) {
    let Some(mask) = inspect else { return (map.to_owned(), gt.to_owned()) };
    let keep = |(y, x): (usize, usize)| mask.get_pixel(x as u32, y as u32)[0] != 0;
    let values: Vec<f32> = map.indexed_iter().filter(|(i, _)| keep(*i)).map(|(_, v)| *v).collect();
    let labels: Vec<bool> = gt.indexed_iter().filter(|(i, _)| keep(*i)).map(|(_, v)| *v).collect();
    let n = values.len();
    (
        Array2::from_shape_vec((1, n), values).expect("one row"),
        Array2::from_shape_vec((1, n), labels).expect("one row"),
    )
}

fn image_auroc(scored: &[Scored], keep: impl Fn(&TestImage) -> bool) -> Option<f64> {
    let kept: Vec<&Scored> = scored.iter().filter(|s| keep(&s.test)).collect();
    let scores: Vec<f32> = kept.iter().map(|s| s.score).collect();
    let labels: Vec<bool> = kept.iter().map(|s| s.test.is_anomalous()).collect();
    auroc(&scores, &labels)
}

fn pixels(
    scored: &[Scored],
    masks: &[Option<Array2<bool>>],
    keep: impl Fn(&TestImage) -> bool,
    metric: impl Fn(&[ndarray::ArrayView2<f32>], &[ndarray::ArrayView2<bool>]) -> Option<f64>,
) -> Option<f64> {
    let (maps, masks): (Vec<_>, Vec<_>) = scored
        .iter()
        .zip(masks)
        .filter(|(s, m)| keep(&s.test) && m.is_some())
        .map(|(s, m)| (s.map.view(), m.as_ref().expect("filtered").view()))
        .unzip();
    metric(&maps, &masks)
}

fn at_threshold(scored: &[Scored], threshold: f32) -> ThresholdReport {
    let scores: Vec<f32> = scored.iter().map(|s| s.score).collect();
    let labels: Vec<bool> = scored.iter().map(|s| s.test.is_anomalous()).collect();
    let c = f1_at(&scores, &labels, threshold);
    ThresholdReport { threshold, precision: c.precision, recall: c.recall, f1: c.f1 }
}

type PixelAuroc<'a> =
    dyn Fn(&[Scored], &[Option<Array2<bool>>], &dyn Fn(&TestImage) -> bool) -> Option<f64> + 'a;

fn per_defect(
    scored: &[Scored],
    masks: &[Option<Array2<bool>>],
    threshold: Option<f32>,
    pixel_auroc: &PixelAuroc,
) -> Vec<DefectReport> {
    let mut kinds: BTreeMap<&str, Vec<f32>> = BTreeMap::new();
    for s in scored.iter().filter(|s| s.test.is_anomalous()) {
        kinds.entry(&s.test.kind).or_default().push(s.score);
    }
    kinds
        .into_iter()
        .map(|(kind, scores)| {
            let keep = |t: &TestImage| !t.is_anomalous() || t.kind == kind;
            DefectReport {
                defect: kind.to_string(),
                images: scores.len(),
                image_auroc: image_auroc(scored, keep),
                pixel_auroc: pixel_auroc(scored, masks, &keep),
                mean_score: scores.iter().sum::<f32>() / scores.len() as f32,
                recall: threshold
                    .map(|t| scores.iter().filter(|&&s| s >= t).count() as f64 / scores.len() as f64),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_pixels_are_left_out_of_the_pixel_metrics() {
        let map = ndarray::array![[0.0f32, 9.0], [2.0, 1.0]];
        let gt = ndarray::array![[false, false], [true, false]];
        let mut inspect = image::GrayImage::from_pixel(2, 2, image::Luma([255]));
        inspect.put_pixel(1, 0, image::Luma([0]));
        let (values, labels) = kept_pixels(map.view(), gt.view(), Some(&inspect));
        assert_eq!(values.iter().copied().collect::<Vec<_>>(), vec![0.0, 2.0, 1.0]);
        assert_eq!(labels.iter().copied().collect::<Vec<_>>(), vec![false, true, false]);
        // With the hot ignored pixel left out, the defect pixel ranks first: AUROC 1.
        assert_eq!(pixel_auroc_of(&[values.view()], &[labels.view()]), Some(1.0));
        let (all, all_labels) = kept_pixels(map.view(), gt.view(), None);
        assert_eq!(all.len(), 4);
        let unmasked = pixel_auroc_of(&[all.view()], &[all_labels.view()]).unwrap();
        assert!(unmasked < 0.7, "the ignored hot pixel would have ranked first: {unmasked}");
    }
}
