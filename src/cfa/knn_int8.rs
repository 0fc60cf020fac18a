//! The kNN's reduced-precision first pass: int8 distances choose each patch's M candidate
//! centres, exact fp32 distances re-rank them, and the K best of those are the answer.
//!
//! Both sides are centred on the bank's mean before they are quantised. CFA's descriptors sit
//! far from the origin and close to their centres (a patch's nearest centre is at about a
//! third of the median distance), so an uncentred int8 dot product loses the few units that
//! separate the nearest centres in a sum of hundreds; centred, each row's symmetric int8 scale
//! (one per patch, one per centre) keeps them. On the real-photo benchmark's descriptors that
//! choice decides it: uncentred, 8 candidates held the exact top 3 for 41–70 % of patches;
//! centred, for over 99.9 % (see README, "Reduced precision").
//!
//! The candidate pass runs `vpdpbusd` (AVX-512 VNNI): 64 u8×i8 products a lane group per
//! instruction against 16 fp32 FMAs, in an 8-patch × 32-centre register tile. A patch's bytes
//! are stored offset by 128 (VNNI multiplies unsigned by signed); `128·Σ q_c` per centre takes
//! the offset back out. Without VNNI the caller keeps the exact kernel ([`available`]).

use std::sync::{Mutex, PoisonError};

use ndarray::ArrayView2;

use super::topk::insert;

/// Centres per panel: two 16-lane vectors.
const PANEL: usize = 32;
/// Patches per register tile.
const ROWS: usize = 8;
/// Tiles per block: 64 × 8 patches × 176 B ≈ 90 KB of patches stay in L2 while every panel
/// passes.
const BLOCK_TILES: usize = 64;

/// Panels before a block's own positions that its search starts at (4 × 32 centres: two
/// grid rows of a 64-wide grid).
const PANELS_BACK: usize = 4;

/// Descriptor channels a tile is packed with (CFA's are 176 for Lite0, at most a few hundred).
pub const MAX_CHANNELS: usize = 512;
/// Nearest centres the re-rank keeps per patch.
pub const MAX_K: usize = 64;

/// Whether this CPU runs the int8 pass (AVX-512 F/BW and VNNI).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A memory bank packed for the int8 candidate pass and the exact re-rank.
#[derive(Debug, Clone)]
pub struct Int8Bank {
    channels: usize,
    /// Channels in groups of 4 (one `vpdpbusd` lane), the last padded with zeros.
    groups: usize,
    centres: usize,
    candidates: usize,
    /// The bank's mean centre, subtracted from both sides before quantising.
    mean: Vec<f32>,
    /// Quantised centred centres, `[panel][group][PANEL][4]`, zero-padded.
    panels: Vec<i8>,
    /// `2·s_c` per centre (`s_c` its int8 scale), 0 for padding.
    scale2: Vec<f32>,
    /// `|c − μ|²` per centre, +∞ for padding so it never becomes a candidate.
    centred_sq: Vec<f32>,
    /// `128·Σ q_c` per centre: the patch bytes' offset, taken back out.
    offset: Vec<i32>,
    /// The exact bank, a centre per row, for the re-rank.
    rows: Vec<f32>,
}

impl Int8Bank {
    /// Packs `bank` (`[channels, centres]`) to pick `candidates` centres per patch
    /// (clamped to the number of centres).
    ///
    /// # Panics
    /// With more than 512 channels.
    pub fn new(bank: ArrayView2<f32>, candidates: usize) -> Int8Bank {
        let (channels, centres) = bank.dim();
        assert!(channels <= MAX_CHANNELS, "{channels} descriptor channels (at most {MAX_CHANNELS})");
        let groups = channels.div_ceil(4);
        let n_panels = centres.div_ceil(PANEL);
        let mean: Vec<f32> = bank.outer_iter().map(|row| row.mean().unwrap_or(0.0)).collect();
        let mut panels = vec![0i8; n_panels * groups * PANEL * 4];
        let mut scale2 = vec![0.0f32; n_panels * PANEL];
        let mut centred_sq = vec![f32::INFINITY; n_panels * PANEL];
        let mut offset = vec![0i32; n_panels * PANEL];
        let mut rows = vec![0.0f32; centres * channels];
        let mut centred = vec![0.0f32; channels];
        for j in 0..centres {
            for (c, v) in centred.iter_mut().enumerate() {
                rows[j * channels + c] = bank[[c, j]];
                *v = bank[[c, j]] - mean[c];
            }
            centred_sq[j] = centred.iter().map(|v| v * v).sum();
            let scale = row_scale(&centred);
            scale2[j] = 2.0 * scale;
            let (panel, lane) = (j / PANEL, j % PANEL);
            let mut sum = 0i32;
            for (c, &v) in centred.iter().enumerate() {
                let q = quantise(v, scale);
                sum += i32::from(q);
                panels[((panel * groups + c / 4) * PANEL + lane) * 4 + c % 4] = q;
            }
            offset[j] = 128 * sum;
        }
        Int8Bank {
            channels,
            groups,
            centres,
            candidates: candidates.clamp(1, centres),
            mean,
            panels,
            scale2,
            centred_sq,
            offset,
            rows,
        }
    }

