//! Epoch selection scores what the bundle will score: with position standardisation on, the
//! validation maps are standardised with the training images' statistics (before the first
//! epoch by scoring them, after it from the scores the training steps found), so a defect at a
//! calm position beats a noisy position's ordinary spread, as it will in the trained bundle.
//! Real ONNX Runtime (the training kNN graph); the features are made here so that the two
//! positions' spreads are known.

use image::GrayImage;
use inspectd::model::runtime::{Runtime, RuntimeSettings};
use inspectd::train::features::FeatureCache;
use inspectd::train::fit::{FitConfig, Trainer};
use inspectd::train::select::Validation;
use inspectd::util::rng::SplitMix64;
use ndarray::Array2;

const GRID: (usize, usize) = (4, 4);
const CHANNELS: usize = 4;
/// Patch (row 1, column 2): where the defect goes.
const DEFECT_PATCH: usize = 6;

/// One image's descriptor input `[h·w, C + 2]`: column 0 patches vary 20× more than the rest
/// (a border that sees the padding, say); `defect` shifts the calm `DEFECT_PATCH`.
fn input(rng: &mut SplitMix64, defect: bool) -> Array2<f32> {
    let (h, w) = GRID;
    Array2::from_shape_fn((h * w, CHANNELS + 2), |(p, c)| {
        let (i, j) = (p / w, p % w);
        match c {
            c if c == CHANNELS => 2.0 * i as f32 / (h - 1) as f32 - 1.0,
            c if c == CHANNELS + 1 => 2.0 * j as f32 / (w - 1) as f32 - 1.0,
            _ => {
                let spread = if j == 0 { 1.0 } else { 0.05 };
                let shift = if defect && p == DEFECT_PATCH { 1.0 } else { 0.0 };
                rng.range(-spread, spread) * 1.7 + shift
            }
        }
    })
}

fn cache(rng: &mut SplitMix64, defects: &[bool]) -> FeatureCache {
    FeatureCache { inputs: defects.iter().map(|&d| input(rng, d)).collect(), grid: GRID }
}

#[test]
fn with_position_norm_the_validation_figure_is_the_standardised_one() {
    let runtime = Runtime::init(RuntimeSettings::default()).expect("ONNX Runtime (run scripts/setup)");
    let mut rng = SplitMix64::new(7);
    let train = cache(&mut rng, &[false; 48]);
    let labels: Vec<bool> = (0..40).map(|i| i % 2 == 1).collect();
    let val_cache = || cache(&mut SplitMix64::new(11), &labels);
    let masks: Vec<GrayImage> = labels
        .iter()
        .map(|&d| {
            GrayImage::from_fn(16, 16, |x, y| {
                image::Luma([if d && y / 4 == 1 && x / 4 == 2 { 255 } else { 0 }])
            })
        })
        .collect();
    let cfg = FitConfig::default();
    let mut trainer = Trainer::new(&runtime, &train, &train, cfg).expect("trainer");
    let raw = Validation::new(val_cache(), labels.clone(), &masks, 1.0);
    let standardised = Validation::new(val_cache(), labels.clone(), &masks, 1.0).with_position_norm(true);
    let raw = raw.evaluate(&mut trainer, &train, 0, f32::NAN).expect("raw figure");
    let standardised = standardised.evaluate(&mut trainer, &train, 0, f32::NAN).expect("standardised figure");
    // Raw, the noisy column sets every image's score and hides the shifted calm patch.
    assert!(raw.image_auroc < 0.75, "raw image AUROC {}", raw.image_auroc);
    assert!(standardised.image_auroc > 0.95, "standardised image AUROC {}", standardised.image_auroc);
    assert!(standardised.pixel_auroc > raw.pixel_auroc, "{standardised:?} against {raw:?}");
    // After an epoch, the statistics come from the scores the training steps found.
    trainer.keep_patch_scores(GRID);
    assert!(trainer.epoch_patch_scores().is_none(), "no epoch yet");
    trainer.epoch(&train, &mut |_| {}).expect("epoch");
    assert_eq!(trainer.epoch_patch_scores().map(|m| m.len()), Some(48), "every training image scored");
    let val = Validation::new(val_cache(), labels.clone(), &masks, 1.0).with_position_norm(true);
    let after = val.evaluate(&mut trainer, &train, 1, f32::NAN).expect("figure after an epoch");
    assert!(after.image_auroc > 0.95, "standardised image AUROC after an epoch {}", after.image_auroc);
}
