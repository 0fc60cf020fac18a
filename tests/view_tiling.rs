//! Real camera frames: a model's view (ROI, native-resolution tiles, ignore masks) through the
//! real binary, backbone and ONNX Runtime, on generated 1024×768 textures whose defects are
//! 3–15 px across.

mod common;

use common::inspectd;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use inspectd::model::bundle::Bundle;
use inspectd::model::runtime::{Runtime, RuntimeSettings};
use inspectd::model::scorer::{ImageBatch, Scorer};
use inspectd::synth::frames::{write_frame_set, FrameSetSpec};
use inspectd::synth::Category;
use inspectd::view::stitch::TileGrid;
use inspectd::view::Fit;
use serde_json::Value;

/// Frames of 1024×768; the tiled model's tiles are 128 px with 16 px overlap (stride 112).
const TILE: u32 = 128;
const STRIDE: u32 = 112;

struct Fixture {
    data: PathBuf,
    tiled: PathBuf,
    untiled: PathBuf,
}

/// The data set and two models trained once per test binary on the same 8 frames: one tiled
/// at native resolution, one with the whole frame letterboxed into 256 px.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("inspectd-tiling-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let spec = FrameSetSpec {
            category: Category::Fabric,
            width: 1024,
            height: 768,
            train_good: 8,
            test_good: 10,
            test_defect: 12,
            seed: 1,
        };
        let data = write_frame_set(&spec, &root).unwrap();
        let (tiled, untiled) = (root.join("tiled"), root.join("untiled"));
        let d = data.to_str().unwrap();
        let common = ["--epochs", "5", "--seed", "0"];
        let tile = ["--tile", "128", "--tile-overlap", "16"];
        inspectd(&[&["train", d, "--out", tiled.to_str().unwrap()], &tile[..], &common[..]].concat());
        let flat = ["--letterbox", "--size", "256"];
        inspectd(&[&["train", d, "--out", untiled.to_str().unwrap()], &flat[..], &common[..]].concat());
        Fixture { data, tiled, untiled }
    })
}

