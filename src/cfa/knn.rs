//! The exact memory-bank kNN on the CPU, fused: squared distances from every patch descriptor
//! to every centre, keeping each patch's K smallest as it goes.
//!
//! `|x - c|² = |x|² - 2·x·c + |c|²`. The kernel computes `-2·x·c + |c|²` for a register tile of
//! 6 patches × 16 centres at a time (a matrix-multiply microkernel: 12 AVX2 accumulators, the
//! bank pre-packed in 16-centre panels that stay in L1), compares the tile against each patch's
//! current K-th best and inserts the few that beat it. Nothing larger than a tile is ever
//! materialised, and there is no separate top-K pass over N. `|x|²` is constant per patch, so
//! it is added to the K survivors only, and the result is clamped at 0 like the graph's `Relu`.
//!
//! The ONNX graph does the same work as `MatMul` on 256-patch chunks, an `Add`, and `TopK` over
//! all N centres per patch; that stays the path for GPU providers (see `model::scorer`).
//!
//! Work is split over threads by blocks of patches, each thread taking the next block until none
//! are left; each walks all panels for its block (the block's packed descriptors stay in L2,
//! each panel is read once per block).

use ndarray::ArrayView2;

use super::knn_int8::{self, Int8Bank};
use super::topk::insert;

/// Patches per register tile.
const TILE_ROWS: usize = 6;
/// Centres per panel (two 8-lane AVX2 vectors).
const PANEL: usize = 16;
/// Tiles per block: 288 patches × 176 channels × 4 B ≈ 200 KB, which stays in L2.
const BLOCK_TILES: usize = 48;

/// The candidates per patch the int8 pass keeps for the exact re-rank. On the real-photo
/// benchmark's descriptors 8 held every patch's exact top 3 (README, "Reduced precision").
pub const INT8_CANDIDATES: usize = 8;

/// How the CPU kNN computes distances.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum KnnPrecision {
    /// int8 candidates with an exact fp32 re-rank where the CPU has AVX-512 VNNI, else fp32.
    #[default]
    Auto,
    /// int8 candidates with an exact fp32 re-rank; an error without AVX-512 VNNI.
    Int8,
    /// Every distance in fp32.
    Fp32,
}

/// A memory bank packed for the kernel.
#[derive(Debug, Clone)]
pub struct Knn {
    channels: usize,
    centres: usize,
    k: usize,
    /// `-2·bank` in panels: `[panel][channel][PANEL]`, padded with zero centres.
    panels: Vec<f32>,
    /// `|c|²` per centre, padded with +∞ so padding never wins.
    bank_sq: Vec<f32>,
    /// A position-aware search: per tile of an image, the panels near its patches.
    window: Option<Window>,
    /// The int8 candidate pass with an exact re-rank, where the CPU has it.
    int8: Option<Box<Int8Bank>>,
}

/// The panels each tile of an image searches when centre `j` belongs to patch position `j`
/// (CFA's bank without compression): those holding centres within `radius` grid cells of any
/// of the tile's patches (whole panels, so a few centres beyond the window come along).
#[derive(Debug, Clone)]
struct Window {
    patches: usize,
    panels: Vec<Vec<u32>>,
}

impl Window {
    fn new(grid: (usize, usize), radius: usize) -> Window {
        let (h, w) = grid;
        let patches = h * w;
        let panels = (0..patches.div_ceil(TILE_ROWS))
            .map(|t| {
                let mut list = Vec::new();
                for p in (t * TILE_ROWS..(t + 1) * TILE_ROWS).filter(|&p| p < patches) {
                    let (y, x) = (p / w, p % w);
                    for yy in y.saturating_sub(radius)..=(y + radius).min(h - 1) {
                        let lo = yy * w + x.saturating_sub(radius);
                        let hi = yy * w + (x + radius).min(w - 1);
                        list.extend((lo / PANEL) as u32..=(hi / PANEL) as u32);
                    }
                }
                list.sort_unstable();
                list.dedup();
                list
            })
            .collect();
        Window { patches, panels }
    }
}