    pub fn candidates(&self) -> usize {
        self.candidates
    }

    /// The `k` smallest squared distances, ascending, of every patch (`phi` is `[images,
    /// channels, patches]`, `out` `[images, patches, k]`), as [`super::knn::Knn::nearest`].
    ///
    /// # Panics
    /// If the CPU lacks the int8 instructions ([`available`]), `k` exceeds the candidates or
    /// 64, or the slice lengths do not match.
    pub fn nearest(
        &self,
        phi: &[f32],
        images: usize,
        patches: usize,
        k: usize,
        out: &mut [f32],
        threads: usize,
    ) {
        assert!(available(), "the int8 kNN needs AVX-512 VNNI");
        assert!(k <= self.candidates && k <= MAX_K, "k = {k} with {} candidates", self.candidates);
        let c_n = self.channels;
        assert_eq!(phi.len(), images * c_n * patches, "descriptor size");
        assert_eq!(out.len(), images * patches * k, "output size");
        // Threads (`util::workers`) take blocks of whole tiles, the next not yet taken, until
        // none are left, and each packs, searches and re-ranks its own. Taking them as they go,
        // not in equal shares fixed up front, matters when frames come at a camera's rate: a
        // helper woken on an idle core can start a millisecond late, and then takes fewer
        // blocks instead of finishing last.
        let tiles = (images * patches).div_ceil(ROWS);
        let jobs = tiles.div_ceil(BLOCK_TILES);
        let threads = threads.clamp(1, jobs.max(1));
        let work = Mutex::new(out.chunks_mut(BLOCK_TILES * ROWS * k).enumerate());
        crate::util::workers::run(threads, &|| loop {
            let next = work.lock().unwrap_or_else(PoisonError::into_inner).next();
            let Some((job, out)) = next else { return };
            self.part(phi, patches, job * BLOCK_TILES * ROWS, k, out);
        });
    }

    /// [`Int8Bank::nearest`] for the rows from `first` on (a multiple of the tile height), as
    /// many as `out` holds.
    fn part(&self, phi: &[f32], patches: usize, first: usize, k: usize, out: &mut [f32]) {
        let (c_n, m) = (self.channels, self.candidates);
        let tiles = (out.len() / k).div_ceil(ROWS);
        // Row-major patches for the re-rank, and the quantised tiles for the search.
        let mut x = vec![0.0f32; tiles * ROWS * c_n];
        let mut packed = vec![128u8; tiles * self.groups * ROWS * 4];
        let mut scales = vec![0.0f32; tiles * ROWS];
        let mut candidates = vec![0u32; tiles * ROWS * m];
        // SAFETY: `nearest` asserted the CPU has AVX-512 F/BW and VNNI.
        unsafe {
            vnni::pack(self, phi, patches, first, &mut x, &mut packed, &mut scales);
            vnni::scan(self, &packed, &scales, &mut candidates, (first, patches));
        }
        let rows = out.chunks_exact_mut(k).zip(x.chunks_exact(c_n)).zip(candidates.chunks_exact(m));
        for ((out, row), candidates) in rows {
            // SAFETY: as above.
            unsafe { vnni::rerank(self, row, candidates, out) };
        }
    }

    /// Exact squared distances to a patch's candidates, the `out.len()` smallest, ascending.
    /// Summed as `Σ(x − c)²`, which is never negative and loses less than the exact kernel's
    /// `|x|² − 2·x·c + |c|²` when both norms are large.
    #[inline(always)]
    fn rerank_with(&self, x: &[f32], candidates: &[u32], out: &mut [f32]) {
        let c_n = self.channels;
        let mut best = [f32::INFINITY; MAX_K];
        let mut index = [0u32; MAX_K];
        let k = out.len();
        for &j in candidates {
            let j = j as usize;
            let d = squared_distance(x, &self.rows[j * c_n..(j + 1) * c_n]);
            if d < best[k - 1] {
                insert(&mut best[..k], &mut index[..k], d, j as u32);
            }
        }
        out.copy_from_slice(&best[..k]);
    }

