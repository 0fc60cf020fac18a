//! `inspectd score` and bundle loading, through the real binary: JSON lines, heatmaps, and
//! errors that name the file and the problem.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::local;
use inspectd::model::manifest::RadiusMode;
use inspectd::model::runtime::{Runtime, RuntimeSettings};
use inspectd::synth::{write_category, Category, SynthSpec};
use inspectd::train::calibrate::NormalCalibration;
use inspectd::train::fit::FitConfig;
use inspectd::train::run::{train, TrainSettings};

/// A small calibrated model and its data, trained once for all tests in this file.
fn fixture() -> &'static (PathBuf, PathBuf) {
    static FIXTURE: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("inspectd-cli-score-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let spec = SynthSpec {
            category: Category::Washer,
            size: 128,
            train_good: 12,
            test_good: 2,
            test_defect_per_type: 1,
            seed: 5,
        };
        let data = write_category(&spec, &root).unwrap().category_dir;
        let model = root.join("model");
        let settings = TrainSettings {
            inputs: vec![data.clone()],
            out: model.clone(),
            backbone: local("models/backbone.onnx"),
            model_id: "washer-test".into(),
            width: 128,
            height: 128,
            // The recipe these small synthetic sets were tuned with (4 images per step).
            fit: FitConfig {
                epochs: 3,
                batch: 4,
                radius_mode: RadiusMode::Trainable,
                ..FitConfig::default()
            },
            select: None,
            sigma: 4.0,
            position_norm: true,
            holdout: 0.25,
            calibration: NormalCalibration::default(),
            validation: None,
            min_images: 2,
            video_frames: 120,
            live: None,
            view: None,
        };
        let rt = Runtime::init(RuntimeSettings::default()).unwrap();
        train(&rt, &settings, &mut |_| {}).unwrap();
        (model, data)
    })
}

fn inspectd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inspectd")).args(args).env("INSPECTD_LOG", "warn").output().unwrap()
}

fn copy_bundle(from: &Path, name: &str) -> PathBuf {
    let to = from.parent().unwrap().join(name);
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    to
}

#[test]
fn scores_images_as_json_lines_with_heatmaps() {
    let (model, data) = fixture();
    let heat = model.parent().unwrap().join("heat");
    let good = data.join("test/good/000.png");
    let bad = data.join("test/hole/000.png");
    let broken = model.parent().unwrap().join("broken.png");
    std::fs::write(&broken, b"junk").unwrap();
    let args = ["score", "--model", model.to_str().unwrap(), "--heatmap", heat.to_str().unwrap()];
    let files = [good.to_str().unwrap(), broken.to_str().unwrap(), bad.to_str().unwrap()];
    let out = inspectd(&[&args[..], &files[..]].concat());
    assert_eq!(out.status.code(), Some(1), "one unreadable image makes the run fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.png"), "{stderr}");
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "the readable images are still scored");
    let (g, b) = (&lines[0], &lines[1]);
    assert!(b["score"].as_f64().unwrap() > g["score"].as_f64().unwrap(), "the holed washer scores higher");
    assert_eq!(g["model"]["id"], "washer-test");
    assert!(g["threshold"].as_f64().is_some() && ["OK", "NG"].contains(&g["verdict"].as_str().unwrap()));
    assert!((0.0..=1.0).contains(&g["score_norm"].as_f64().unwrap()));
    assert!(g["timings_ms"]["total"].as_f64().unwrap() > 0.0);
    let png = image::open(b["heatmap"].as_str().unwrap()).unwrap();
    assert_eq!((png.width(), png.height()), (128, 128));
}

#[test]
fn a_tampered_bundle_names_the_file_and_the_problem() {
    let (model, data) = fixture();
    let image = data.join("test/good/000.png");
    let image = image.to_str().unwrap();

    let tampered = copy_bundle(model, "tampered");
    let weights = tampered.join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();
    let out = inspectd(&["score", "--model", tampered.to_str().unwrap(), image]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("weights.safetensors") && err.contains("sha256"), "{err}");

    let missing = copy_bundle(model, "missing");
    std::fs::remove_file(missing.join("descriptor.onnx")).unwrap();
    let err =
        String::from_utf8_lossy(&inspectd(&["score", "--model", missing.to_str().unwrap(), image]).stderr)
            .into_owned();
    assert!(err.contains("descriptor.onnx"), "{err}");

    let future = copy_bundle(model, "future");
    let manifest = future.join("model.toml");
    let text =
        std::fs::read_to_string(&manifest).unwrap().replace("format_version = 2", "format_version = 9");
    std::fs::write(&manifest, text).unwrap();
    let err =
        String::from_utf8_lossy(&inspectd(&["score", "--model", future.to_str().unwrap(), image]).stderr)
            .into_owned();
    assert!(err.contains("model.toml") && err.contains("upgrade inspectd"), "{err}");
}

