use super::*;
use ndarray::Array2;

/// Tiny deterministic generator so property tests need no extra crates.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    /// Score from a handful of levels, so ties are common.
    fn level(&mut self, levels: u64) -> f32 {
        (self.next() % levels) as f32 / levels as f32
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

fn brute_auroc(scores: &[f32], labels: &[bool]) -> f64 {
    let (mut wins, mut pairs) = (0.0, 0.0);
    for (&si, _) in scores.iter().zip(labels).filter(|(_, l)| **l) {
        for (&sj, _) in scores.iter().zip(labels).filter(|(_, l)| !**l) {
            pairs += 1.0;
            wins += if si > sj {
                1.0
            } else if si == sj {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / pairs
}

#[test]
fn auroc_perfect_inverted_and_hand_case() {
    let labels = [false, false, true, true];
    assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &labels), Some(1.0));
    assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &labels), Some(0.0));
    assert_eq!(auroc(&[0.1, 0.4, 0.35, 0.8], &labels), Some(0.75));
}

#[test]
fn auroc_ties_count_half() {
    assert_eq!(auroc(&[0.3; 6], &[true, false, true, false, false, true]), Some(0.5));
    // positives {0.5, 0.8} vs negatives {0.5, 0.2}: 0.5 + 1 + 1 + 1 of 4 pairs.
    assert_eq!(auroc(&[0.5, 0.5, 0.2, 0.8], &[true, false, false, true]), Some(0.875));
    assert_eq!(auroc(&[-0.0, 0.0], &[true, false]), Some(0.5));
}

#[test]
fn auroc_undefined_cases() {
    assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    assert_eq!(auroc(&[0.1, 0.2], &[false, false]), None);
    assert_eq!(auroc(&[], &[]), None);
    assert_eq!(auroc(&[0.1, f32::NAN], &[true, false]), None);
}

#[test]
fn auroc_matches_brute_force_with_ties() {
    let mut rng = Lcg(7);
    for (n, levels) in [(5, 3), (40, 4), (200, 10), (333, 1000)] {
        let scores: Vec<f32> = (0..n).map(|_| rng.level(levels)).collect();
        let labels: Vec<bool> = (0..n).map(|_| rng.next().is_multiple_of(3)).collect();
        let fast = auroc(&scores, &labels).unwrap();
        assert!(close(fast, brute_auroc(&scores, &labels)), "n={n}");
    }
}

#[test]
fn pixel_auroc_equals_flat_auroc() {
    let mut rng = Lcg(11);
    let maps: Vec<Array2<f32>> = (0..3).map(|_| Array2::from_shape_fn((5, 7), |_| rng.level(6))).collect();
    let masks: Vec<Array2<bool>> =
        (0..3).map(|_| Array2::from_shape_fn((5, 7), |_| rng.next().is_multiple_of(4))).collect();
    let scores: Vec<f32> = maps.iter().flat_map(|m| m.iter().copied()).collect();
    let labels: Vec<bool> = masks.iter().flat_map(|m| m.iter().copied()).collect();
    let map_views: Vec<_> = maps.iter().map(|m| m.view()).collect();
    let mask_views: Vec<_> = masks.iter().map(|m| m.view()).collect();
    assert_eq!(pixel_auroc(&map_views, &mask_views), auroc(&scores, &labels));
}

#[test]
fn f1_at_hand_example() {
    let scores = [0.9, 0.8, 0.7, 0.6, 0.2];
    let labels = [true, false, true, false, false];
    let c = f1_at(&scores, &labels, 0.7);
    assert_eq!((c.tp, c.fp, c.tn, c.fn_), (2, 1, 2, 0));
    assert!(close(c.precision, 2.0 / 3.0));
    assert!(close(c.recall, 1.0));
    assert!(close(c.f1, 0.8));
    let none = f1_at(&scores, &labels, 1.0);
    assert_eq!((none.tp, none.fp, none.precision, none.f1), (0, 0, 0.0, 0.0));
}

