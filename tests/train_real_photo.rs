//! Training on real photographs (skimage's bundled images, extracted by scripts/setup) with
//! the default recipe, through the real binary, backbone and ONNX Runtime: a floor that fails
//! when the recipe regresses, and the proof that choosing the epoch never reads test data.

mod common;

use std::path::{Path, PathBuf};

use common::{inspectd, local};
use inspectd::synth::photo::{photo_source, write_photo_category, Level, PhotoSpec};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inspectd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn photo(file: &str) -> image::RgbImage {
    let path = local(&format!("data/{file}"));
    image::open(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", path.display())).to_rgb8()
}

/// A reduced real-photo category: `train` good training images, 16 good test images and
/// 6 per defect type, at 256 px.
fn category(root: &Path, name: &str, level: Level, train: usize) -> PathBuf {
    let source = photo_source(name).unwrap();
    let spec = PhotoSpec {
        source,
        photo: photo(source.file),
        donor: photo("astronaut.png"),
        level,
        size: 256,
        train_good: train,
        test_good: 16,
        test_defect_per_type: 6,
        seed: 11,
    };
    write_photo_category(&spec, &root.join(level.name())).unwrap().category_dir
}

fn train(data: &Path, model: &Path, extra: &[&str]) -> String {
    let mut args = vec!["train", data.to_str().unwrap(), "--out", model.to_str().unwrap(), "--seed", "0"];
    args.extend_from_slice(extra);
    String::from_utf8_lossy(&inspectd(&args).stderr).into_owned()
}

fn eval(data: &Path, model: &Path) -> serde_json::Value {
    let out =
        inspectd(&["eval", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["categories"][0].clone()
}

/// Every file of the bundle, with the manifest's wall-clock lines (creation date, training
/// time) removed: those differ between any two runs.
fn bundle_bytes(model: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(model).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let mut bytes = std::fs::read(&p).unwrap();
            if name == "model.toml" {
                let text = String::from_utf8(bytes).unwrap();
                let timeless = ["created_at", "date", "elapsed_s"];
                bytes = text
                    .lines()
                    .filter(|l| !timeless.iter().any(|k| l.starts_with(&format!("{k} ="))))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes();
            }
            (name, bytes)
        })
        .collect()
}

#[test]
fn the_default_recipe_finds_defects_on_real_gravel() {
    let root = temp_dir("real-photo-floor");
    let data = category(&root, "gravel", Level::Clear, 60);
    let model = root.join("model");
    let log = train(&data, &model, &["--epochs", "12"]);
    let r = eval(&data, &model);
    let (image, pixel, aupro) = (
        r["image_auroc"].as_f64().unwrap(),
        r["pixel_auroc"].as_f64().unwrap(),
        r["aupro"].as_f64().unwrap(),
    );
    eprintln!("{log}\ngravel (clear): image AUROC {image:.4}, pixel AUROC {pixel:.4}, AUPRO {aupro:.4}");
    // The validation curve is in the eval output and the train summary.
    let curve = r["validation"].as_array().unwrap();
    assert!(curve.len() >= 2, "a validation point before training and after each epoch");
    assert!((r["selected_epoch"].as_u64().unwrap() as usize) < curve.len());
    assert!(log.contains("validation curve"), "{log}");
    // Floors from the measured figures of this exact set, with a margin for float noise; the
    // recipe this issue replaced (batch 4, trainable radius, last epoch) scores well below.
    assert!(image >= 0.90, "image AUROC {image}");
    assert!(pixel >= 0.95, "pixel AUROC {pixel}");
    assert!(aupro >= 0.85, "AUPRO {aupro}");
    int8_search_scores_like_the_exact_one(&data, &model, &r);
    std::fs::remove_dir_all(&root).unwrap();
}

/// What standardisation must gain on the reduced subtle brick set, and the image AUROC it must
/// reach: measured 0.9115 standardised against 0.8281 raw (session 9), with a margin.
const GAIN: f64 = 0.04;
const BRICK_FLOOR: f64 = 0.88;

/// Position standardisation (on by default) against the same model's raw patch scores, on
/// subtle defects in real brick: the bundle is evaluated as trained, then with `[cfa]
/// position_norm` taken out of a copy's manifest (the weights file, and so its hash, unchanged;
/// a format-1 manifest ignores the statistics).
#[test]
fn position_standardisation_finds_more_subtle_defects_on_real_brick() {
    let root = temp_dir("real-photo-position");
    let data = category(&root, "brick", Level::Subtle, 60);
    let model = root.join("model");
    let log = train(&data, &model, &["--epochs", "12"]);
    assert!(log.contains("standardised per patch position"), "{log}");
    let manifest = std::fs::read_to_string(model.join("model.toml")).unwrap();
    assert!(manifest.contains("position_norm = true"), "the default standardises:\n{manifest}");
    let raw = root.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    for entry in std::fs::read_dir(&model).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), raw.join(entry.file_name())).unwrap();
    }
    let plain =
        manifest.replace("format_version = 2", "format_version = 1").replace("position_norm = true\n", "");
    std::fs::write(raw.join("model.toml"), plain).unwrap();
    let (with, without) = (eval(&data, &model), eval(&data, &raw));
    let figure = |r: &serde_json::Value, key: &str| r[key].as_f64().unwrap();
    eprintln!(
        "brick (subtle): image AUROC {:.4} standardised, {:.4} raw; pixel AUROC {:.4} / {:.4}",
        figure(&with, "image_auroc"),
        figure(&without, "image_auroc"),
        figure(&with, "pixel_auroc"),
        figure(&without, "pixel_auroc"),
    );
    // Floors from the measured figures of this exact set, with a margin for float noise.
    assert!(
        figure(&with, "image_auroc") >= figure(&without, "image_auroc") + GAIN,
        "standardisation must gain at least {GAIN} image AUROC"
    );
    assert!(figure(&with, "image_auroc") >= BRICK_FLOOR, "image AUROC {}", figure(&with, "image_auroc"));
    assert!(figure(&with, "pixel_auroc") >= figure(&without, "pixel_auroc") - 0.005);
    std::fs::remove_dir_all(&root).unwrap();
}