#[test]
fn wrong_shapes_in_the_weights_are_named() {
    use inspectd::model::bundle::Bundle;
    let (model, _) = fixture();
    let odd = copy_bundle(model, "odd");
    let manifest = odd.join("model.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    // Claim a memory bank size the weights do not have.
    let text = text.replace("memory_size = 1024", "memory_size = 512");
    std::fs::write(&manifest, text).unwrap();
    let err = Bundle::load(&odd).unwrap_err().to_string();
    assert!(
        err.contains("memory_bank") && err.contains("[176, 1024]") && err.contains("weights.safetensors"),
        "{err}"
    );
}

#[test]
fn position_statistics_are_stored_applied_and_checked() {
    use inspectd::cfa::anomaly_map;
    use inspectd::cfa::blur::GaussianBlur;
    use inspectd::cfa::preprocess::Normalisation;
    use inspectd::model::bundle::{self, Bundle};
    use inspectd::model::scorer::{ImageBatch, Scorer};
    let (model, data) = fixture();
    let text = std::fs::read_to_string(model.join("model.toml")).unwrap();
    assert!(text.contains("format_version = 2") && text.contains("position_norm = true"), "{text}");
    let bundle = Bundle::load(model).unwrap();
    let stats = bundle.position.clone().expect("trained with position statistics");
    assert_eq!(stats.grid(), (32, 32));
    // Positions score differently on good images (the washer's middle, its rim, the corners).
    let (low, high) = stats.mean.iter().fold((f32::MAX, f32::MIN), |(l, h), &m| (l.min(m), h.max(m)));
    assert!(high > 1.1 * low, "position means from {low} to {high}");
    assert!(stats.std.iter().all(|s| s.is_finite() && *s > 0.0));

    // Every map the scorer returns is the standardised one.
    let rt = Runtime::init(RuntimeSettings::default()).unwrap();
    let mut scorer = Scorer::new(&rt, &bundle).unwrap();
    let image = image::open(data.join("test/good/000.png")).unwrap().to_rgb8();
    let batch = ImageBatch::from_images(&[image], 128, 128, &Normalisation::IMAGENET);
    let mut patch = scorer.raw_patch_scores(&batch).unwrap().remove(0);
    stats.apply(&mut patch);
    let want =
        anomaly_map::anomaly_map(patch.view(), 128, 128, &GaussianBlur::new(bundle.manifest.cfa.sigma));
    let (got, _) = scorer.score(&batch).unwrap();
    let worst = got[0].map.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "maps differ by up to {worst}");

    // An older format cannot carry them: the manifest check says which field and the fix.
    let old = copy_bundle(model, "position-old-format");
    let manifest = old.join("model.toml");
    std::fs::write(&manifest, text.replace("format_version = 2", "format_version = 1")).unwrap();
    let err = Bundle::load(&old).unwrap_err().to_string();
    assert!(err.contains("cfa.position_norm") && err.contains("retrain"), "{err}");

    // A manifest that promises statistics the weights file lacks names the missing tensor.
    let mut plain = bundle.clone();
    plain.dir = model.parent().unwrap().join("position-missing");
    plain.set_position(None);
    bundle::write(&plain).unwrap();
    let manifest = plain.dir.join("model.toml");
    let plain_text = std::fs::read_to_string(&manifest).unwrap();
    assert!(plain_text.contains("format_version = 1") && !plain_text.contains("position_norm"));
    assert!(Bundle::load(&plain.dir).unwrap().position.is_none(), "a plain bundle loads without them");
    let promised = plain_text
        .replace("format_version = 1", "format_version = 2")
        .replace("memory_size = 1024", "memory_size = 1024\nposition_norm = true");
    std::fs::write(&manifest, promised).unwrap();
    let err = Bundle::load(&plain.dir).unwrap_err().to_string();
    assert!(err.contains("position.mean") && err.contains("weights.safetensors"), "{err}");
}

#[test]
fn a_required_provider_that_is_missing_stops_and_an_optional_one_falls_back() {
    let (model, data) = fixture();
    let image = data.join("test/good/000.png");
    let (model, image) = (model.to_str().unwrap(), image.to_str().unwrap());
    // The CPU build of ONNX Runtime has no CUDA: required means a configuration error (78).
    let out = inspectd(&["score", "--model", model, "--require-provider", "cuda", image]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("'cuda' is required"), "{err}");
    // Listed but not required: a warning, then CPU.
    let out = Command::new(env!("CARGO_BIN_EXE_inspectd"))
        .args(["score", "--model", model, "--providers", "cuda,cpu", image])
        .env("INSPECTD_LOG", "info")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("provider=cuda") && log.contains("falling back"), "{log}");
    assert!(log.contains("session created") && log.contains("provider=cpu"), "{log}");
}