#[test]
fn best_f1_hand_example_and_tie_rule() {
    let scores = [0.9, 0.8, 0.7, 0.6, 0.2];
    let labels = [true, false, true, false, false];
    let (t, f1) = best_f1_threshold(&scores, &labels).unwrap();
    assert_eq!(t, 0.7);
    assert!(close(f1, 0.8));
    // F1 is 2/3 at both 0.9 and 0.6: the higher threshold wins.
    let (t, f1) = best_f1_threshold(&[0.9, 0.8, 0.7, 0.6], &[true, false, false, true]).unwrap();
    assert_eq!(t, 0.9);
    assert!(close(f1, 2.0 / 3.0));
    assert_eq!(best_f1_threshold(&[0.1, 0.2], &[false, false]), None);
}

#[test]
fn best_f1_agrees_with_f1_at_sweep() {
    let mut rng = Lcg(3);
    for n in [10, 57, 300] {
        let scores: Vec<f32> = (0..n).map(|_| rng.level(20)).collect();
        let labels: Vec<bool> = (0..n).map(|_| rng.next().is_multiple_of(4)).collect();
        let (t, f1) = best_f1_threshold(&scores, &labels).unwrap();
        assert!(close(f1_at(&scores, &labels, t).f1, f1));
        for &s in &scores {
            let other = f1_at(&scores, &labels, s).f1;
            assert!(other < f1 + 1e-12 && !(close(other, f1) && s > t), "n={n} s={s}");
        }
    }
}

#[test]
fn quantile_matches_numpy_linear() {
    let v = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0];
    // Reference values from numpy.quantile(v, q) (default method="linear").
    let expected = [
        (0.0, 1.0),
        (0.1, 1.0),
        (0.25, 1.75),
        (0.5, 3.5),
        (0.75, 5.25),
        (0.9, 6.8999999999999995),
        (0.99, 8.79),
        (1.0, 9.0),
    ];
    for (q, want) in expected {
        assert_eq!(quantile(&v, q), Some(want), "q={q}");
    }
    let got = quantile(&[0.1, 0.7, 0.3], 0.35).unwrap();
    assert!((got - 0.2400000087916851).abs() < 1e-12);
    assert_eq!(quantile(&[2.5], 0.3), Some(2.5));
    assert_eq!(quantile(&[], 0.5), None);
    assert_eq!(quantile(&[1.0], 1.5), None);
    assert_eq!(quantile(&[1.0, f32::NAN], 0.5), None);
}

fn views<T>(arrays: &[Array2<T>]) -> Vec<ndarray::ArrayView2<'_, T>> {
    arrays.iter().map(|a| a.view()).collect()
}

/// Two regions in one row (R1 = cols 0-1, R2 = cols 3-4) plus an all-normal
/// second image; 10 normal pixels in total.
fn two_region_case() -> (Vec<Array2<f32>>, Vec<Array2<bool>>) {
    let s1 = [0.9, 0.8, 0.75, 0.7, 0.2, 0.5, 0.3, 0.1, 0.1, 0.05];
    let m1 = [true, true, false, true, true, false, false, false, false, false];
    let maps = vec![Array2::from_shape_vec((1, 10), s1.to_vec()).unwrap(), Array2::from_elem((2, 2), 0.0)];
    let masks = vec![Array2::from_shape_vec((1, 10), m1.to_vec()).unwrap(), Array2::from_elem((2, 2), false)];
    (maps, masks)
}

#[test]
fn aupro_hand_computed_two_regions() {
    // Curve: (0,.25) (0,.5) (.1,.5) (.1,.75) (.2,.75) (.3,.75) (.3,1) (.5,1)...
    let (maps, masks) = two_region_case();
    let (m, k) = (views(&maps), views(&masks));
    // 0.1 * 0.5 + 0.2 * 0.75 = 0.2 over 0.3.
    assert!(close(aupro(&m, &k, 0.3).unwrap(), 0.2 / 0.3));
    // Cut inside a flat segment: 0.05 + 0.15 * 0.75 over 0.25.
    assert!(close(aupro(&m, &k, 0.25).unwrap(), 0.1625 / 0.25));
    // Past the jump to 1.0: 0.2 + 0.1 * 1.0 over 0.4.
    assert!(close(aupro(&m, &k, 0.4).unwrap(), 0.75));
}