/// The kNN's int8 first pass (on by default where the CPU has AVX-512 VNNI) against the exact
/// fp32 search on the same real-photo model: the same figures, and the exact K nearest for
/// at least 99.9 % of patches. Without VNNI, asking for int8 by name is a clear error.
fn int8_search_scores_like_the_exact_one(data: &Path, model: &Path, default: &serde_json::Value) {
    let run = |precision: &str, audit: bool| {
        let mut args =
            vec!["eval", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"];
        args.extend(["--knn-precision", precision]);
        if audit {
            args.push("--knn-audit");
        }
        inspectd(&args)
    };
    let fp32: serde_json::Value = serde_json::from_slice(&run("fp32", false).stdout).unwrap();
    let fp32 = &fp32["categories"][0];
    assert!(fp32["knn"]["int8_candidates"].is_null());
    let int8 = run("int8", true);
    if default["knn"]["int8_candidates"].is_null() {
        let err = String::from_utf8_lossy(&int8.stderr);
        assert!(!int8.status.success() && err.contains("AVX-512 VNNI"), "{err}");
        eprintln!("this CPU has no AVX-512 VNNI: the default ran fp32, and int8 by name was refused");
        return;
    }
    let int8: serde_json::Value = serde_json::from_slice(&int8.stdout).unwrap();
    let int8 = &int8["categories"][0];
    for key in ["image_auroc", "pixel_auroc", "aupro"] {
        let (a, b) = (int8[key].as_f64().unwrap(), fp32[key].as_f64().unwrap());
        assert!((a - b).abs() <= 0.002, "{key}: int8 {a} against fp32 {b}");
        assert_eq!(default[key], int8[key], "{key}: the default is the int8 search");
    }
    let audit = &int8["knn"]["audit"];
    let (exact, patches) = (audit["exact"].as_u64().unwrap(), audit["patches"].as_u64().unwrap());
    eprintln!("int8 kNN: exact K nearest for {exact} of {patches} patches");
    assert!(patches >= 4096 && exact as f64 >= 0.999 * patches as f64, "{audit}");
}

#[test]
fn choosing_the_epoch_never_reads_the_test_split() {
    let root = temp_dir("no-test-data");
    let data = category(&root, "coffee", Level::Subtle, 20);
    let (first, second) = (root.join("first"), root.join("second"));
    // The same model id for both (it defaults to the output folder's name).
    let opts = ["--epochs", "3", "--patience", "2", "--id", "coffee"];
    let log = train(&data, &first, &opts);
    assert!(log.contains("kept epoch"), "the epoch was chosen on validation data:\n{log}");
    // Replace every test image (good and defective) and every mask by noise.
    let mut replaced = 0;
    for dir in ["test", "ground_truth"] {
        for entry in glob::glob(&format!("{}/{dir}/*/*.png", data.display())).unwrap() {
            let path = entry.unwrap();
            let (w, h) = image::image_dimensions(&path).unwrap();
            let mut state = replaced as u32 * 2_654_435_761 + 1;
            let noise = image::RgbImage::from_fn(w, h, |_, _| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
            });
            noise.save(&path).unwrap();
            replaced += 1;
        }
    }
    assert!(replaced >= 16 + 4 * 6 * 2, "replaced {replaced} files");
    train(&data, &second, &opts);
    let (a, b) = (bundle_bytes(&first), bundle_bytes(&second));
    assert_eq!(a.iter().map(|f| &f.0).collect::<Vec<_>>(), b.iter().map(|f| &f.0).collect::<Vec<_>>());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let lines = |b: &[u8]| String::from_utf8_lossy(b).lines().map(str::to_owned).collect::<Vec<_>>();
        let changed: Vec<String> = if name.ends_with(".toml") {
            let (lx, ly) = (lines(x), lines(y));
            lx.iter().zip(&ly).filter(|(a, b)| a != b).map(|(a, b)| format!("{a}  ->  {b}")).collect()
        } else {
            Vec::new()
        };
        assert!(
            x == y,
            "{name} differs once the test split is noise (selection read test data): {changed:#?}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}
