use super::*;
use std::time::{Duration, UNIX_EPOCH};

use image::Rgb;
use ndarray::Array2;

/// A fresh directory per test, so tests run in parallel.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inspectd-evidence-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn grey_frame() -> RgbImage {
    RgbImage::from_pixel(16, 12, Rgb([120, 120, 120]))
}

/// Cold everywhere except a hot top-left corner.
fn hot_corner_map() -> Array2<f32> {
    Array2::from_shape_fn((12, 16), |(y, x)| if x < 4 && y < 4 { 2.0 } else { 0.0 })
}

/// `map` over the whole grey frame.
fn heat(map: &Array2<f32>, vmax: f32) -> Heat<'_> {
    let (w, h) = grey_frame().dimensions();
    Heat { roi: Rect::whole(w, h), map: map.view(), vmax, regions: &[] }
}

fn save(store: &mut EvidenceStore, camera: &str, seq: u64, secs: u64) -> EvidencePaths {
    store.save(camera, seq, at(secs), &grey_frame(), heat(&hot_corner_map(), 2.0)).expect("saves")
}

/// Every evidence file under `dir`, as `camera/name`, sorted.
fn files_on_disk(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for camera in fs::read_dir(dir).expect("dir exists") {
        let camera = camera.expect("entry").path();
        for file in fs::read_dir(&camera).expect("camera dir") {
            let file = file.expect("entry").path();
            let rel = file.strip_prefix(dir).expect("inside").to_string_lossy().into_owned();
            names.push(rel);
        }
    }
    names.sort();
    names
}