#[test]
fn aupro_perfect_ties_and_undefined() {
    let mask = Array2::from_shape_fn((6, 6), |(y, x)| (1..3).contains(&y) && (1..4).contains(&x));
    let perfect = mask.mapv(|m| if m { 1.0f32 } else { 0.0 });
    let (mv, kv) = ([perfect.view()], [mask.view()]);
    assert!(close(aupro(&mv, &kv, 0.3).unwrap(), 1.0));
    // All scores tied: one diagonal segment (0,0)-(1,1), area 0.045 / 0.3.
    let flat = Array2::from_elem((6, 6), 0.5f32);
    assert!(close(aupro(&[flat.view()], &kv, 0.3).unwrap(), 0.15));
    let empty = Array2::from_elem((6, 6), false);
    assert_eq!(aupro(&mv, &[empty.view()], 0.3), None);
    let full = Array2::from_elem((6, 6), true);
    assert_eq!(aupro(&mv, &[full.view()], 0.3), None);
    assert_eq!(aupro(&mv, &kv, 0.0), None);
    assert_eq!(aupro(&mv, &kv, 1.5), None);
}

/// O(thresholds x pixels) reference: recomputes every point from scratch.
fn brute_aupro(maps: &[Array2<f32>], masks: &[Array2<bool>], limit: f64) -> f64 {
    let mut regions = Vec::new(); // (image, ids) pairs
    let mut count = 0u32;
    for mask in masks {
        let r = label_regions(mask.view(), count + 1);
        count += r.areas.len() as u32;
        regions.push(r.ids);
    }
    let scores: Vec<f32> = maps.iter().flat_map(|m| m.iter().copied()).collect();
    let ids: Vec<u32> = regions.concat();
    let mut thresholds = scores.clone();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let negatives = ids.iter().filter(|&&i| i == 0).count() as f64;
    let mut curve = vec![(0.0, 0.0)];
    for t in thresholds {
        let fp = scores.iter().zip(&ids).filter(|(s, i)| **s >= t && **i == 0).count() as f64;
        let mut pro = 0.0;
        for r in 1..=count {
            let area = ids.iter().filter(|&&i| i == r).count() as f64;
            let hit = scores.iter().zip(&ids).filter(|(s, i)| **s >= t && **i == r).count() as f64;
            pro += hit / area;
        }
        curve.push((fp / negatives, pro / f64::from(count)));
    }
    area_up_to(&curve, limit) / limit
}

#[test]
fn aupro_matches_brute_force() {
    let mut rng = Lcg(99);
    for limit in [0.05, 0.3, 1.0] {
        let maps: Vec<Array2<f32>> =
            (0..3).map(|_| Array2::from_shape_fn((9, 8), |_| rng.level(12))).collect();
        let masks: Vec<Array2<bool>> =
            (0..3).map(|_| Array2::from_shape_fn((9, 8), |_| rng.next().is_multiple_of(5))).collect();
        let fast = aupro(&views(&maps), &views(&masks), limit).unwrap();
        assert!(close(fast, brute_aupro(&maps, &masks, limit)), "limit={limit}");
    }
}

/// Timing check for the 10^7-pixel scale: `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn large_input_timing() {
    let mut rng = Lcg(5);
    let n = 10_000_000;
    let scores: Vec<f32> = (0..n).map(|_| rng.next() as f32 / (1u64 << 31) as f32).collect();
    let labels: Vec<bool> = (0..n).map(|i| i % 50 == 0).collect();
    let start = std::time::Instant::now();
    let a = auroc(&scores, &labels).unwrap();
    eprintln!("auroc over {n}: {a:.4} in {:?}", start.elapsed());
    let map = Array2::from_shape_vec((2500, 4000), scores).unwrap();
    let mask = Array2::from_shape_fn((2500, 4000), |(y, x)| (y / 40 + x / 40) % 7 == 0 && y % 40 < 20);
    let start = std::time::Instant::now();
    let p = aupro(&[map.view()], &[mask.view()], 0.3).unwrap();
    eprintln!("aupro over {n}: {p:.4} in {:?}", start.elapsed());
}
