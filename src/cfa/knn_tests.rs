use ndarray::Array2;

use super::*;
use crate::util::rng::SplitMix64;

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = SplitMix64::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.unit() * 2.0 - 1.0)
}

/// Brute force in f64: every distance, sorted.
fn reference(phi: &[f32], images: usize, patches: usize, bank: &Array2<f32>, k: usize) -> Vec<f32> {
    let (channels, centres) = bank.dim();
    let mut out = Vec::new();
    for img in 0..images {
        for p in 0..patches {
            let mut d: Vec<f64> = (0..centres)
                .map(|j| {
                    (0..channels)
                        .map(|c| {
                            let x = f64::from(phi[(img * channels + c) * patches + p]);
                            (x - f64::from(bank[[c, j]])).powi(2)
                        })
                        .sum()
                })
                .collect();
            d.sort_by(f64::total_cmp);
            out.extend(d[..k].iter().map(|&v| v as f32));
        }
    }
    out
}

fn check(images: usize, patches: usize, channels: usize, centres: usize, k: usize, threads: usize) {
    let bank = random(channels, centres, 1);
    let phi = random(images * channels, patches, 2).into_raw_vec_and_offset().0;
    let knn = Knn::new(bank.view(), k);
    let mut out = vec![0.0; images * patches * k];
    knn.nearest(&phi, images, patches, &mut out, threads);
    let want = reference(&phi, images, patches, &bank, k);
    for (i, (got, want)) in out.iter().zip(&want).enumerate() {
        assert!((got - want).abs() <= 1e-4 * want.max(1.0), "entry {i}: {got} vs {want}");
    }
}

#[test]
fn matches_brute_force_on_awkward_sizes() {
    // Patches not a multiple of the tile, centres not a multiple of the panel, channels
    // odd, several images, more threads than blocks.
    check(2, 37, 13, 45, 3, 4);
    check(1, 6, 8, 16, 1, 1);
    check(3, 100, 31, 200, 5, 2);
}

#[test]
fn matches_brute_force_at_a_production_shape_across_blocks_and_threads() {
    // More than one block of 48 tiles per thread, as a 64×64 grid has.
    check(1, 640, 40, 320, 3, 2);
}

#[test]
fn row_major_search_gives_the_distances_and_the_centres() {
    let (n, channels, centres, k) = (50, 12, 70, 4);
    let bank = random(channels, centres, 7);
    let rows = random(n, channels, 8);
    let knn = Knn::new(bank.view(), k);
    let (mut dist, mut index) = (vec![0.0; n * k], vec![0i64; n * k]);
    knn.nearest_rows(rows.as_slice().unwrap(), n, &mut dist, &mut index, 2);
    // The same rows channel-major, as one image of n patches.
    let phi = rows.t().as_standard_layout().to_owned().into_raw_vec_and_offset().0;
    let want = reference(&phi, 1, n, &bank, k);
    for p in 0..n {
        for r in 0..k {
            let (d, j) = (dist[p * k + r], index[p * k + r] as usize);
            assert!((d - want[p * k + r]).abs() <= 1e-4 * want[p * k + r].max(1.0), "row {p} rank {r}");
            let exact: f32 = (0..channels).map(|c| (rows[[p, c]] - bank[[c, j]]).powi(2)).sum();
            assert!((d - exact).abs() <= 1e-4 * exact.max(1.0), "row {p}: centre {j} is at {exact}, not {d}");
        }
    }
}

#[test]
fn a_window_covering_the_grid_is_exact_and_a_small_one_searches_near_the_position() {
    let (h, w, channels, k) = (9, 13, 10, 3);
    let bank = random(channels, h * w, 11);
    let phi = random(channels, h * w, 12).into_raw_vec_and_offset().0;
    let exact = Knn::new(bank.view(), k);
    let mut want = vec![0.0; h * w * k];
    exact.nearest(&phi, 1, h * w, &mut want, 2);
    let whole = Knn::new(bank.view(), k).windowed((h, w), h.max(w)).expect("one centre per position");
    let mut got = vec![0.0; h * w * k];
    whole.nearest(&phi, 1, h * w, &mut got, 2);
    assert_eq!(got, want, "a window over the whole grid is the exact search");

    // Radius 1: every result is a centre of the patch's own panel rows, and never nearer
    // than the exact answer.
    let near = Knn::new(bank.view(), k).windowed((h, w), 1).unwrap();
    let mut got = vec![0.0; h * w * k];
    near.nearest(&phi, 1, h * w, &mut got, 1);
    assert!(got.iter().zip(&want).all(|(g, e)| g >= &(e - 1e-5)), "a window can only miss centres");
    assert!(got.iter().zip(&want).any(|(g, e)| g > &(e + 1e-3)), "radius 1 misses some on random data");
    assert!(Knn::new(bank.view(), k).windowed((h, w + 1), 1).is_none(), "not one centre per position");
}

#[test]
fn the_portable_and_vector_tiles_agree() {
    let a = random(9, TILE_ROWS, 3).into_raw_vec_and_offset().0;
    let b = random(9, PANEL, 4).into_raw_vec_and_offset().0;
    let sq = random(1, PANEL, 5).into_raw_vec_and_offset().0;
    let worst = [0.0, 0.5, -0.5, 1.0, f32::INFINITY, -9.0];
    let want = portable_tile(&a, &b, &sq, &worst, 9);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only where the CPU has AVX2 and FMA.
    let got = if avx2::available() {
        unsafe { avx2::tile(&a, &b, &sq, &worst, 9) }
    } else {
        portable_tile(&a, &b, &sq, &worst, 9)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let got = portable_tile(&a, &b, &sq, &worst, 9);
    for (g, w) in got.d.iter().flatten().zip(want.d.iter().flatten()) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
    for (r, (g, w)) in got.below.iter().zip(&want.below).enumerate() {
        // An entry within rounding of the row's worst may go either way.
        let unsure: u32 =
            (0..PANEL).filter(|&j| (want.d[r][j] - worst[r]).abs() < 1e-5).map(|j| 1 << j).sum();
        assert_eq!(g & !unsure, w & !unsure, "row {r}");
    }
}

#[test]
fn a_patch_equal_to_a_centre_is_at_distance_zero() {
    let bank = random(8, 20, 5);
    let mut phi = vec![0.0f32; 8 * 7];
    for c in 0..8 {
        phi[c * 7 + 3] = bank[[c, 11]];
    }
    let knn = Knn::new(bank.view(), 2);
    let mut out = vec![0.0; 7 * 2];
    knn.nearest(&phi, 1, 7, &mut out, 1);
    assert!(out[3 * 2] <= 1e-5, "{}", out[3 * 2]);
    assert!(out[3 * 2 + 1] > 0.0);
}
