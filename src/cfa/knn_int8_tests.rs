use ndarray::Array2;

use super::*;
use crate::cfa::knn::Knn;
use crate::util::rng::SplitMix64;

/// A bank far from the origin (every channel offset by `shift`) and patches near its centres:
/// CFA's geometry, where an uncentred int8 product cannot tell the nearest centres apart.
fn clustered(channels: usize, centres: usize, patches: usize, shift: f32) -> (Array2<f32>, Vec<f32>) {
    clustered_images(channels, centres, 1, patches, shift)
}

/// [`clustered`] for `images` images: phi is `[images, channels, patches]`, and patch p of
/// image i sits near centre `((i · patches + p) · 13) % centres`.
fn clustered_images(
    channels: usize,
    centres: usize,
    images: usize,
    patches: usize,
    shift: f32,
) -> (Array2<f32>, Vec<f32>) {
    let mut rng = SplitMix64::new(7);
    let bank = Array2::from_shape_fn((channels, centres), |_| shift + rng.unit() * 2.0 - 1.0);
    let mut phi = vec![0.0f32; images * channels * patches];
    for i in 0..images {
        for p in 0..patches {
            let j = ((i * patches + p) * 13) % centres;
            for c in 0..channels {
                phi[(i * channels + c) * patches + p] = bank[[c, j]] + (rng.unit() - 0.5) * 0.6;
            }
        }
    }
    (bank, phi)
}

#[test]
fn the_int8_pass_with_a_re_rank_finds_the_exact_nearest_centres() {
    if !available() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI, and the exact kernel runs instead");
        return;
    }
    // 177 channels (not a multiple of 4), 1000 centres (not a multiple of 32), 700 patches
    // over 3 images (not a multiple of 8 tiles), 2 threads.
    let (channels, centres, patches, images, k) = (177, 1000, 700, 3, 3);
    let (bank, phi) = clustered_images(channels, centres, images, patches, 6.0);
    let exact = Knn::new(bank.view(), k);
    let mut want = vec![0.0; patches * images * k];
    exact.nearest(&phi, images, patches, &mut want, 2);
    let fast = Knn::new(bank.view(), k).int8(bank.view(), 8).expect("VNNI is available");
    assert_eq!(fast.int8_candidates(), Some(8));
    let mut got = vec![0.0; want.len()];
    fast.nearest(&phi, images, patches, &mut got, 2);
    // The exact kernel sums |x|² − 2·x·c + |c|², which loses about 0.01 at these norms
    // (|x|² ≈ 6400); the gaps between a patch's 2nd, 3rd and 4th centres are units.
    for (p, (g, w)) in got.chunks(k).zip(want.chunks(k)).enumerate() {
        for (g, w) in g.iter().zip(w) {
            assert!((g - w).abs() <= 0.05, "patch {p}: int8 {g:?} against exact {w:?}");
        }
    }
}

#[test]
fn without_centring_the_same_int8_pass_would_lose_the_nearest_centres() {
    // Why the bank's mean is subtracted: the same data quantised around the origin picks
    // candidates that miss the exact top 3 for many patches. Portable arithmetic, any CPU.
    let (channels, centres, patches) = (176, 512, 400);
    let (bank, phi) = clustered(channels, centres, patches, 12.0);
    let row = |p: usize| (0..channels).map(|c| phi[c * patches + p]).collect::<Vec<f32>>();
    let exact_top3 = |x: &[f32]| {
        let mut d: Vec<(f32, usize)> =
            (0..centres).map(|j| ((0..channels).map(|c| (x[c] - bank[[c, j]]).powi(2)).sum(), j)).collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        d[..3].iter().map(|v| v.1).collect::<Vec<_>>()
    };
    let candidates = |x: &[f32], centre: bool| {
        let mean: Vec<f32> =
            (0..channels).map(|c| if centre { bank.row(c).mean().unwrap() } else { 0.0 }).collect();
        let xc: Vec<f32> = x.iter().zip(&mean).map(|(v, m)| v - m).collect();
        let sx = row_scale(&xc);
        let qx: Vec<i32> = xc.iter().map(|&v| i32::from(quantise(v, sx))).collect();
        let mut d: Vec<(f32, usize)> = (0..centres)
            .map(|j| {
                let cc: Vec<f32> = (0..channels).map(|c| bank[[c, j]] - mean[c]).collect();
                let sc = row_scale(&cc);
                let dot: i32 = cc.iter().zip(&qx).map(|(&v, &q)| i32::from(quantise(v, sc)) * q).sum();
                (cc.iter().map(|v| v * v).sum::<f32>() - 2.0 * sx * sc * dot as f32, j)
            })
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        d[..8].iter().map(|v| v.1).collect::<Vec<_>>()
    };
    let held = |centre: bool| {
        (0..patches)
            .filter(|&p| {
                let x = row(p);
                let c = candidates(&x, centre);
                exact_top3(&x).iter().all(|j| c.contains(j))
            })
            .count()
    };
    let (centred, raw) = (held(true), held(false));
    assert_eq!(centred, patches, "centred int8 candidates hold every exact top 3");
    assert!(raw < patches * 9 / 10, "uncentred: {raw} of {patches} (the test data lost its point)");
}

