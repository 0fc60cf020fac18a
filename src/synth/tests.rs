use std::fs;
use std::path::{Path, PathBuf};

use super::*;

/// A scratch directory unique to this process and test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("inspectd-synth-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tiny_spec(category: Category, seed: u64) -> SynthSpec {
    SynthSpec { category, size: 64, train_good: 3, test_good: 2, test_defect_per_type: 2, seed }
}

/// All files under `dir`, relative path and bytes, sorted by path.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.strip_prefix(dir).unwrap().to_path_buf(), fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_same_bytes_different_seed_different() {
    let (a, b, c) = (TempDir::new("det-a"), TempDir::new("det-b"), TempDir::new("det-c"));
    let spec = tiny_spec(Category::Wood, 7);
    write_category(&spec, &a.0).unwrap();
    write_category(&spec, &b.0).unwrap();
    write_category(&SynthSpec { seed: 8, ..spec }, &c.0).unwrap();
    let (sa, sb, sc) = (snapshot(&a.0), snapshot(&b.0), snapshot(&c.0));
    assert_eq!(sa, sb);
    assert_eq!(sa.len(), sc.len());
    let differing = sa.iter().zip(&sc).filter(|(x, y)| x.1 != y.1).count();
    assert_eq!(differing, sa.len(), "every file should change with the seed");
}

#[test]
fn layout_follows_mvtec_names() {
    let dir = TempDir::new("layout");
    let spec = tiny_spec(Category::PcbPad, 1);
    let summary = write_category(&spec, &dir.0).unwrap();
    let root = dir.0.join("pcb_pad");
    assert_eq!(summary.category_dir, root);
    assert_eq!(summary.files_written, 3 + 2 + 4 * 2 * 2);
    for name in ["train/good/000.png", "train/good/002.png", "test/good/001.png"] {
        assert!(root.join(name).is_file(), "{name}");
    }
    assert!(!root.join("train/good/003.png").exists());
    for kind in DefectKind::all() {
        for k in 0..2 {
            let img = image::open(root.join(format!("test/{kind}/{k:03}.png"))).unwrap();
            let mask = image::open(root.join(format!("ground_truth/{kind}/{k:03}_mask.png"))).unwrap();
            assert_eq!((img.width(), img.height()), (64, 64));
            assert_eq!((mask.width(), mask.height()), (64, 64));
            let mask = mask.to_luma8();
            assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
            assert!(mask.pixels().any(|p| p.0[0] == 255), "{kind} {k} mask empty");
        }
    }
    assert!(summary.defects.iter().all(|d| d.count == 2 && d.mean_area_fraction > 0.0));
}

#[test]
fn defect_changes_exactly_the_masked_pixels() {
    for &category in Category::all() {
        for &kind in DefectKind::all() {
            for index in [0, 5, 11] {
                let good = render_good(category, 96, 3, index);
                let (bad, mask) = render_defect(category, kind, 96, 3, index);
                let (mut inside_diff, mut inside) = (0u64, 0u64);
                for ((g, b), m) in good.pixels().zip(bad.pixels()).zip(mask.pixels()) {
                    if m.0[0] == 0 {
                        assert_eq!(g, b, "{category}/{kind}/{index}: pixel outside mask changed");
                    } else {
                        inside += 1;
                        inside_diff += (0..3).map(|c| u64::from(g.0[c].abs_diff(b.0[c]))).sum::<u64>();
                    }
                }
                let mean = inside_diff as f64 / (3 * inside.max(1)) as f64;
                assert!(mean > 20.0, "{category}/{kind}/{index}: mean |diff| in mask only {mean:.1}");
            }
        }
    }
}

#[test]
fn defect_area_within_band() {
    for size in [128, 256] {
        for &category in Category::all() {
            for &kind in DefectKind::all() {
                for index in 0..4 {
                    let (_, mask) = render_defect(category, kind, size, 11, index);
                    let area = mask.pixels().filter(|p| p.0[0] > 0).count() as f64 / mask.len() as f64;
                    assert!((0.005..=0.05).contains(&area), "{category}/{kind}/{index} @{size}: {area:.4}");
                }
            }
        }
    }
}

#[test]
fn good_images_vary_but_stay_alike() {
    for &category in Category::all() {
        let a = render_good(category, 64, 9, 0);
        let b = render_good(category, 64, 9, 1);
        assert_ne!(a, b, "{category}: good images identical");
        let mean =
            |img: &RgbImage| img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / img.len() as f64;
        assert!((mean(&a) - mean(&b)).abs() < 25.0, "{category}: brightness drifts too far");
    }
}

#[test]
fn names_round_trip_and_errors() {
    for &c in Category::all() {
        assert_eq!(c.name().parse::<Category>().unwrap(), c);
    }
    for &d in DefectKind::all() {
        assert_eq!(d.to_string().parse::<DefectKind>().unwrap(), d);
    }
    assert_eq!("Brushed-Metal".parse::<Category>().unwrap(), Category::BrushedMetal);
    assert!(matches!("plastic".parse::<Category>(), Err(SynthError::UnknownCategory(_))));
    assert!(matches!("dent".parse::<DefectKind>(), Err(SynthError::UnknownDefect(_))));
    let spec = SynthSpec { size: 8, ..SynthSpec::new(Category::Stone, 0) };
    let dir = TempDir::new("badsize");
    assert!(matches!(write_category(&spec, &dir.0), Err(SynthError::InvalidSize(8))));
}

#[test]
fn io_error_names_the_path() {
    let dir = TempDir::new("ioerr");
    // A file where the category directory should be makes create_dir fail.
    fs::write(dir.0.join("stone"), b"not a dir").unwrap();
    let err = write_category(&tiny_spec(Category::Stone, 0), &dir.0).unwrap_err();
    assert!(err.to_string().contains("stone"), "{err}");
}

/// Generation speed: `cargo test --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn generation_timing() {
    let dir = TempDir::new("timing");
    for &category in Category::all() {
        let start = std::time::Instant::now();
        let summary = write_category(&SynthSpec::new(category, 1), &dir.0).unwrap();
        eprintln!("{category}: {} files in {:?}", summary.files_written, start.elapsed());
    }
}