impl Knn {
    /// Packs `bank` (`[channels, centres]`, a centre per column) for `k` nearest neighbours.
    ///
    /// # Panics
    /// If `k` is 0 or larger than the number of centres.
    pub fn new(bank: ArrayView2<f32>, k: usize) -> Knn {
        let (channels, centres) = bank.dim();
        assert!(k >= 1 && k <= centres, "k = {k} with {centres} centres");
        let n_panels = centres.div_ceil(PANEL);
        let mut panels = vec![0.0f32; n_panels * channels * PANEL];
        let mut bank_sq = vec![f32::INFINITY; n_panels * PANEL];
        for j in 0..centres {
            let (panel, lane) = (j / PANEL, j % PANEL);
            let mut sq = 0.0f32;
            for c in 0..channels {
                let v = bank[[c, j]];
                panels[(panel * channels + c) * PANEL + lane] = -2.0 * v;
                sq += v * v;
            }
            bank_sq[j] = sq;
        }
        Knn { channels, centres, k, panels, bank_sq, window: None, int8: None }
    }

    /// Searches only the centres within `radius` grid cells of each patch's own position, for
    /// a bank with one centre per position of a `grid` (`h, w`); an approximation of the exact
    /// search, whose accuracy must be measured. `None` when the bank is not one per position.
    pub fn windowed(mut self, grid: (usize, usize), radius: usize) -> Option<Knn> {
        (grid.0 * grid.1 == self.centres && grid.0 > 0 && grid.1 > 0).then(|| {
            self.window = Some(Window::new(grid, radius));
            self.int8 = None;
            self
        })
    }

    /// Picks `candidates` centres per patch with int8 distances (centred on the bank's mean)
    /// and re-ranks them with exact fp32 ones, for [`Knn::nearest`]. `None` where the int8
    /// pass cannot run ([`Knn::int8_unavailable`]).
    pub fn int8(mut self, bank: ArrayView2<f32>, candidates: usize) -> Option<Knn> {
        self.int8_unavailable(candidates).is_none().then(|| {
            self.int8 = Some(Box::new(Int8Bank::new(bank, candidates)));
            self
        })
    }