    /// One tile of 8 patches (or fewer, at the end): gathered from `phi`'s channel planes
    /// into `x` (row-major), centred, and quantised into `packed` (`[group][ROWS][4]` bytes
    /// offset by 128; missing rows and channels stay 128, a zero) with each patch's scale.
    #[inline(always)]
    fn pack_tile(
        &self,
        phi: &[f32],
        patches: usize,
        first: usize,
        x: &mut [f32],
        packed: &mut [u8],
        scales: &mut [f32],
    ) {
        let c_n = self.channels;
        let rows = ROWS.min(phi.len() / c_n - first);
        let mut centred = [[0.0f32; ROWS]; MAX_CHANNELS];
        let mut max = [0.0f32; ROWS];
        // Where channel 0 of each row's patch is: patch p is patch p % patches of image
        // p / patches, and its channels are `patches` apart.
        let mut base = [0usize; ROWS];
        for (r, base) in base.iter_mut().enumerate().take(rows) {
            let p = first + r;
            *base = (p / patches) * c_n * patches + p % patches;
        }
        for (c, centred) in centred.iter_mut().enumerate().take(c_n) {
            let mean = self.mean[c];
            for r in 0..rows {
                let v = phi[base[r] + c * patches];
                x[r * c_n + c] = v;
                centred[r] = v - mean;
                max[r] = max[r].max((v - mean).abs());
            }
        }
        for r in 0..rows {
            let scale = scale_for(max[r]);
            scales[r] = scale;
            let inv = 1.0 / scale;
            for (c, centred) in centred.iter().enumerate().take(c_n) {
                let q = (centred[r] * inv).round().clamp(-127.0, 127.0) as i32;
                packed[((c / 4) * ROWS + r) * 4 + c % 4] = (q + 128) as u8;
            }
        }
    }

    /// Running top-M for a run of tiles: blocks of tiles, every panel for a block, every tile
    /// of the block for a panel. `rows` is the run's first row and the patches per image.
    ///
    /// With one centre per patch position (CFA's bank, `gamma_c = 1`) a block starts at the
    /// panels of its own positions, a few grid rows back: a patch's nearest centres are mostly
    /// near it, so the M-th best tightens early and far panels insert almost nothing. The
    /// order changes only the work, not the result.
    #[inline(always)]
    fn scan_with(
        &self,
        a: &[u8],
        scales: &[f32],
        index: &mut [u32],
        rows: (usize, usize),
        tile: impl Fn(&[u8], &PanelConsts, &[f32; ROWS], &[f32; ROWS], usize) -> Tile,
    ) {
        let (m, groups) = (self.candidates, self.groups);
        let tile_len = groups * ROWS * 4;
        let panel_len = groups * PANEL * 4;
        let mut best = vec![f32::INFINITY; index.len()];
        let blocks = a
            .chunks(BLOCK_TILES * tile_len)
            .zip(scales.chunks(BLOCK_TILES * ROWS))
            .zip(best.chunks_mut(BLOCK_TILES * ROWS * m).zip(index.chunks_mut(BLOCK_TILES * ROWS * m)));
        let n_panels = self.panels.len() / panel_len;
        for (b, ((a, scales), (best, index))) in blocks.enumerate() {
            let (first, patches) = rows;
            let position = (first + b * BLOCK_TILES * ROWS) % patches.max(1);
            let start = match self.centres == patches {
                true => (position / PANEL).saturating_sub(PANELS_BACK),
                false => 0,
            };
            for p in (start..n_panels).chain(0..start) {
                let panel = &self.panels[p * panel_len..(p + 1) * panel_len];
                let lanes = p * PANEL..(p + 1) * PANEL;
                let consts = PanelConsts {
                    panel,
                    offset: &self.offset[lanes.clone()],
                    scale2: &self.scale2[lanes.clone()],
                    centred_sq: &self.centred_sq[lanes],
                };
                let tiles = a
                    .chunks_exact(tile_len)
                    .zip(scales.chunks_exact(ROWS))
                    .zip(best.chunks_exact_mut(ROWS * m).zip(index.chunks_exact_mut(ROWS * m)));
                for ((a, s), (best, index)) in tiles {
                    let mut worst = [0.0f32; ROWS];
                    for (w, row) in worst.iter_mut().zip(best.chunks_exact(m)) {
                        *w = row[m - 1];
                    }
                    let s: &[f32; ROWS] = s.try_into().expect("a tile's scales");
                    let t = tile(a, &consts, s, &worst, groups);
                    let rows =
                        t.d.iter().zip(&t.below).zip(best.chunks_exact_mut(m).zip(index.chunks_exact_mut(m)));
                    for ((row, &mask), (best, index)) in rows {
                        let mut bits = mask;
                        while bits != 0 {
                            let j = bits.trailing_zeros();
                            let d = row[j as usize];
                            if d < best[m - 1] {
                                insert(best, index, d, (p * PANEL) as u32 + j);
                            }
                            bits &= bits - 1;
                        }
                    }
                }
            }
        }
    }
}

