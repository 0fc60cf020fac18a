//! Training on the project's synthetic defect data, end to end through the real backbone and
//! ONNX Runtime, measured with the same evaluation code `inspectd eval` uses.

mod common;

use std::path::{Path, PathBuf};

use common::local;
use inspectd::eval::evaluate::evaluate;
use inspectd::model::bundle::Bundle;
use inspectd::model::manifest::RadiusMode;
use inspectd::model::runtime::{Runtime, RuntimeSettings};
use inspectd::model::scorer::Scorer;
use inspectd::synth::{write_category, Category, SynthSpec};
use inspectd::train::calibrate::NormalCalibration;
use inspectd::train::fit::FitConfig;
use inspectd::train::run::{train, TrainError, TrainSettings};

fn runtime() -> Runtime {
    Runtime::init(RuntimeSettings::default()).expect("ONNX Runtime (run scripts/setup)")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inspectd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(data: &Path, out: &Path, epochs: usize, seed: u64) -> TrainSettings {
    TrainSettings {
        inputs: vec![data.to_path_buf()],
        out: out.to_path_buf(),
        backbone: local("models/backbone.onnx"),
        model_id: "test".into(),
        width: 128,
        height: 128,
        // The synthetic sanity check keeps the recipe it was written with (4 images per step);
        // the default recipe is measured on real photographs (tests/train_real_photo.rs).
        fit: FitConfig { epochs, seed, batch: 4, radius_mode: RadiusMode::Trainable, ..FitConfig::default() },
        select: None,
        sigma: 4.0,
        position_norm: true,
        holdout: 0.2,
        calibration: NormalCalibration::default(),
        validation: None,
        min_images: 2,
        video_frames: 120,
        live: None,
        view: None,
    }
}

fn dataset(root: &Path, category: Category, train_good: usize) -> PathBuf {
    let spec = SynthSpec { category, size: 128, train_good, test_good: 12, test_defect_per_type: 4, seed: 3 };
    write_category(&spec, root).unwrap().category_dir
}

#[test]
fn trained_models_find_synthetic_defects() {
    let root = temp_dir("accuracy");
    let rt = runtime();
    for category in [Category::Stone, Category::Washer] {
        let data = dataset(&root, category, 30);
        let out = root.join(format!("model-{category}"));
        let report = train(&rt, &settings(&data, &out, 8, 1), &mut |_| {}).unwrap();
        assert_eq!(report.train_images + report.holdout_images, 30);
        assert!(report.threshold.is_some(), "calibrated from the held-out images");
        let bundle = Bundle::load(&out).unwrap();
        let mut scorer = Scorer::new(&rt, &bundle).unwrap();
        let r = evaluate(&mut scorer, &bundle, &data).unwrap();
        let (image, pixel) = (r.image_auroc.unwrap(), r.pixel_auroc.unwrap());
        eprintln!(
            "{category}: image AUROC {image:.4}, pixel AUROC {pixel:.4}, AUPRO {:.4}",
            r.aupro.unwrap()
        );
        assert!(image >= 0.95, "{category}: image AUROC {image}");
        assert!(pixel >= 0.95, "{category}: pixel AUROC {pixel}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn same_seed_gives_the_same_model() {
    let root = temp_dir("seed");
    let data = dataset(&root, Category::Fabric, 10);
    let rt = runtime();
    let hashes = |out: &Path| {
        let b = Bundle::load(out).unwrap();
        (
            b.manifest.weights.sha256.clone(),
            b.manifest.descriptor.sha256.clone(),
            b.manifest.threshold.map(|t| t.image),
        )
    };
    let (a, b, c) = (root.join("a"), root.join("b"), root.join("c"));
    train(&rt, &settings(&data, &a, 2, 7), &mut |_| {}).unwrap();
    train(&rt, &settings(&data, &b, 2, 7), &mut |_| {}).unwrap();
    train(&rt, &settings(&data, &c, 2, 8), &mut |_| {}).unwrap();
    assert_eq!(hashes(&a), hashes(&b));
    assert_ne!(hashes(&a).0, hashes(&c).0);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn corrupt_images_are_skipped_and_too_few_is_an_error() {
    let root = temp_dir("inputs");
    let data = dataset(&root, Category::Wood, 5);
    let good = data.join("train/good");
    std::fs::write(good.join("broken.png"), b"not an image").unwrap();
    let out = root.join("model");
    let rt = runtime();
    let mut skipped = Vec::new();
    let report = train(&rt, &settings(&data, &out, 1, 0), &mut |e| {
        if let inspectd::train::run::TrainEvent::Skipped { path, .. } = e {
            skipped.push(path);
        }
    })
    .unwrap();
    assert_eq!(skipped, vec![good.join("broken.png")]);
    assert_eq!(report.skipped, 1);
    // Three usable images minus the hold-out leaves too few for min_images = 5.
    let mut s = settings(&data, &root.join("never"), 1, 0);
    s.min_images = 5;
    let err = train(&rt, &s, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::TooFew { .. }), "{err}");
    assert!(err.to_string().contains("at least 5"), "{err}");
    assert!(!root.join("never").exists(), "no half bundle on failure");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_missing_backbone_fails_before_writing_anything() {
    let root = temp_dir("backbone");
    let data = dataset(&root, Category::Wood, 4);
    let out = root.join("model");
    let mut s = settings(&data, &out, 1, 0);
    s.backbone = root.join("nope.onnx");
    let err = train(&runtime(), &s, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("nope.onnx"), "{err}");
    assert!(!out.exists());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn trains_from_a_video_and_from_a_live_camera() {
    use inspectd::config::types::{SourceConfig, TestSource};
    use inspectd::synth::video::{write_video, VideoPlan};
    use inspectd::train::run::LiveCapture;
    let root = temp_dir("video-live");
    let video = root.join("good.mkv");
    let plan =
        VideoPlan { category: Category::Stone, size: 128, seed: 2, frames: 40, fps: 10, defects: vec![] };
    write_video(&plan, &video).unwrap();
    let rt = runtime();
    let mut s = settings(&video, &root.join("from-video"), 1, 0);
    s.video_frames = 12;
    let report = train(&rt, &s, &mut |_| {}).unwrap();
    assert_eq!(report.train_images + report.holdout_images, 12, "12 frames sampled from the video");

    let mut s = settings(&video, &root.join("from-camera"), 1, 0);
    s.inputs.clear();
    s.live = Some(LiveCapture {
        camera: "bench".into(),
        source: SourceConfig::Test(TestSource { pattern: "ball".into(), fps: 20, width: 160, height: 120 }),
        roi: None,
        frames: 6,
        interval: std::time::Duration::from_millis(150),
    });
    let started = std::time::Instant::now();
    let report = train(&rt, &s, &mut |_| {}).unwrap();
    assert_eq!(report.train_images + report.holdout_images, 6);
    assert!(started.elapsed() >= std::time::Duration::from_millis(750), "frames are spread over time");

    // With a view, the camera's frames are captured at their own size and its roi becomes the
    // view's, in sensor pixels.
    let roi = inspectd::view::Rect { x: 20, y: 10, width: 128, height: 96 };
    let mut s = s.clone();
    s.out = root.join("from-camera-view");
    s.view = Some(inspectd::train::run::ViewRequest { roi: Some(roi), ..Default::default() });
    train(&rt, &s, &mut |_| {}).unwrap();
    let bundle = inspectd::model::bundle::Bundle::load(&s.out).unwrap();
    let view = bundle.manifest.view.expect("a stored view");
    assert_eq!((view.frame, view.roi), ([160, 120], Some(roi)), "the camera's own frame size");
    std::fs::remove_dir_all(&root).unwrap();
}