    /// Why the int8 pass cannot run with `candidates` per patch here, if it cannot.
    fn int8_unavailable(&self, candidates: usize) -> Option<&'static str> {
        if !knn_int8::available() {
            Some("needs a CPU with AVX-512 VNNI, and this one has none")
        } else if self.window.is_some() {
            Some("does not combine with knn_window; drop one")
        } else if self.k > knn_int8::MAX_K {
            Some("takes at most K = 64 nearest centres")
        } else if self.channels > knn_int8::MAX_CHANNELS {
            Some("takes at most 512 descriptor channels")
        } else if candidates < self.k {
            Some("needs at least K candidates")
        } else {
            None
        }
    }

    /// Applies `precision` for a kNN over `bank` (the bank this was made from). `Err` says why
    /// int8 cannot run when it was asked for by name.
    pub fn with_precision(self, bank: ArrayView2<f32>, precision: KnnPrecision) -> Result<Knn, String> {
        // At least K candidates, so a bundle with a larger K still gets its K.
        let candidates = INT8_CANDIDATES.max(self.k);
        match (precision, self.int8_unavailable(candidates)) {
            (KnnPrecision::Fp32, _) | (KnnPrecision::Auto, Some(_)) => Ok(self),
            (KnnPrecision::Int8, Some(why)) => {
                Err(format!("the int8 kNN {why}; use knn_precision fp32 (or auto)"))
            }
            (_, None) => Ok(self.int8(bank, candidates).expect("int8_unavailable said it can run")),
        }
    }

    /// The exact fp32 search even when the int8 pass is on: [`Knn::nearest`]'s reference.
    pub fn nearest_fp32(&self, phi: &[f32], images: usize, patches: usize, out: &mut [f32], threads: usize) {
        self.nearest_with(phi, images, patches, out, threads, false)
    }

    /// The int8 pass's candidates per patch, when it is on.
    pub fn int8_candidates(&self) -> Option<usize> {
        self.int8.as_ref().map(|q| q.candidates())
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    pub fn centres(&self) -> usize {
        self.centres
    }

    /// The `k` smallest squared distances, ascending, of every patch of every image:
    /// `phi` is `[images, channels, patches]` (the descriptor's NCHW output, flattened), `out`
    /// is `[images, patches, k]`. Uses up to `threads` threads (at least 1).
    ///
    /// # Panics
    /// If the slice lengths do not match `images`, `patches` and the bank.
    pub fn nearest(&self, phi: &[f32], images: usize, patches: usize, out: &mut [f32], threads: usize) {
        self.nearest_with(phi, images, patches, out, threads, true)
    }

    fn nearest_with(
        &self,
        phi: &[f32],
        images: usize,
        patches: usize,
        out: &mut [f32],
        threads: usize,
        int8: bool,
    ) {
        assert_eq!(phi.len(), images * self.channels * patches, "descriptor size");
        assert_eq!(out.len(), images * patches * self.k, "output size");
        if let Some(q) = self.int8.as_ref().filter(|_| int8) {
            return q.nearest(phi, images, patches, self.k, out, threads);
        }
        let tiles_per_image = patches.div_ceil(TILE_ROWS);
        let packed = self.pack(phi, images, patches, tiles_per_image);
        if let Some(w) = &self.window {
            assert_eq!(w.patches, patches, "a windowed search needs the grid it was made for");
        }
        let (best, _) = self.search(&packed, images * tiles_per_image, threads);
        let (c_n, k) = (self.channels, self.k);
        let mut x_sq = vec![0.0f32; patches];
        for img in 0..images {
            x_sq.iter_mut().for_each(|v| *v = 0.0);
            for plane in phi[img * c_n * patches..(img + 1) * c_n * patches].chunks_exact(patches) {
                for (s, &v) in x_sq.iter_mut().zip(plane) {
                    *s += v * v;
                }
            }
            // Within an image, patch p is row p of its tiles.
            let rows = &best[img * tiles_per_image * TILE_ROWS * k..];
            let out = &mut out[img * patches * k..(img + 1) * patches * k];
            for (p, (o, &sq)) in out.chunks_exact_mut(k).zip(&x_sq).enumerate() {
                finish_row(o, &rows[p * k..(p + 1) * k], sq);
            }
        }
    }

    /// [`Knn::nearest`] for row-major descriptors (`rows` is `[n, channels]`, training's layout),
    /// with the centres' indices: `dist` and `index` are `[n, k]`, ascending by distance.
    ///
    /// # Panics
    /// If the slice lengths do not match `n` and the bank.
    pub fn nearest_rows(&self, rows: &[f32], n: usize, dist: &mut [f32], index: &mut [i64], threads: usize) {
        let (c_n, k) = (self.channels, self.k);
        assert_eq!(rows.len(), n * c_n, "descriptor size");
        assert!(dist.len() == n * k && index.len() == n * k, "output size");
        let tiles = n.div_ceil(TILE_ROWS);
        let mut packed = vec![0.0f32; tiles * TILE_ROWS * c_n];
        for (p, row) in rows.chunks_exact(c_n).enumerate() {
            let base = (p / TILE_ROWS) * c_n * TILE_ROWS + p % TILE_ROWS;
            for (c, &v) in row.iter().enumerate() {
                packed[base + c * TILE_ROWS] = v;
            }
        }
        assert!(self.window.is_none(), "rows carry no grid position for a windowed search");
        let (best, best_index) = self.search(&packed, tiles, threads);
        let rows_out = dist.chunks_exact_mut(k).zip(index.chunks_exact_mut(k)).zip(rows.chunks_exact(c_n));
        for (p, ((d, i), row)) in rows_out.enumerate() {
            finish_row(d, &best[p * k..(p + 1) * k], row.iter().map(|v| v * v).sum());
            for (i, &j) in i.iter_mut().zip(&best_index[p * k..(p + 1) * k]) {
                *i = i64::from(j);
            }
        }
    }

    /// The K best partial distances and their centres for every row of `tiles` packed tiles,
    /// over up to `threads` threads: `[tiles · TILE_ROWS, k]` each.
    fn search(&self, packed: &[f32], tiles: usize, threads: usize) -> (Vec<f32>, Vec<u32>) {
        let rows_k = TILE_ROWS * self.k;
        let mut best = vec![f32::INFINITY; tiles * rows_k];
        let mut index = vec![0u32; tiles * rows_k];
        let threads = threads.clamp(1, tiles.div_ceil(BLOCK_TILES).max(1));
        let tile_len = TILE_ROWS * self.channels;
        // Blocks of tiles, each thread (`util::workers`) taking the next until none are left.
        let work = packed
            .chunks(BLOCK_TILES * tile_len)
            .zip(best.chunks_mut(BLOCK_TILES * rows_k).zip(index.chunks_mut(BLOCK_TILES * rows_k)))
            .enumerate();
        let work = std::sync::Mutex::new(work);
        crate::util::workers::run(threads, &|| loop {
            let next = work.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next();
            let Some((n, (a, (b, i)))) = next else { return };
            self.scan(a, b, i, n * BLOCK_TILES);
        });
        (best, index)
    }

    /// Descriptors regrouped per tile: `[tile][channel][TILE_ROWS]`, missing patches as zeros.
    fn pack(&self, phi: &[f32], images: usize, patches: usize, tiles_per_image: usize) -> Vec<f32> {
        let c_n = self.channels;
        let mut packed = vec![0.0f32; images * tiles_per_image * TILE_ROWS * c_n];
        for (img, phi) in phi.chunks_exact(c_n * patches).enumerate() {
            for (c, plane) in phi.chunks_exact(patches).enumerate() {
                for (p, &v) in plane.iter().enumerate() {
                    let tile = img * tiles_per_image + p / TILE_ROWS;
                    packed[(tile * c_n + c) * TILE_ROWS + p % TILE_ROWS] = v;
                }
            }
        }
        packed
    }

    /// Running top-K for a run of tiles: `a` is their packed descriptors, `best` their rows'
    /// K best partial distances (`-2·x·c + |c|²`), ascending.
    fn scan(&self, a: &[f32], best: &mut [f32], index: &mut [u32], first_tile: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { avx2::scan(self, a, best, index, first_tile) };
            }
        }
        match &self.window {
            Some(w) => self.scan_window_with(w, a, best, index, first_tile, portable_tile),
            None => self.scan_with(a, best, index, portable_tile),
        }
    }

    /// The windowed search: each tile against its own panels (tile-major, since tiles differ).
    #[inline(always)]
    fn scan_window_with(
        &self,
        window: &Window,
        a: &[f32],
        best: &mut [f32],
        index: &mut [u32],
        first_tile: usize,
        tile: impl Fn(&[f32], &[f32], &[f32], &[f32; TILE_ROWS], usize) -> Tile,
    ) {
        let (k, tile_len) = (self.k, TILE_ROWS * self.channels);
        let best_len = TILE_ROWS * k;
        let per_image = window.panels.len();
        let tiles = a
            .chunks_exact(tile_len)
            .zip(best.chunks_exact_mut(best_len).zip(index.chunks_exact_mut(best_len)));
        for (t, (a, (best, index))) in tiles.enumerate() {
            for &panel in &window.panels[(first_tile + t) % per_image] {
                let p = panel as usize;
                let mut worst = [0.0f32; TILE_ROWS];
                for (w, row) in worst.iter_mut().zip(best.chunks_exact(k)) {
                    *w = row[k - 1];
                }
                let b = &self.panels[p * self.channels * PANEL..(p + 1) * self.channels * PANEL];
                let t = tile(a, b, &self.bank_sq[p * PANEL..(p + 1) * PANEL], &worst, self.channels);
                if t.below.iter().any(|&m| m != 0) {
                    offer(&t, panel * PANEL as u32, best, index, k);
                }
            }
        }
    }

    /// The loops of [`Knn::scan`] around one tile kernel: blocks of tiles, every panel for a
    /// block, every tile of the block for a panel.
    #[inline(always)]
    fn scan_with(
        &self,
        a: &[f32],
        best: &mut [f32],
        index: &mut [u32],
        tile: impl Fn(&[f32], &[f32], &[f32], &[f32; TILE_ROWS], usize) -> Tile,
    ) {
        let (k, tile_len) = (self.k, TILE_ROWS * self.channels);
        let best_len = TILE_ROWS * k;
        let blocks = a
            .chunks(BLOCK_TILES * tile_len)
            .zip(best.chunks_mut(BLOCK_TILES * best_len).zip(index.chunks_mut(BLOCK_TILES * best_len)));
        for (a, (best, index)) in blocks {
            let panels =
                self.panels.chunks_exact(self.channels * PANEL).zip(self.bank_sq.chunks_exact(PANEL));
            for (first, (panel, bank_sq)) in (0u32..).step_by(PANEL).zip(panels) {
                let tiles = a
                    .chunks_exact(tile_len)
                    .zip(best.chunks_exact_mut(best_len).zip(index.chunks_exact_mut(best_len)));
                for (a, (best, index)) in tiles {
                    let mut worst = [0.0f32; TILE_ROWS];
                    for (w, row) in worst.iter_mut().zip(best.chunks_exact(k)) {
                        *w = row[k - 1];
                    }
                    let t = tile(a, panel, bank_sq, &worst, self.channels);
                    if t.below.iter().any(|&m| m != 0) {
                        offer(&t, first, best, index, k);
                    }
                }
            }
        }
    }
}