/// One panel's quantised centres and per-centre constants.
struct PanelConsts<'a> {
    panel: &'a [i8],
    offset: &'a [i32],
    scale2: &'a [f32],
    centred_sq: &'a [f32],
}

/// One tile against one panel: approximate partial distances `|c−μ|² − 2·s_x·s_c·(q_x·q_c)`
/// and per row a mask of the entries below `worst[r]`.
struct Tile {
    d: [[f32; PANEL]; ROWS],
    below: [u32; ROWS],
}

/// The tile in plain Rust: the reference the vector kernel is tested against.
#[cfg(test)]
fn portable_tile(
    a: &[u8],
    k: &PanelConsts,
    scales: &[f32; ROWS],
    worst: &[f32; ROWS],
    groups: usize,
) -> Tile {
    let mut acc = [[0i32; PANEL]; ROWS];
    for g in 0..groups {
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = &a[(g * ROWS + r) * 4..][..4];
            for (j, o) in acc.iter_mut().enumerate() {
                let c = &k.panel[(g * PANEL + j) * 4..][..4];
                *o += x.iter().zip(c).map(|(&x, &c)| i32::from(x) * i32::from(c)).sum::<i32>();
            }
        }
    }
    let mut t = Tile { d: [[0.0; PANEL]; ROWS], below: [0; ROWS] };
    for (r, acc) in acc.iter().enumerate() {
        for (j, &v) in acc.iter().enumerate() {
            let d = k.centred_sq[j] - (v - k.offset[j]) as f32 * (scales[r] * k.scale2[j]);
            t.d[r][j] = d;
            if d < worst[r] {
                t.below[r] |= 1 << j;
            }
        }
    }
    t
}

/// A row's symmetric int8 scale: its largest magnitude maps to 127.
fn row_scale(row: &[f32]) -> f32 {
    scale_for(row.iter().fold(0.0f32, |m, v| m.max(v.abs())))
}

/// The scale that maps a row's largest magnitude `max` to 127 (1 for an all-zero row).
fn scale_for(max: f32) -> f32 {
    if max > 0.0 {
        max / 127.0
    } else {
        1.0
    }
}

fn quantise(v: f32, scale: f32) -> i8 {
    (v / scale).round().clamp(-127.0, 127.0) as i8
}

fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, so the compiler vectorises it.
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| (x - y) * (x - y)).sum();
    for (a, b) in a8.zip(b8) {
        for i in 0..8 {
            let d = a[i] - b[i];
            acc[i] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{Int8Bank, PanelConsts, Tile, PANEL, ROWS};

    /// [`Int8Bank::pack_tile`] for every tile from row `first` on, compiled for AVX-512 (vectorised, and `round`
    /// an instruction rather than a call).
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn pack(
        bank: &Int8Bank,
        phi: &[f32],
        patches: usize,
        first: usize,
        x: &mut [f32],
        packed: &mut [u8],
        scales: &mut [f32],
    ) {
        let (c_n, tile_len) = (bank.channels, bank.groups * ROWS * 4);
        let tiles = x
            .chunks_exact_mut(ROWS * c_n)
            .zip(packed.chunks_exact_mut(tile_len))
            .zip(scales.chunks_exact_mut(ROWS));
        for (t, ((x, packed), scales)) in tiles.enumerate() {
            bank.pack_tile(phi, patches, first + t * ROWS, x, packed, scales);
        }
    }

    /// [`Int8Bank::rerank_with`], compiled for AVX-512.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn rerank(bank: &Int8Bank, x: &[f32], candidates: &[u32], out: &mut [f32]) {
        bank.rerank_with(x, candidates, out)
    }

    /// [`Int8Bank::scan_with`] with the VNNI tile inlined.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn scan(
        bank: &Int8Bank,
        a: &[u8],
        scales: &[f32],
        index: &mut [u32],
        rows: (usize, usize),
    ) {
        let kernel = |a: &[u8], k: &PanelConsts, s: &[f32; ROWS], w: &[f32; ROWS], groups: usize| {
            assert!(a.len() >= groups * ROWS * 4 && k.panel.len() >= groups * PANEL * 4);
            assert!(k.offset.len() >= PANEL && k.scale2.len() >= PANEL && k.centred_sq.len() >= PANEL);
            // SAFETY: this runs only inside `scan`, whose caller checked the CPU; the slices
            // hold what the kernel reads (asserted just above).
            unsafe { tile(a, k, s, w, groups) }
        };
        bank.scan_with(a, scales, index, rows, kernel)
    }

    /// The 8×32 microkernel: 16 accumulators, two panel loads and eight broadcasts per group
    /// of 4 channels, then the offset, the scales and `|c−μ|²`, and the comparison.
    ///
    /// # Safety
    /// The CPU must support AVX-512 F/BW and VNNI; `a` holds `groups × 8 × 4` bytes, the panel
    /// `groups × 32 × 4`, and the per-centre slices 32 values each.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    pub(super) unsafe fn tile(
        a: &[u8],
        k: &PanelConsts,
        scales: &[f32; ROWS],
        worst: &[f32; ROWS],
        groups: usize,
    ) -> Tile {
        let mut lo = [_mm512_setzero_si512(); ROWS];
        let mut hi = [_mm512_setzero_si512(); ROWS];
        let (ap, pp) = (a.as_ptr(), k.panel.as_ptr());
        for g in 0..groups {
            // SAFETY: g < groups, and both slices hold that many groups.
            unsafe {
                let b_lo = _mm512_loadu_si512(pp.add(g * PANEL * 4).cast());
                let b_hi = _mm512_loadu_si512(pp.add(g * PANEL * 4 + 64).cast());
                let x = ap.add(g * ROWS * 4);
                for r in 0..ROWS {
                    let xr = _mm512_set1_epi32(x.add(r * 4).cast::<i32>().read_unaligned());
                    lo[r] = _mm512_dpbusd_epi32(lo[r], xr, b_lo);
                    hi[r] = _mm512_dpbusd_epi32(hi[r], xr, b_hi);
                }
            }
        }
        let mut t = Tile { d: [[0.0f32; PANEL]; ROWS], below: [0; ROWS] };
        // SAFETY: the per-centre slices hold 32 values, each row of t.d 32: unaligned
        // 16-lane accesses.
        unsafe {
            let off_lo = _mm512_loadu_si512(k.offset.as_ptr().cast());
            let off_hi = _mm512_loadu_si512(k.offset.as_ptr().add(16).cast());
            let s_lo = _mm512_loadu_ps(k.scale2.as_ptr());
            let s_hi = _mm512_loadu_ps(k.scale2.as_ptr().add(16));
            let sq_lo = _mm512_loadu_ps(k.centred_sq.as_ptr());
            let sq_hi = _mm512_loadu_ps(k.centred_sq.as_ptr().add(16));
            for r in 0..ROWS {
                let sx = _mm512_set1_ps(scales[r]);
                let w = _mm512_set1_ps(worst[r]);
                let v_lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo[r], off_lo));
                let v_hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi[r], off_hi));
                let d_lo = _mm512_fnmadd_ps(v_lo, _mm512_mul_ps(sx, s_lo), sq_lo);
                let d_hi = _mm512_fnmadd_ps(v_hi, _mm512_mul_ps(sx, s_hi), sq_hi);
                let m_lo = u32::from(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(d_lo, w));
                let m_hi = u32::from(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(d_hi, w));
                t.below[r] = m_lo | (m_hi << 16);
                _mm512_storeu_ps(t.d[r].as_mut_ptr(), d_lo);
                _mm512_storeu_ps(t.d[r].as_mut_ptr().add(16), d_hi);
            }
        }
        t
    }
}

#[cfg(test)]
#[path = "knn_int8_tests.rs"]
mod tests;
