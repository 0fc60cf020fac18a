//! Regions of an anomaly map: where on the part the model saw something unusual.
//!
//! A region is an 8-connected component of the pixels at or above the camera's threshold,
//! so a thin diagonal scratch is reported as one region rather than a staircase of single
//! pixels (the same connectivity the AUPRO labelling in `eval::components` uses).
//!
//! The pixel threshold is the *image* threshold, unchanged. The image score is the map's
//! maximum and a frame is NG when `score >= threshold`, so every NG frame has at least one
//! pixel at or above it, and therefore at least one region unless `min_area` filters it out;
//! an OK frame has none. A separate, lower pixel threshold would need its own calibration
//! that the model bundle does not carry.
//!
//! `eval::components` is private to `eval` and only returns areas, so the few lines of
//! flood fill here also collect what a region report needs (bounding box and peak).

use ndarray::ArrayView2;

use crate::flow::frame::Region;

/// Most regions reported for one frame. A noisy map (a dirty lens, a wrong model) can
/// produce thousands of specks; the strongest few are what an operator looks at, and the
/// cap keeps a `result` MQTT payload small.
pub const MAX_REGIONS: usize = 32;

/// The connected regions of `map >= threshold` with at least `min_area` pixels, strongest
/// (highest peak) first, at most [`MAX_REGIONS`].
///
/// NaN pixels are background: they compare false against any threshold.
pub fn regions(map: ArrayView2<f32>, threshold: f32, min_area: u32) -> Vec<Region> {
    let (h, w) = map.dim();
    let mut seen = vec![false; h * w];
    let mut found = Vec::new();
    let mut stack = Vec::new();
    for ((y, x), &value) in map.indexed_iter() {
        if value >= threshold && !seen[y * w + x] {
            let blob = flood(map, threshold, (y, x), &mut seen, &mut stack);
            if blob.area >= min_area.max(1) {
                found.push(blob.into_region());
            }
        }
    }
    sort_strongest_first(&mut found);
    found.truncate(MAX_REGIONS);
    found
}

/// Orders regions by peak, then by area, then top-to-bottom and left-to-right, so the
/// same map always yields the same list (consumers de-duplicate on it).
fn sort_strongest_first(found: &mut [Region]) {
    found.sort_by(|a, b| {
        b.peak.total_cmp(&a.peak).then(b.area.cmp(&a.area)).then((a.y, a.x).cmp(&(b.y, b.x)))
    });
}

/// A region being grown.
struct Blob {
    min_x: usize,
    min_y: usize,
    max_x: usize,
    max_y: usize,
    peak: f32,
    area: u32,
}

impl Blob {
    fn new((y, x): (usize, usize)) -> Self {
        Blob { min_x: x, min_y: y, max_x: x, max_y: y, peak: f32::NEG_INFINITY, area: 0 }
    }

    fn add(&mut self, (y, x): (usize, usize), value: f32) {
        self.min_x = self.min_x.min(x);
        self.min_y = self.min_y.min(y);
        self.max_x = self.max_x.max(x);
        self.max_y = self.max_y.max(y);
        self.peak = self.peak.max(value);
        self.area = self.area.saturating_add(1);
    }

    fn into_region(self) -> Region {
        // Map sides come from a model input size, far below u32::MAX.
        Region {
            x: self.min_x as u32,
            y: self.min_y as u32,
            w: (self.max_x - self.min_x + 1) as u32,
            h: (self.max_y - self.min_y + 1) as u32,
            peak: self.peak,
            area: self.area,
        }
    }
}