/// Adds `|x|²` to a row's K best partial distances and clamps at 0 (the graph's `Relu`).
fn finish_row(out: &mut [f32], best: &[f32], x_sq: f32) {
    for (o, &b) in out.iter_mut().zip(best) {
        *o = (b + x_sq).max(0.0);
    }
}

/// Inserts a tile's entries that beat their row's K-th best; `first` is the panel's first
/// centre.
#[inline(always)]
fn offer(t: &Tile, first: u32, best: &mut [f32], index: &mut [u32], k: usize) {
    let rows = t.d.iter().zip(&t.below).zip(best.chunks_exact_mut(k).zip(index.chunks_exact_mut(k)));
    for ((row, &mask), (best, index)) in rows {
        let mut bits = mask;
        while bits != 0 {
            let j = bits.trailing_zeros();
            let d = row[j as usize];
            if d < best[k - 1] {
                insert(best, index, d, first + j);
            }
            bits &= bits - 1;
        }
    }
}

/// One tile against one panel: partial distances `d[r][j] = |c_j|² - 2·Σ_c a[c][r]·b[c][j]`
/// (the panel holds `-2·b`), and per row a bit mask of the entries below `worst[r]`.
struct Tile {
    d: [[f32; PANEL]; TILE_ROWS],
    below: [u32; TILE_ROWS],
}

