//! Tile grids and the blended stitch of per-tile anomaly maps back into one map.
//!
//! Tiles are model-size windows laid over the ROI at a stride of `size − overlap`; the last
//! tile of a row or column is moved flush with the ROI's edge, so every ROI pixel is covered
//! at native resolution and no tile is padded. Where tiles overlap, their maps are averaged
//! with weights that ramp linearly across the overlap (a cross-fade): at a tile's own border
//! its weight is close to 0 and its neighbour, which sees that spot well inside its own
//! window, dominates. A max over overlaps would keep every border artefact of every tile and
//! make seams; the cross-fade never leaves one.

use ndarray::{Array2, ArrayView2};

/// Top-left corners of the tiles along one axis of `length` pixels, for tiles of `size` at
/// `stride`. `length >= size` is the caller's invariant.
pub fn tile_starts(length: u32, size: u32, stride: u32) -> Vec<u32> {
    debug_assert!(length >= size && stride > 0);
    let span = length - size;
    let count = span.div_ceil(stride) + 1;
    (0..count).map(|i| (i * stride).min(span)).collect()
}

/// One tile's place in the ROI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
}

/// The grid of tiles over a `width × height` ROI, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileGrid {
    pub size: (u32, u32),
    pub xs: Vec<u32>,
    pub ys: Vec<u32>,
}

impl TileGrid {
    /// Tiles of `size` (width, height) with `overlap` pixels over a `roi` (width, height) no
    /// smaller than one tile.
    pub fn new(roi: (u32, u32), size: (u32, u32), overlap: u32) -> TileGrid {
        let stride = |s: u32| s.saturating_sub(overlap).max(1);
        TileGrid {
            size,
            xs: tile_starts(roi.0, size.0, stride(size.0)),
            ys: tile_starts(roi.1, size.1, stride(size.1)),
        }
    }

    pub fn len(&self) -> usize {
        self.xs.len() * self.ys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every tile, row by row: the order the scorer's batch holds them in.
    pub fn tiles(&self) -> impl Iterator<Item = Tile> + '_ {
        self.ys.iter().flat_map(move |&y| self.xs.iter().map(move |&x| Tile { x, y }))
    }

    /// Blends one map per tile (each `size`, in [`TileGrid::tiles`] order) into one map of
    /// `roi` pixels.
    pub fn stitch(&self, maps: &[ArrayView2<f32>], roi: (u32, u32)) -> Array2<f32> {
        assert_eq!(maps.len(), self.len(), "one map per tile");
        let (rw, rh) = (roi.0 as usize, roi.1 as usize);
        let mut sum = Array2::<f32>::zeros((rh, rw));
        let mut weight = Array2::<f32>::zeros((rh, rw));
        let wx: Vec<Vec<f32>> = (0..self.xs.len()).map(|i| ramp(&self.xs, i, self.size.0)).collect();
        let wy: Vec<Vec<f32>> = (0..self.ys.len()).map(|j| ramp(&self.ys, j, self.size.1)).collect();
        let mut maps = maps.iter();
        for (j, &y0) in self.ys.iter().enumerate() {
            for (i, &x0) in self.xs.iter().enumerate() {
                let map = maps.next().expect("counted above");
                for (ty, row) in map.outer_iter().enumerate() {
                    let (y, w_row) = (y0 as usize + ty, wy[j][ty]);
                    for (tx, &v) in row.iter().enumerate() {
                        let w = w_row * wx[i][tx];
                        let x = x0 as usize + tx;
                        sum[(y, x)] += w * v;
                        weight[(y, x)] += w;
                    }
                }
            }
        }
        sum.zip_mut_with(&weight, |s, &w| *s /= w);
        sum
    }
}

/// Weights along one axis of tile `i`: 1 inside, rising linearly across the overlap with the
/// previous tile and falling across the overlap with the next. Two neighbours' weights sum to
/// 1 everywhere in their overlap, so a constant map stitches to the same constant.
fn ramp(starts: &[u32], i: usize, size: u32) -> Vec<f32> {
    let size = size as usize;
    let mut w = vec![1.0f32; size];
    if i > 0 {
        let overlap = (starts[i - 1] as usize + size).saturating_sub(starts[i] as usize);
        for (d, v) in w.iter_mut().enumerate().take(overlap) {
            *v = v.min((d as f32 + 0.5) / overlap as f32);
        }
    }
    if i + 1 < starts.len() {
        let overlap = (starts[i] as usize + size).saturating_sub(starts[i + 1] as usize);
        for d in 0..overlap {
            let v = &mut w[size - 1 - d];
            *v = v.min((d as f32 + 0.5) / overlap as f32);
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_roi_and_the_last_one_is_flush_with_its_edge() {
        assert_eq!(tile_starts(256, 256, 224), vec![0]);
        assert_eq!(tile_starts(1024, 256, 224), vec![0, 224, 448, 672, 768]);
        assert_eq!(tile_starts(768, 256, 224), vec![0, 224, 448, 512]);
        assert_eq!(tile_starts(1024, 256, 256), vec![0, 256, 512, 768]);
        let grid = TileGrid::new((1024, 768), (256, 256), 32);
        assert_eq!(grid.len(), 20);
        assert_eq!(grid.tiles().nth(5), Some(Tile { x: 0, y: 224 }));
    }

    #[test]
    fn a_constant_map_stitches_to_the_same_constant_with_no_seam() {
        let grid = TileGrid::new((300, 200), (64, 64), 16);
        let tile = Array2::from_elem((64, 64), 0.7f32);
        let maps: Vec<_> = (0..grid.len()).map(|_| tile.view()).collect();
        let out = grid.stitch(&maps, (300, 200));
        assert_eq!(out.dim(), (200, 300));
        assert!(out.iter().all(|v| (v - 0.7).abs() < 1e-6), "{:?}", out.iter().fold(0f32, |a, b| a.max(*b)));
    }

    #[test]
    fn border_artefacts_of_one_tile_are_faded_out_by_its_neighbour() {
        // Each tile's map is 1 at its own border and 0 inside (a padding artefact); stitched,
        // no interior seam keeps a value near 1.
        let size = 64usize;
        let grid = TileGrid::new((176, 176), (64, 64), 24);
        let tile = Array2::from_shape_fn((size, size), |(y, x)| {
            if x == 0 || y == 0 || x == size - 1 || y == size - 1 {
                1.0f32
            } else {
                0.0
            }
        });
        let maps: Vec<_> = (0..grid.len()).map(|_| tile.view()).collect();
        let out = grid.stitch(&maps, (176, 176));
        let interior = out.slice(ndarray::s![1..175, 1..175]);
        let peak = interior.iter().copied().fold(0.0f32, f32::max);
        assert!(peak < 0.05, "a seam kept {peak}");
    }

    #[test]
    fn a_defect_in_one_tile_keeps_its_value_where_it_is_alone() {
        let grid = TileGrid::new((128, 64), (64, 64), 16);
        let mut hot = Array2::<f32>::zeros((64, 64));
        hot[(30, 20)] = 5.0;
        let cold = Array2::<f32>::zeros((64, 64));
        assert_eq!(grid.xs, vec![0, 48, 64]);
        let out = grid.stitch(&[hot.view(), cold.view(), cold.view()], (128, 64));
        assert_eq!(out[(30, 20)], 5.0);
    }
}