/// Grows the region containing `start` with an explicit stack (a recursive fill would
/// overflow the thread's stack on a large all-hot map).
fn flood(
    map: ArrayView2<f32>,
    threshold: f32,
    start: (usize, usize),
    seen: &mut [bool],
    stack: &mut Vec<(usize, usize)>,
) -> Blob {
    let (h, w) = map.dim();
    let mut blob = Blob::new(start);
    seen[start.0 * w + start.1] = true;
    stack.push(start);
    while let Some((y, x)) = stack.pop() {
        blob.add((y, x), map[(y, x)]);
        for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
            for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                let i = ny * w + nx;
                if !seen[i] && map[(ny, nx)] >= threshold {
                    seen[i] = true;
                    stack.push((ny, nx));
                }
            }
        }
    }
    blob
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// A map from ASCII art: `.` is 0, a digit `d` is the value `d`.
    fn map(rows: &[&str]) -> Array2<f32> {
        let (h, w) = (rows.len(), rows[0].len());
        Array2::from_shape_fn((h, w), |(y, x)| match rows[y].as_bytes()[x] {
            b'.' => 0.0,
            d => f32::from(d - b'0'),
        })
    }

    fn boxed(r: &Region) -> (u32, u32, u32, u32) {
        (r.x, r.y, r.w, r.h)
    }

    #[test]
    fn two_blobs_are_reported_strongest_first_with_boxes_and_areas() {
        let m = map(&["55......", "55......", "......29", "......22"]);
        let found = regions(m.view(), 2.0, 1);
        assert_eq!(found.len(), 2);
        assert_eq!((boxed(&found[0]), found[0].peak, found[0].area), ((6, 2, 2, 2), 9.0, 4));
        assert_eq!((boxed(&found[1]), found[1].peak, found[1].area), ((0, 0, 2, 2), 5.0, 4));
    }

    #[test]
    fn diagonal_neighbours_form_one_region() {
        let m = map(&["5...", ".5..", "..5.", "...5"]);
        let found = regions(m.view(), 1.0, 1);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((boxed(&found[0]), found[0].area), ((0, 0, 4, 4), 4));
    }

    #[test]
    fn u_shape_whose_arms_meet_late_is_one_region() {
        let m = map(&["3.3", "3.3", "333"]);
        let found = regions(m.view(), 3.0, 1);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].area, 7);
    }

    #[test]
    fn pixels_exactly_at_the_threshold_count_and_below_do_not() {
        let m = map(&["4.3", "..."]);
        let found = regions(m.view(), 4.0, 1);
        assert_eq!(found.len(), 1);
        assert_eq!(boxed(&found[0]), (0, 0, 1, 1));
    }

    #[test]
    fn small_specks_below_min_area_are_dropped() {
        let m = map(&["9.....", "......", "...444", "...444"]);
        let found = regions(m.view(), 1.0, 2);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].peak, found[0].area), (4.0, 6));
    }

    #[test]
    fn empty_and_cold_maps_have_no_regions() {
        assert!(regions(Array2::<f32>::zeros((0, 0)).view(), 0.5, 1).is_empty());
        assert!(regions(map(&["111", "111"]).view(), 2.0, 1).is_empty());
        let nan = Array2::from_elem((3, 3), f32::NAN);
        assert!(regions(nan.view(), 0.5, 1).is_empty());
    }

    #[test]
    fn a_speckled_map_is_capped_keeping_the_strongest() {
        // Isolated pixels on a 2-pixel grid: 100 regions, peaks 1..=100.
        let mut m = Array2::zeros((20, 20));
        for i in 0..100 {
            m[(2 * (i / 10), 2 * (i % 10))] = (i + 1) as f32;
        }
        let found = regions(m.view(), 0.5, 1);
        assert_eq!(found.len(), MAX_REGIONS);
        assert_eq!(found[0].peak, 100.0);
        assert_eq!(found[MAX_REGIONS - 1].peak, (100 - MAX_REGIONS + 1) as f32);
    }

    #[test]
    fn a_fully_hot_large_map_is_one_region_without_overflowing_the_stack() {
        let m = Array2::from_elem((512, 512), 1.0f32);
        let found = regions(m.view(), 0.5, 1);
        assert_eq!(found.len(), 1);
        assert_eq!((boxed(&found[0]), found[0].area), ((0, 0, 512, 512), 512 * 512));
    }
}
