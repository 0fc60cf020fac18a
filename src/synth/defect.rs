//! Defect shapes and how they are painted onto a good image.
//!
//! Every defect is defined by a signed-distance shape. The mask is computed
//! first from that shape (`sdf < 0` at the pixel centre); the defect colour is
//! then blended in only where the mask is set, with a soft ramp that stays
//! inside the mask. That makes the ground-truth mask exactly the set of
//! changed pixels: nothing bleeds outside it, and nothing inside it is left
//! untouched.

use super::canvas::{Canvas, Coverage};
use super::kinds::{Category, DefectKind};
use super::noise::{cos, fbm, mix, scale, sin};
use super::object::rounded_rect;
use super::scene::{self, Pose};
use crate::util::rng::SplitMix64;

const TAU: f32 = std::f32::consts::TAU;

/// Target share of the image a defect covers; shapes outside this band (for
/// example a scratch running off the frame) are redrawn.
const AREA_RANGE: std::ops::RangeInclusive<f32> = 0.005..=0.05;
/// Redraw budget; after it the last shape is kept so generation never loops.
const ATTEMPTS: u32 = 16;

/// Colour of the defect at pixel `(x, y)` given the good pixel `base`.
type Paint = Box<dyn Fn(f32, f32, [f32; 3]) -> [f32; 3]>;

/// Draws one defect of `kind` onto `canvas` and returns its coverage (mask).
pub(crate) fn draw(
    canvas: &mut Canvas,
    category: Category,
    kind: DefectKind,
    pose: &Pose,
    rng: &mut SplitMix64,
) -> Coverage {
    let size = canvas.width;
    let mut attempt = 1;
    loop {
        let at = scene::anchor(category, size, pose, rng);
        let (mut coverage, paint) = match kind {
            DefectKind::Scratch => scratch(size, at, rng),
            DefectKind::Stain => stain(size, at, &surface_sample(canvas, at), rng),
            DefectKind::Hole => hole(size, at, rng),
            DefectKind::Foreign => foreign(category, size, at, rng),
        };
        coverage.clip(|x, y| scene::on_part(category, size, pose, x, y));
        if attempt >= ATTEMPTS || AREA_RANGE.contains(&coverage.area_fraction()) {
            coverage.blend_into(canvas, &*paint);
            return coverage;
        }
        attempt += 1;
    }
}

/// Distance from `(x, y)` to the polyline through `pts`.
pub(crate) fn polyline_distance(pts: &[(f32, f32)], x: f32, y: f32) -> f32 {
    let mut best = f32::INFINITY;
    for seg in pts.windows(2) {
        let ((ax, ay), (bx, by)) = (seg[0], seg[1]);
        let (vx, vy, wx, wy) = (bx - ax, by - ay, x - ax, y - ay);
        let t = ((wx * vx + wy * vy) / (vx * vx + vy * vy).max(1e-6)).clamp(0.0, 1.0);
        let (dx, dy) = (wx - t * vx, wy - t * vy);
        best = best.min((dx * dx + dy * dy).sqrt());
    }
    best
}

/// The polyline of a scratch: 2–3 slightly bending segments of `length` in all, centred on
/// `at`, in a random direction.
pub(crate) fn scratch_path(at: (f32, f32), length: f32, rng: &mut SplitMix64) -> Vec<(f32, f32)> {
    let segments = 2 + rng.below(2);
    let mut angle = rng.range(0.0, TAU);
    let mut p = (at.0 - 0.5 * length * cos(angle), at.1 - 0.5 * length * sin(angle));
    let mut pts = vec![p];
    for _ in 0..segments {
        angle += rng.jitter(0.35);
        let step = length / segments as f32;
        p = (p.0 + step * cos(angle), p.1 + step * sin(angle));
        pts.push(p);
    }
    pts
}