#[test]
fn the_portable_and_vector_tiles_agree() {
    if !available() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        return;
    }
    let (channels, centres) = (176, 64);
    let (bank, phi) = clustered(channels, centres, ROWS, 3.0);
    let q = Int8Bank::new(bank.view(), 8);
    let mut x = vec![0.0f32; ROWS * channels];
    let mut packed = vec![128u8; q.groups * ROWS * 4];
    let mut scales = [0.0f32; ROWS];
    q.pack_tile(&phi, ROWS, 0, &mut x, &mut packed, &mut scales);
    let scales = &scales;
    let panel_len = q.groups * PANEL * 4;
    for p in 0..centres / PANEL {
        let lanes = p * PANEL..(p + 1) * PANEL;
        let k = PanelConsts {
            panel: &q.panels[p * panel_len..(p + 1) * panel_len],
            offset: &q.offset[lanes.clone()],
            scale2: &q.scale2[lanes.clone()],
            centred_sq: &q.centred_sq[lanes],
        };
        let worst = [20.0f32; ROWS];
        let want = portable_tile(&packed, &k, scales, &worst, q.groups);
        // SAFETY: VNNI is available (checked at the top); the slices are full panels and tiles.
        let got = unsafe { vnni::tile(&packed, &k, scales, &worst, q.groups) };
        assert_eq!(got.below, want.below);
        for (g, w) in got.d.iter().flatten().zip(want.d.iter().flatten()) {
            assert!((g - w).abs() <= 1e-3 * w.abs().max(1.0), "{g} against {w}");
        }
    }
}

#[test]
fn more_candidates_than_centres_are_clamped() {
    let bank = Array2::from_shape_fn((8, 5), |(c, j)| (c + j) as f32);
    assert_eq!(Int8Bank::new(bank.view(), 16).candidates(), 5);
}

#[test]
fn auto_precision_takes_int8_where_it_can_and_fp32_where_it_cannot() {
    use crate::cfa::knn::KnnPrecision;
    let bank = Array2::from_shape_fn((16, 200), |(c, j)| ((c * 7 + j * 3) % 11) as f32);
    // K = 10 needs 10 candidates, more than the default 8; K = 70 is beyond the pass.
    let k10 = Knn::new(bank.view(), 10).with_precision(bank.view(), KnnPrecision::Auto).unwrap();
    let k70 = Knn::new(bank.view(), 70).with_precision(bank.view(), KnnPrecision::Auto).unwrap();
    assert_eq!(k70.int8_candidates(), None, "auto falls back to fp32");
    let fp32 = Knn::new(bank.view(), 3).with_precision(bank.view(), KnnPrecision::Fp32).unwrap();
    assert_eq!(fp32.int8_candidates(), None);
    let named = Knn::new(bank.view(), 70).with_precision(bank.view(), KnnPrecision::Int8);
    assert!(named.unwrap_err().contains("fp32"), "int8 by name says why it cannot run and the fix");
    if available() {
        assert_eq!(k10.int8_candidates(), Some(10));
    } else {
        assert_eq!(k10.int8_candidates(), None);
        let err = Knn::new(bank.view(), 3).with_precision(bank.view(), KnnPrecision::Int8).unwrap_err();
        assert!(err.contains("AVX-512 VNNI"), "{err}");
    }
}