fn portable_tile(
    a: &[f32],
    panel: &[f32],
    bank_sq: &[f32],
    worst: &[f32; TILE_ROWS],
    channels: usize,
) -> Tile {
    let mut d = [[0.0f32; PANEL]; TILE_ROWS];
    for (a, b) in a.chunks_exact(TILE_ROWS).zip(panel.chunks_exact(PANEL)).take(channels) {
        for (row, &av) in d.iter_mut().zip(a) {
            for (o, &bv) in row.iter_mut().zip(b) {
                *o = av.mul_add(bv, *o);
            }
        }
    }
    let mut below = [0u32; TILE_ROWS];
    for ((row, mask), &w) in d.iter_mut().zip(&mut below).zip(worst) {
        for (j, (o, &sq)) in row.iter_mut().zip(bank_sq).enumerate() {
            *o += sq;
            if *o < w {
                *mask |= 1 << j;
            }
        }
    }
    Tile { d, below }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Knn, Tile, PANEL, TILE_ROWS};

    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    /// [`Knn::scan`] with the AVX2 tile kernel inlined.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA ([`available`]).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scan(knn: &Knn, a: &[f32], best: &mut [f32], index: &mut [u32], first_tile: usize) {
        let kernel =
            |a: &[f32], panel: &[f32], bank_sq: &[f32], worst: &[f32; TILE_ROWS], channels: usize| {
                assert!(
                    a.len() >= channels * TILE_ROWS
                        && panel.len() >= channels * PANEL
                        && bank_sq.len() >= PANEL
                );
                // SAFETY: this runs only inside `scan`, whose caller checked AVX2 and FMA; the
                // slices hold what the kernel reads (asserted just above).
                unsafe { tile(a, panel, bank_sq, worst, channels) }
            };
        match &knn.window {
            Some(w) => knn.scan_window_with(w, a, best, index, first_tile, kernel),
            None => knn.scan_with(a, best, index, kernel),
        }
    }

    /// The 6×16 microkernel: 12 accumulators, two panel loads and six broadcasts per channel,
    /// then `|c|²` added and compared against each row's worst kept value.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `a` holds `channels × 6`, `panel` `channels × 16` and
    /// `bank_sq` 16 values.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn tile(
        a: &[f32],
        panel: &[f32],
        bank_sq: &[f32],
        worst: &[f32; TILE_ROWS],
        channels: usize,
    ) -> Tile {
        let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let (mut b0, mut b1, mut b2, mut b3, mut b4, mut b5) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let (ap, pp) = (a.as_ptr(), panel.as_ptr());
        for c in 0..channels {
            // SAFETY: c < channels, and both slices were checked to hold that many rows.
            unsafe {
                let lo = _mm256_loadu_ps(pp.add(c * PANEL));
                let hi = _mm256_loadu_ps(pp.add(c * PANEL + 8));
                let r = ap.add(c * TILE_ROWS);
                let x = _mm256_broadcast_ss(&*r);
                a0 = _mm256_fmadd_ps(x, lo, a0);
                b0 = _mm256_fmadd_ps(x, hi, b0);
                let x = _mm256_broadcast_ss(&*r.add(1));
                a1 = _mm256_fmadd_ps(x, lo, a1);
                b1 = _mm256_fmadd_ps(x, hi, b1);
                let x = _mm256_broadcast_ss(&*r.add(2));
                a2 = _mm256_fmadd_ps(x, lo, a2);
                b2 = _mm256_fmadd_ps(x, hi, b2);
                let x = _mm256_broadcast_ss(&*r.add(3));
                a3 = _mm256_fmadd_ps(x, lo, a3);
                b3 = _mm256_fmadd_ps(x, hi, b3);
                let x = _mm256_broadcast_ss(&*r.add(4));
                a4 = _mm256_fmadd_ps(x, lo, a4);
                b4 = _mm256_fmadd_ps(x, hi, b4);
                let x = _mm256_broadcast_ss(&*r.add(5));
                a5 = _mm256_fmadd_ps(x, lo, a5);
                b5 = _mm256_fmadd_ps(x, hi, b5);
            }
        }
        let mut t = Tile { d: [[0.0f32; PANEL]; TILE_ROWS], below: [0; TILE_ROWS] };
        let rows = [(a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5)];
        // SAFETY: bank_sq holds 16 floats, each row of t.d holds 16: unaligned 8-float accesses.
        unsafe {
            let sq_lo = _mm256_loadu_ps(bank_sq.as_ptr());
            let sq_hi = _mm256_loadu_ps(bank_sq.as_ptr().add(8));
            for (r, (lo, hi)) in rows.into_iter().enumerate() {
                let lo = _mm256_add_ps(lo, sq_lo);
                let hi = _mm256_add_ps(hi, sq_hi);
                let w = _mm256_set1_ps(worst[r]);
                let m_lo = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(lo, w)) as u32;
                let m_hi = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(hi, w)) as u32;
                t.below[r] = m_lo | (m_hi << 8);
                _mm256_storeu_ps(t.d[r].as_mut_ptr(), lo);
                _mm256_storeu_ps(t.d[r].as_mut_ptr().add(8), hi);
            }
        }
        t
    }
}

#[cfg(test)]
#[path = "knn_tests.rs"]
mod tests;