/// A 2–3 segment stroke of 2–4 px (at 128 px) width, centred on the anchor,
/// either bright (polished gouge) or dark (dirt-filled groove).
fn scratch(size: u32, at: (f32, f32), rng: &mut SplitMix64) -> (Coverage, Paint) {
    let px = size as f32;
    let half_width = (px / 100.0).max(1.0) * rng.range(1.0, 1.4);
    let length = px * rng.range(0.3, 0.5);
    let pts = scratch_path(at, length, rng);
    let coverage =
        Coverage::from_sdf(size, half_width * 0.8, |x, y| polyline_distance(&pts, x, y) - half_width);
    let paint: Paint = if rng.coin() {
        Box::new(|_, _, base| mix(base, [0.96, 0.96, 0.98], 0.85))
    } else {
        Box::new(|_, _, base| scale(base, 0.2))
    };
    (coverage, paint)
}

/// Good-image pixels in a small window around `at`: the surface a stain
/// lands on, used to avoid a tint that would vanish against it.
fn surface_sample(canvas: &Canvas, at: (f32, f32)) -> Vec<[f32; 3]> {
    let size = canvas.width as i64;
    let radius = (size / 16).max(2);
    let (cx, cy) = (at.0 as i64, at.1 as i64);
    let mut out = Vec::new();
    for y in (cy - radius).max(0)..(cy + radius).min(size) {
        for x in (cx - radius).max(0)..(cx + radius).min(size) {
            out.push(canvas.px[(y * size + x) as usize]);
        }
    }
    out
}

/// Picks a stain tint at random among those that almost no surface pixel
/// resembles (a mean colour is not enough: teal "matches" neither the blue
/// nor the white threads of denim on average, yet vanishes on the blue).
/// Falls back to the least camouflaged tint.
pub(crate) fn pick_tint(surface: &[[f32; 3]], rng: &mut SplitMix64) -> [f32; 3] {
    const TINTS: [[f32; 3]; 5] =
        [[0.50, 0.22, 0.07], [0.10, 0.09, 0.08], [0.12, 0.45, 0.45], [0.38, 0.14, 0.50], [0.78, 0.66, 0.18]];
    let camouflage = |t: &[f32; 3]| {
        let near = |p: &&[f32; 3]| (0..3).map(|c| (t[c] - p[c]) * (t[c] - p[c])).sum::<f32>() < 0.3 * 0.3;
        surface.iter().filter(near).count() as f32 / surface.len().max(1) as f32
    };
    let clear: Vec<[f32; 3]> = TINTS.iter().copied().filter(|t| camouflage(t) < 0.05).collect();
    if clear.is_empty() {
        let best = TINTS.iter().copied().min_by(|a, b| camouflage(a).total_cmp(&camouflage(b)));
        return best.unwrap_or(TINTS[0]);
    }
    clear[rng.below(clear.len())]
}

/// An irregular blob (noise-warped disc) tinted rust, oil, teal, ink or
/// coolant residue, with a blotchy interior and a wide soft edge.
fn stain(size: u32, at: (f32, f32), surface: &[[f32; 3]], rng: &mut SplitMix64) -> (Coverage, Paint) {
    let px = size as f32;
    let radius = px * rng.range(0.06, 0.1);
    let (salt, ox, oy) = (rng.next_u64(), rng.range(0.0, 50.0), rng.range(0.0, 50.0));
    let tint = pick_tint(surface, rng);
    let coverage = Coverage::from_sdf(size, 0.35 * radius, |x, y| {
        let r = ((x - at.0) * (x - at.0) + (y - at.1) * (y - at.1)).sqrt();
        let warp = fbm(x / px * 7.0 + ox, y / px * 7.0 + oy, 3, salt);
        (r / radius - 1.0 + 0.6 * (warp - 0.5)) * radius
    });
    let paint: Paint = Box::new(move |x, y, base| {
        let blotch = fbm(x / px * 20.0 + oy, y / px * 20.0 + ox, 2, salt ^ 1);
        mix(base, scale(tint, 0.85 + 0.3 * blotch), 0.8)
    });
    (coverage, paint)
}

/// Rotated ellipse; `rho` is 1 on its boundary.
#[derive(Clone, Copy)]
pub(crate) struct Ellipse {
    pub cx: f32,
    pub cy: f32,
    pub a: f32,
    pub b: f32,
    pub cos: f32,
    pub sin: f32,
}

impl Ellipse {
    pub(crate) fn rho(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (u, v) = (dx * self.cos + dy * self.sin, dy * self.cos - dx * self.sin);
        ((u / self.a) * (u / self.a) + (v / self.b) * (v / self.b)).sqrt()
    }
}