fn eval(model: &Path, data: &Path) -> Value {
    let out =
        inspectd(&["eval", "--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["categories"][0].clone()
}

#[test]
fn a_tiled_model_finds_small_defects_that_the_same_data_untiled_misses() {
    let f = fixture();
    let manifest = std::fs::read_to_string(f.tiled.join("model.toml")).unwrap();
    assert!(manifest.contains("[view]") && manifest.contains("fit = \"tiles\""), "{manifest}");
    assert!(
        manifest.contains("frame = [\n    1024,\n    768,\n]") || manifest.contains("frame = [1024, 768]"),
        "{manifest}"
    );
    let tiled = eval(&f.tiled, &f.data);
    let untiled = eval(&f.untiled, &f.data);
    let (t, u) = (tiled["image_auroc"].as_f64().unwrap(), untiled["image_auroc"].as_f64().unwrap());
    eprintln!(
        "image AUROC tiled {t:.3} (pixel {:.3}), untiled {u:.3} (pixel {:.3})",
        tiled["pixel_auroc"], untiled["pixel_auroc"]
    );
    assert!(t >= u + 0.15, "tiled {t:.3} is not 0.15 above untiled {u:.3}");
    assert!(t >= 0.9, "tiled image AUROC {t:.3} fell below its floor");
    assert!(tiled["pixel_auroc"].as_f64().unwrap() >= 0.95, "{tiled}");
}

/// Mean of `map` over `pixels`.
fn mean(map: &ndarray::Array2<f32>, pixels: impl Iterator<Item = (usize, usize)>) -> f32 {
    let (sum, n) = pixels.fold((0.0, 0usize), |(s, n), p| (s + map[p], n + 1));
    sum / n as f32
}

#[test]
fn a_defect_free_frame_scored_tiled_has_no_peak_on_the_tile_borders() {
    let f = fixture();
    let bundle = Bundle::load(&f.tiled).unwrap();
    let view = bundle.view(None);
    assert_eq!(view.fit, Fit::Tiles { overlap: 16 });
    let runtime = Runtime::init(RuntimeSettings::default()).unwrap();
    let mut scorer = Scorer::new(&runtime, &bundle).unwrap();
    let frame = image::open(f.data.join("test/good/000.png")).unwrap().to_rgb8();
    let prepared = view.prepare(&frame).unwrap();
    let norm = bundle.manifest.input.normalisation();
    let batch = ImageBatch::from_images(&prepared.inputs, TILE, TILE, &norm);
    let (tiles, _) = scorer.score(&batch).unwrap();
    // Each tile's own map is higher along its border (the backbone's zero padding)...
    let ring = |y: usize, x: usize| y < 2 || x < 2 || y >= TILE as usize - 2 || x >= TILE as usize - 2;
    let all: Vec<(usize, usize)> =
        (0..TILE as usize).flat_map(|y| (0..TILE as usize).map(move |x| (y, x))).collect();
    let edge: f32 =
        tiles.iter().map(|t| mean(&t.map, all.iter().copied().filter(|&(y, x)| ring(y, x)))).sum();
    let inner: f32 =
        tiles.iter().map(|t| mean(&t.map, all.iter().copied().filter(|&(y, x)| !ring(y, x)))).sum();
    eprintln!("per-tile border / interior mean: {:.3}", edge / inner);
    // ...and the blend fades those borders out: within 2 px of an interior tile border the
    // stitched map is no higher than elsewhere.
    let maps: Vec<_> = tiles.iter().map(|t| t.map.view()).collect();
    let stitched = view.assemble(prepared.roi, &maps);
    let grid = TileGrid::new((1024, 768), (TILE, TILE), 16);
    let near = |v: usize, starts: &[u32]| {
        starts.iter().skip(1).any(|&s| v.abs_diff(s as usize) <= 2)
            || starts.iter().rev().skip(1).any(|&s| v.abs_diff((s + TILE) as usize) <= 2)
    };
    let on_seam = |(y, x): (usize, usize)| near(x, &grid.xs) || near(y, &grid.ys);
    // For contrast, the same tiles combined by a max over their overlaps keep every border.
    let mut maxed = ndarray::Array2::<f32>::zeros((768, 1024));
    for (tile, t) in grid.tiles().zip(&tiles) {
        for ((y, x), &v) in t.map.indexed_iter() {
            let p = (tile.y as usize + y, tile.x as usize + x);
            maxed[p] = maxed[p].max(v);
        }
    }
    let every = || (0..768usize).flat_map(|y| (0..1024usize).map(move |x| (y, x)));
    let ratio =
        |map| mean(map, every().filter(|&p| on_seam(p))) / mean(map, every().filter(|&p| !on_seam(p)));
    let (blended, max_combined) = (ratio(&stitched), ratio(&maxed));
    let peak = |keep: &dyn Fn((usize, usize)) -> bool| {
        every().filter(|&p| keep(p)).map(|p| stitched[p]).fold(0.0, f32::max)
    };
    let (seam_max, rest_max) = (peak(&on_seam), peak(&|p| !on_seam(p)));
    eprintln!(
        "seam / elsewhere mean: blended {blended:.3}, max-combined {max_combined:.3}; blended max {seam_max:.3} / {rest_max:.3}"
    );
    assert!(blended <= 1.03, "seams are raised: {blended:.3}");
    assert!(
        blended < max_combined,
        "blending does no better than a max: {blended:.3} against {max_combined:.3}"
    );
    assert!(seam_max < rest_max, "the frame's peak lies on a tile seam: {seam_max} against {rest_max}");
}

#[test]
fn score_heatmaps_have_the_frame_size_and_regions_are_where_the_defect_is() {
    let f = fixture();
    let dir = f.tiled.parent().unwrap().join("heatmaps");
    let mut checked = 0;
    for i in 0..4 {
        let image = f.data.join(format!("test/small/{i:03}.png"));
        let out = inspectd(&[
            "score",
            "--model",
            f.tiled.to_str().unwrap(),
            "--heatmap",
            dir.to_str().unwrap(),
            image.to_str().unwrap(),
        ]);
        let line: Value = serde_json::from_slice(&out.stdout).unwrap();
        let heatmap = image::open(line["heatmap"].as_str().unwrap()).unwrap();
        assert_eq!((heatmap.width(), heatmap.height()), (1024, 768), "heatmap at the frame's size");
        if line["verdict"] != "NG" {
            continue;
        }
        let mask =
            image::open(f.data.join(format!("ground_truth/small/{i:03}_mask.png"))).unwrap().to_luma8();
        let marked: Vec<(u32, u32)> =
            mask.enumerate_pixels().filter(|(_, _, p)| p.0[0] > 0).map(|(x, y, _)| (x, y)).collect();
        let (dx, dy) = (marked[0].0 as i64, marked[0].1 as i64);
        let r = &line["regions"][0];
        let (x, y, w, h) = [&r["x"], &r["y"], &r["w"], &r["h"]].map(|v| v.as_i64().unwrap()).into();
        let gap = |v: i64, lo: i64, len: i64| if v < lo { lo - v } else { (v - lo - len).max(0) };
        let (gx, gy) = (gap(dx, x, w), gap(dy, y, h));
        assert!(
            gx <= STRIDE as i64 && gy <= STRIDE as i64,
            "region {r} is {gx}/{gy} px from the defect at ({dx}, {dy})"
        );
        checked += 1;
    }
    assert!(checked >= 2, "at least two of four defects should be NG and located, got {checked}");
}

/// A folder holding `copies` copies of one image.
fn repeated(dir: &Path, image: &Path, copies: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..copies {
        std::fs::copy(image, dir.join(format!("{i:03}.png"))).unwrap();
    }
    dir.to_path_buf()
}

/// Replays `frames` as camera `line` of a config whose camera section ends in `extra`; returns
/// the summary.
fn replay(root: &Path, name: &str, model: &Path, frames: &Path, extra: &str) -> Value {
    let config = root.join(format!("{name}.toml"));
    let text = format!(
        "[node]\nid = \"n\"\nstate_dir = \"{}\"\n[models.m]\npath = \"{}\"\n[cameras.line]\nmodel = \"m\"\n{extra}\n\
         [cameras.line.source]\nkind = \"file\"\npath = \"{}\"\n",
        root.join("state").display(),
        model.display(),
        frames.join("000.png").display()
    );
    std::fs::write(&config, text).unwrap();
    let summary = root.join(format!("{name}.summary.json"));
    let out = root.join(format!("{name}.jsonl"));
    let c = config.to_str().unwrap();
    let args = ["replay", "--model", model.to_str().unwrap(), "--config", c, "--camera", "line"];
    let more =
        ["--summary", summary.to_str().unwrap(), "--out", out.to_str().unwrap(), frames.to_str().unwrap()];
    inspectd(&[&args[..], &more[..]].concat());
    serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap()
}

#[test]
fn an_ignored_defect_raises_nothing_and_the_same_defect_not_ignored_raises_an_alarm() {
    let f = fixture();
    let root = f.tiled.parent().unwrap().join("ignore");
    // The first defect frame the tiled model calls NG, repeated as a stream.
    let (index, line) = (0..12)
        .find_map(|i| {
            let image = f.data.join(format!("test/small/{i:03}.png"));
            let out = inspectd(&["score", "--model", f.tiled.to_str().unwrap(), image.to_str().unwrap()]);
            let line: Value = serde_json::from_slice(&out.stdout).unwrap();
            (line["verdict"] == "NG").then_some((i, line))
        })
        .expect("an NG defect frame");
    let frames = repeated(&root.join("frames"), &f.data.join(format!("test/small/{index:03}.png")), 6);
    // A polygon 40 px around the defect's region, in sensor pixels.
    let r = &line["regions"][0];
    let (x, y, w, h) = [&r["x"], &r["y"], &r["w"], &r["h"]].map(|v| v.as_f64().unwrap()).into();
    let (x0, y0, x1, y1) = (x - 40.0, y - 40.0, x + w + 40.0, y + h + 40.0);
    let ignore = format!("ignore = [[[{x0}, {y0}], [{x1}, {y0}], [{x1}, {y1}], [{x0}, {y1}]]]");
    // Ignoring the strongest region lowers the frame's score below the defect's. The camera's
    // threshold is set between the two: what this test is about is the polygon, not a
    // threshold calibrated on the fixture's 2 held-out frames.
    let probe = replay(&root, "probe", &f.tiled, &frames, &ignore);
    let (open_score, masked_score) =
        (line["score"].as_f64().unwrap(), probe["scores"]["max"].as_f64().unwrap());
    assert!(masked_score < open_score, "ignored, the defect no longer sets the score: {probe}");
    let threshold = format!("threshold = {}", (open_score + masked_score) / 2.0);
    let open = replay(&root, "open", &f.tiled, &frames, &threshold);
    // The annotated recording of a model with a view is at the frames' own size.
    let video = root.join("open.mkv");
    let c = root.join("open.toml");
    let args =
        ["replay", "--model", f.tiled.to_str().unwrap(), "--config", c.to_str().unwrap(), "--camera", "line"];
    inspectd(&[&args[..], &["--annotate", video.to_str().unwrap(), frames.to_str().unwrap()][..]].concat());
    let annotated = inspectd::source::sample_frames(&video, 0, 0, 1).unwrap();
    assert_eq!((annotated[0].width, annotated[0].height), (1024, 768));
    assert!(
        open["inputs"][0]["alarms"].as_u64().unwrap() >= 1,
        "not ignored, the defect raises an alarm: {open}"
    );
    let masked = replay(&root, "masked", &f.tiled, &frames, &format!("{ignore}\n{threshold}"));
    assert_eq!(masked["inputs"][0]["alarms"], 0, "ignored, it raises nothing: {masked}");
    assert_eq!(masked["inputs"][0]["ng"], 0, "{masked}");
}

/// A mask given to `train` is stored in the bundle (hash-checked) and applied by `score`.
#[test]
fn a_training_mask_is_stored_in_the_bundle_and_hides_what_it_covers() {
    let f = fixture();
    let root = f.tiled.parent().unwrap().join("train-mask");
    std::fs::create_dir_all(&root).unwrap();
    // Inspect only the left half of a 512×384 ROI at the frame's top left.
    let mut mask = image::GrayImage::from_pixel(512, 384, image::Luma([255]));
    for (x, _, p) in mask.enumerate_pixels_mut() {
        if x >= 256 {
            p.0[0] = 0;
        }
    }
    let mask_file = root.join("mask.png");
    mask.save(&mask_file).unwrap();
    let model = root.join("model");
    let args = ["train", f.data.to_str().unwrap(), "--out", model.to_str().unwrap(), "--roi", "0,0,512,384"];
    let more =
        ["--tile", "128", "--tile-overlap", "0", "--mask", mask_file.to_str().unwrap(), "--epochs", "2"];
    inspectd(&[&args[..], &more[..]].concat());
    let manifest = std::fs::read_to_string(model.join("model.toml")).unwrap();
    assert!(manifest.contains("mask.png") && model.join("mask.png").is_file(), "{manifest}");
    // A bright blot on the ignored half: score and regions never see it. (Compared with the
    // plain frame, not with the threshold, which 2 held-out frames calibrate loosely.)
    let score = |frame: &image::RgbImage| {
        let path = root.join("frame.png");
        frame.save(&path).unwrap();
        let out = inspectd(&["score", "--model", model.to_str().unwrap(), path.to_str().unwrap()]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let plain = image::open(f.data.join("test/good/000.png")).unwrap().to_rgb8();
    let with_blot = |x0: u32| {
        let mut frame = plain.clone();
        for y in 150..170 {
            for x in x0..x0 + 20 {
                frame.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        frame
    };
    let (plain_line, hidden) = (score(&plain), score(&with_blot(380)));
    assert_eq!(hidden["score"], plain_line["score"], "{hidden}");
    assert_eq!(hidden["regions"], plain_line["regions"], "{hidden}");
    let regions = hidden["regions"].as_array().unwrap();
    assert!(regions.iter().all(|r| r["x"].as_u64().unwrap() < 256), "a region on the ignored half: {hidden}");
    // The same blot on the inspected half is found: a higher score, and a region on it.
    let seen = score(&with_blot(120));
    assert!(seen["score"].as_f64().unwrap() > plain_line["score"].as_f64().unwrap(), "{seen}");
    let on_blot = |r: &Value| {
        let (x, y, w, h) = [&r["x"], &r["y"], &r["w"], &r["h"]].map(|v| v.as_u64().unwrap()).into();
        x < 140 && x + w > 120 && y < 170 && y + h > 150
    };
    assert_eq!(seen["verdict"], "NG", "{seen}");
    assert!(seen["regions"].as_array().unwrap().iter().any(on_blot), "no region on the blot: {seen}");
    // A frame of another size is refused, naming both sizes.
    let small = root.join("small.png");
    image::RgbImage::new(640, 480).save(&small).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_inspectd"))
        .args(["score", "--model", model.to_str().unwrap(), small.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("640x480") && err.contains("1024x768"), "{err}");
}

/// `check-config` runs the daemon's start-up checks of a camera against its model's view.
#[test]
fn check_config_refuses_a_camera_roi_or_polygon_that_cannot_work() {
    let f = fixture();
    let root = f.tiled.parent().unwrap().join("check");
    std::fs::create_dir_all(&root).unwrap();
    let check = |name: &str, camera: &str| {
        let config = root.join(format!("{name}.toml"));
        let text = format!(
            "[node]\nid = \"n\"\nstate_dir = \"{}\"\n[models.m]\npath = \"{}\"\n[cameras.line]\nmodel = \"m\"\n{camera}\n\
             [cameras.line.source]\nkind = \"file\"\npath = \"{}\"\n",
            root.join("state").display(),
            f.tiled.display(),
            f.data.join("test/good/000.png").display()
        );
        std::fs::write(&config, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_inspectd"))
            .args(["check-config", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = check("outside", "roi = { x = 900, y = 0, width = 400, height = 300 }");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("cameras.line.roi") && err.contains("1024x768"), "{err}");
    let (code, err) = check("small", "roi = { x = 0, y = 0, width = 100, height = 100 }");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("smaller than one 128x128 tile"), "{err}");
    let (code, err) = check("line", "ignore = [[[1, 2], [3, 4]]]");
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("cameras.line.ignore[0]"), "{err}");
    let (code, err) = check(
        "good",
        "roi = { x = 100, y = 50, width = 800, height = 600 }\nignore = [[[110, 60], [200, 60], [200, 90]]]",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("warning"), "{err}");
    // A threshold no good part of this model scores under is a warning, not a refusal.
    let (code, err) = check("low", "threshold = 0.001");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("warning: cameras.line.threshold") && err.contains("below the median"), "{err}");
}