#[test]
fn saves_the_frame_and_a_coloured_heatmap_as_readable_images() {
    let dir = test_dir("readable");
    let mut store = EvidenceStore::open(&dir, 100, 1 << 30, EvidenceFormat::Png).expect("opens");
    let paths = save(&mut store, "line1", 7, 0);
    assert_eq!(paths.frame, dir.join("line1/2027-01-15T08-00-00.000Z_7_frame.png"));
    let frame = image::open(&paths.frame).expect("frame decodes").to_rgb8();
    let heat = image::open(&paths.heatmap).expect("heatmap decodes").to_rgb8();
    assert_eq!(frame, grey_frame(), "PNG evidence is the exact frame");
    let (hot, cold) = (heat.get_pixel(0, 0), heat.get_pixel(15, 11));
    assert!(hot[0] > hot[2] && cold[2] > cold[0], "hot corner red, rest blue: {hot:?} {cold:?}");
    assert_eq!(files_on_disk(&dir).len(), 2, "no temporary files left behind");
    assert_eq!(store.usage().files, 2);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn jpeg_evidence_uses_the_jpg_extension_and_decodes() {
    let dir = test_dir("jpeg");
    let mut store = EvidenceStore::open(&dir, 100, 1 << 30, EvidenceFormat::Jpeg).expect("opens");
    let paths = save(&mut store, "line1", 1, 0);
    assert!(paths.heatmap.to_string_lossy().ends_with("_1_heatmap.jpg"));
    let heat = image::open(&paths.heatmap).expect("decodes").to_rgb8();
    assert_eq!(heat.dimensions(), (16, 12));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn count_cap_removes_the_oldest_evidence_across_cameras() {
    let dir = test_dir("count");
    let mut store = EvidenceStore::open(&dir, 4, 1 << 30, EvidenceFormat::Png).expect("opens");
    save(&mut store, "a", 1, 10);
    save(&mut store, "b", 1, 20);
    save(&mut store, "a", 2, 30);
    assert_eq!(
        files_on_disk(&dir),
        vec![
            "a/2027-01-15T08-00-30.000Z_2_frame.png",
            "a/2027-01-15T08-00-30.000Z_2_heatmap.png",
            "b/2027-01-15T08-00-20.000Z_1_frame.png",
            "b/2027-01-15T08-00-20.000Z_1_heatmap.png",
        ]
    );
    assert_eq!(store.usage().files, 4);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn byte_cap_removes_the_oldest_evidence() {
    let dir = test_dir("bytes");
    let one = {
        let mut probe =
            EvidenceStore::open(test_dir("bytes-probe"), 100, 1 << 30, EvidenceFormat::Png).expect("opens");
        save(&mut probe, "a", 1, 0);
        let _ = fs::remove_dir_all(test_dir("bytes-probe"));
        probe.usage().bytes
    };
    // Room for two and a half items: the third save must age out the first.
    let mut store = EvidenceStore::open(&dir, 100, 2 * one + one / 2, EvidenceFormat::Png).expect("opens");
    let first = save(&mut store, "a", 1, 1);
    save(&mut store, "a", 2, 2);
    assert!(first.frame.exists());
    save(&mut store, "a", 3, 3);
    assert!(!first.frame.exists() && !first.heatmap.exists());
    assert_eq!(store.usage(), Usage { files: 4, bytes: 2 * one });
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn the_evidence_just_saved_is_kept_even_when_it_alone_exceeds_the_cap() {
    let dir = test_dir("keep-newest");
    let mut store = EvidenceStore::open(&dir, 1, 1, EvidenceFormat::Png).expect("opens");
    let first = save(&mut store, "a", 1, 1);
    assert!(first.frame.exists() && first.heatmap.exists());
    let second = save(&mut store, "a", 2, 2);
    assert!(!first.frame.exists());
    assert!(second.frame.exists() && second.heatmap.exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn saving_the_same_frame_twice_is_counted_once() {
    let dir = test_dir("twice");
    let mut store = EvidenceStore::open(&dir, 100, 1 << 30, EvidenceFormat::Png).expect("opens");
    save(&mut store, "a", 1, 1);
    let once = store.usage();
    save(&mut store, "a", 1, 1);
    assert_eq!(store.usage(), once);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn reopening_counts_existing_evidence_and_keeps_foreign_files() {
    let dir = test_dir("reopen");
    let (first, usage) = {
        let mut store = EvidenceStore::open(&dir, 100, 1 << 30, EvidenceFormat::Png).expect("opens");
        let first = save(&mut store, "a", 1, 1);
        save(&mut store, "b", 1, 2);
        (first, store.usage())
    };
    fs::write(dir.join("a/notes.txt"), b"operator notes").expect("writes");
    let stale = dir.join("a/.2027-01-15T08-00-09.000Z_9_frame.png.tmp");
    fs::write(&stale, b"half a png").expect("writes");

    let mut store = EvidenceStore::open(&dir, 4, 1 << 30, EvidenceFormat::Png).expect("reopens");
    assert_eq!(store.usage(), usage, "existing evidence counts against the caps");
    assert!(!stale.exists(), "a crash's temporary file is removed");
    save(&mut store, "a", 2, 3);
    assert!(!first.frame.exists(), "the oldest evidence from before the restart is aged out");
    assert!(dir.join("a/notes.txt").exists(), "files inspectd did not write are never deleted");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn errors_name_the_camera_or_the_path() {
    let dir = test_dir("errors");
    let mut store = EvidenceStore::open(&dir, 100, 1 << 30, EvidenceFormat::Png).expect("opens");
    let wrong_map = Array2::<f32>::zeros((4, 4));
    let err = store.save("line1", 3, at(0), &grey_frame(), heat(&wrong_map, 1.0)).expect_err("size");
    assert_eq!(
        err.to_string(),
        "camera line1 frame 3: anomaly map is 4x4 but its roi is 16x12 at (0, 0) in a 16x12 frame"
    );
    let err = store.save("../etc", 3, at(0), &grey_frame(), heat(&hot_corner_map(), 1.0)).expect_err("id");
    assert!(err.to_string().contains("\"../etc\"") && !err.is_transient(), "{err}");

    let not_a_dir = dir.join("file");
    fs::write(&not_a_dir, b"x").expect("writes");
    let err = EvidenceStore::open(&not_a_dir, 1, 1, EvidenceFormat::Png).expect_err("a file");
    assert!(err.to_string().contains(&*not_a_dir.to_string_lossy()) && err.is_transient(), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn from_config_defaults_to_the_state_directory_and_checks_the_format() {
    let state = test_dir("config");
    let store = EvidenceStore::from_config(&EvidenceConfig::default(), &state).expect("opens");
    assert_eq!(store.layout().dir(), state.join("evidence"));
    assert_eq!(store.layout().format(), EvidenceFormat::Jpeg);
    let bad = EvidenceConfig { format: "gif".into(), ..EvidenceConfig::default() };
    assert!(matches!(EvidenceStore::from_config(&bad, &state), Err(EvidenceError::Format { .. })));
    let _ = fs::remove_dir_all(&state);
}

/// At 5 MP (2448×2048) an alarm's evidence is two JPEGs of the whole frame, one with the
/// heatmap over a tiled ROI and its region boxed; the byte cap still holds with them.
#[test]
fn five_megapixel_evidence_stays_within_the_byte_cap() {
    use crate::synth::frames::{frame_good, FrameSetSpec};
    let spec = FrameSetSpec {
        category: crate::synth::Category::Fabric,
        width: 2448,
        height: 2048,
        train_good: 0,
        test_good: 0,
        test_defect: 0,
        seed: 3,
    };
    let frame = frame_good(&spec, 0);
    let roi = Rect { x: 24, y: 24, width: 2400, height: 2000 };
    let map = Array2::from_shape_fn((2000, 2400), |(y, x)| ((x / 40 + y / 40) % 7) as f32 * 0.3);
    let region = Region { x: 1200, y: 900, w: 14, h: 12, peak: 2.0, area: 120 };
    let heat = Heat { roi, map: map.view(), vmax: 2.0, regions: std::slice::from_ref(&region) };
    let dir = test_dir("five-mp");
    let mut probe = EvidenceStore::open(dir.join("probe"), 100, u64::MAX, EvidenceFormat::Jpeg).unwrap();
    let paths = probe.save("cam", 1, at(0), &frame, heat).unwrap();
    let per_alarm = probe.usage().bytes;
    let heatmap = image::open(&paths.heatmap).unwrap();
    assert_eq!((heatmap.width(), heatmap.height()), (2448, 2048));
    eprintln!("bytes per alarm at 2448x2048 (frame + heatmap, JPEG): {per_alarm}");
    assert!(per_alarm < 8 << 20, "{per_alarm} bytes per alarm");
    let cap = 3 * per_alarm + per_alarm / 2;
    let mut store = EvidenceStore::open(dir.join("capped"), 100, cap, EvidenceFormat::Jpeg).unwrap();
    for seq in 0..6 {
        store.save("cam", seq, at(seq), &frame, heat).unwrap();
        assert!(store.usage().bytes <= cap, "after alarm {seq}: {:?} over the cap {cap}", store.usage());
    }
    let _ = fs::remove_dir_all(&dir);
}