/// A dark elliptical hole whose outer band is a bright, raised burr rim.
fn hole(size: u32, at: (f32, f32), rng: &mut SplitMix64) -> (Coverage, Paint) {
    let a = size as f32 * rng.range(0.05, 0.08);
    let angle = rng.range(0.0, TAU);
    let e = Ellipse { cx: at.0, cy: at.1, a, b: a * rng.range(0.7, 1.0), cos: cos(angle), sin: sin(angle) };
    let inner = rng.range(0.62, 0.75);
    let coverage = Coverage::from_sdf(size, 1.0, move |x, y| (e.rho(x, y) - 1.0) * e.b);
    let paint: Paint = Box::new(move |x, y, base| {
        let r = e.rho(x, y);
        if r < inner {
            let g = 0.03 + 0.07 * (r / inner) * (r / inner);
            [g, g, g * 1.1]
        } else {
            mix(base, [1.0, 1.0, 1.0], 0.45)
        }
    });
    (coverage, paint)
}

/// A rotated rounded rectangle filled with something that does not belong:
/// mottled orange plastic, a checker label, hazard tape, or another
/// category's material.
fn foreign(category: Category, size: u32, at: (f32, f32), rng: &mut SplitMix64) -> (Coverage, Paint) {
    let px = size as f32;
    let half = px * rng.range(0.055, 0.095);
    let aspect = rng.range(0.75, 1.3).sqrt();
    let (hx, hy) = (half * aspect, half / aspect);
    let angle = rng.range(0.0, TAU);
    let (c, s) = (cos(angle), sin(angle));
    let frame = move |x: f32, y: f32| {
        let (dx, dy) = (x - at.0, y - at.1);
        (dx * c + dy * s, dy * c - dx * s)
    };
    let coverage = Coverage::from_sdf(size, 1.5, |x, y| {
        let (u, v) = frame(x, y);
        rounded_rect(u, v, hx, hy, 0.2 * hx.min(hy))
    });
    let paint = foreign_pattern(category, size, rng, frame);
    (coverage, paint)
}

/// The fill of a foreign patch, in the patch's own rotated frame.
fn foreign_pattern(
    category: Category,
    size: u32,
    rng: &mut SplitMix64,
    frame: impl Fn(f32, f32) -> (f32, f32) + 'static,
) -> Paint {
    let px = size as f32;
    let salt = rng.next_u64();
    match rng.below(4) {
        0 => Box::new(move |x, y, _| {
            let (u, v) = frame(x, y);
            mix([0.92, 0.42, 0.10], [0.62, 0.14, 0.05], fbm(u / px * 25.0, v / px * 25.0, 3, salt))
        }),
        1 => Box::new(move |x, y, _| {
            let (u, v) = frame(x, y);
            two_tone(u / (px / 40.0), v / (px / 40.0), [0.92, 0.92, 0.90], [0.08, 0.08, 0.10])
        }),
        2 => Box::new(move |x, y, _| {
            let (u, v) = frame(x, y);
            let band = (u + v) / (px / 20.0);
            two_tone(band, 0.0, [0.10, 0.10, 0.08], [0.95, 0.80, 0.10])
        }),
        _ => pasted_material(category, size, rng),
    }
}

/// Checker (or, with `b` fixed, stripes) alternating between two colours on
/// unit cells: a printed label or hazard tape.
pub(crate) fn two_tone(a: f32, b: f32, odd: [f32; 3], even: [f32; 3]) -> [f32; 3] {
    if (a.floor() as i64 + b.floor() as i64).rem_euclid(2) == 1 {
        odd
    } else {
        even
    }
}

/// A piece of another material (wood, or fabric on wood) lying on the part.
fn pasted_material(category: Category, size: u32, rng: &mut SplitMix64) -> Paint {
    let other = if category == Category::Wood { Category::Fabric } else { Category::Wood };
    let material = scene::render(other, size, &Pose::draw(rng));
    let last = size as usize - 1;
    Box::new(move |x, y, _| material.px[(y as usize).min(last) * (last + 1) + (x as usize).min(last)])
}