#[test]
fn the_cpu_knn_kernel_scores_like_the_bundles_graph() {
    use inspectd::cfa::preprocess::Normalisation;
    use inspectd::model::bundle::Bundle;
    use inspectd::model::scorer::{ImageBatch, KnnPath, Scorer, ScorerOptions};
    let (model, data) = fixture();
    let bundle = Bundle::load(model).unwrap();
    let rt = Runtime::init(RuntimeSettings::default()).unwrap();
    let mut kernel = Scorer::with_knn(&rt, &bundle, Some(KnnPath::Kernel)).unwrap();
    let mut graph = Scorer::with_knn(&rt, &bundle, Some(KnnPath::Graph)).unwrap();
    assert_eq!((kernel.knn_path(), graph.knn_path()), (KnnPath::Kernel, KnnPath::Graph));
    assert_eq!(Scorer::new(&rt, &bundle).unwrap().knn_path(), KnnPath::Kernel, "the CPU provider");
    let window_in_graph =
        ScorerOptions { knn: Some(KnnPath::Graph), knn_window: Some(4), ..ScorerOptions::default() };
    let err = Scorer::with_options(&rt, &bundle, window_in_graph).err().expect("a window is never ignored");
    assert!(err.to_string().contains("knn_window runs in the CPU kNN kernel only"), "{err}");
    let mut images = Vec::new();
    for entry in walk(&data.join("test")) {
        images.push(image::open(entry).unwrap().to_rgb8());
    }
    assert!(images.len() >= 3, "good and defective test images");
    let batch = ImageBatch::from_images(&images, 128, 128, &Normalisation::IMAGENET);
    let (a, _) = kernel.nearest(&batch).unwrap();
    let (b, _) = graph.nearest(&batch).unwrap();
    assert_eq!(a.dim(), b.dim());
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs() / y.abs().max(1e-3)).fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "largest relative difference of the K nearest distances: {worst}");
    let (sa, _) = kernel.score(&batch).unwrap();
    let (sb, _) = graph.score(&batch).unwrap();
    for (x, y) in sa.iter().zip(&sb) {
        assert!((x.score - y.score).abs() <= 1e-4 * y.score.abs().max(1.0), "{} vs {}", x.score, y.score);
    }
    // With more than one thread, a batch's images run side by side on one-thread lanes; alone,
    // an image runs on the shared pool. Both give the same maps.
    let threads = rt.threads();
    assert_eq!(kernel.lanes(), if threads >= 2 { threads.min(4) } else { 0 }, "lanes with {threads} threads");
    for (i, together) in sa.iter().enumerate() {
        let alone = ImageBatch::from_images(&images[i..i + 1], 128, 128, &Normalisation::IMAGENET);
        let (alone, _) = kernel.score(&alone).unwrap();
        let worst = alone[0].map.iter().zip(&together.map).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-4 * together.score.abs().max(1.0), "image {i}: maps differ by up to {worst}");
    }
}

/// Every PNG under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "png") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn piping_into_head_ends_quietly() {
    // `inspectd score … | head -1`: the reader goes after one line; the scorer must end
    // without a panic or a backtrace, as any Unix tool would.
    let (model, data) = fixture();
    let folders: Vec<PathBuf> = ["test/good", "test/hole", "test/scratch", "train/good"]
        .iter()
        .map(|f| data.join(f))
        .filter(|f| f.is_dir())
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_inspectd"))
        .args(["score", "--batch", "1", "--model", model.to_str().unwrap()])
        .args(&folders)
        .env("INSPECTD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.contains("\"score\""), "{first}");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?}", out.status);
}

#[test]
fn bench_reports_every_batch_size_and_how_the_knn_ran() {
    let (model, _) = fixture();
    let run = |precision: &str| {
        let out = inspectd(&[
            "bench",
            "--model",
            model.to_str().unwrap(),
            "--batch",
            "1,3",
            "--seconds",
            "0.2",
            "--knn-precision",
            precision,
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let fp32 = run("fp32");
    assert_eq!(fp32["knn_path"], "kernel");
    assert!(fp32["int8_candidates"].is_null());
    let stages = fp32["stages"].as_array().unwrap();
    assert_eq!(stages.iter().map(|s| s["batch"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 3]);
    for s in stages {
        assert!(s["images_per_second"].as_f64().unwrap() > 0.0 && s["knn_ms"].as_f64().unwrap() > 0.0, "{s}");
    }
    // auto: int8 where the CPU has AVX-512 VNNI, the fp32 kernel elsewhere.
    let auto = run("auto");
    let vnni =
        std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw");
    assert_eq!(auto["int8_candidates"].as_u64(), vnni.then_some(8), "{auto}");
}
