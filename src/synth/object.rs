//! Simple manufactured parts on a plain background: a steel washer on a
//! conveyor belt and a gold contact pad on a PCB.
//!
//! The part's centre, scale, brightness and lighting direction come from the
//! image's [`Pose`], mimicking the small placement and illumination changes a
//! real line camera sees.

use super::canvas::Canvas;
use super::noise::{cos, fbm, mix, scale, sin, smoothstep, value_noise};
use super::scene::Pose;
use crate::util::rng::tag;

const TAU: f32 = std::f32::consts::TAU;

/// Outer and inner washer radii (normalised) before pose scaling.
pub(crate) const WASHER_OUTER: f32 = 0.36;
pub(crate) const WASHER_INNER: f32 = 0.15;
/// Half extents of the PCB pad (normalised) before pose scaling.
pub(crate) const PAD_HALF: (f32, f32) = (0.25, 0.17);
/// Corner radius of the PCB pad (normalised).
pub(crate) const PAD_CORNER: f32 = 0.05;

/// Dark, slightly mottled conveyor-belt background.
fn belt(u: f32, v: f32, salt: u64) -> [f32; 3] {
    let g = 0.20 + 0.05 * (fbm(u * 6.0, v * 6.0, 3, salt) - 0.5);
    [g, g * 1.01, g * 1.04]
}

/// A lathe-turned steel washer with bevelled edges and a soft drop shadow.
pub(crate) fn washer(size: u32, pose: &Pose) -> Canvas {
    let salt = tag("washer");
    let (outer, inner) = (WASHER_OUTER * pose.scale, WASHER_INNER * pose.scale);
    let aa = 0.75 / size as f32;
    let (lx, ly) = (cos(pose.light - 2.4), sin(pose.light - 2.4));
    let px = size as f32;
    Canvas::from_fn(size, |nx, ny| {
        let (dx, dy) = (nx - pose.cx, ny - pose.cy);
        let rho = (dx * dx + dy * dy).sqrt();
        // Shadow: the same annulus displaced away from the light.
        let (sx, sy) = (dx + 0.015 * lx, dy + 0.015 * ly);
        let srho = (sx * sx + sy * sy).sqrt();
        let shadow = smoothstep(inner - 0.02, inner, srho) * (1.0 - smoothstep(outer, outer + 0.03, srho));
        let bg = scale(belt(nx + pose.ox, ny + pose.oy, salt), (1.0 - 0.45 * shadow) * pose.gain);
        let cover = smoothstep(inner - aa, inner + aa, rho) * (1.0 - smoothstep(outer - aa, outer + aa, rho));
        if cover <= 0.0 {
            return bg;
        }
        let edge = (rho - inner).min(outer - rho);
        let lathe = sin(TAU * rho * px / 3.0);
        let speck = value_noise(nx * px, ny * px, salt + 1);
        let metal = 0.58
            + 0.20 * (dx * lx + dy * ly) / outer
            + 0.03 * lathe
            + 0.15 * (1.0 - smoothstep(0.0, 0.018, edge))
            + 0.04 * (speck - 0.5);
        mix(bg, scale([0.98, 1.0, 1.02], metal * pose.gain), cover)
    })
}

/// Signed distance to a rounded rectangle centred at the origin.
pub(crate) fn rounded_rect(dx: f32, dy: f32, hx: f32, hy: f32, r: f32) -> f32 {
    let (qx, qy) = (dx.abs() - hx + r, dy.abs() - hy + r);
    let outside = (qx.max(0.0) * qx.max(0.0) + qy.max(0.0) * qy.max(0.0)).sqrt();
    outside + qx.max(qy).min(0.0) - r
}

/// Green solder-masked board with buried traces and two vias.
fn board(nx: f32, ny: f32, pose: &Pose, salt: u64, aa: f32) -> [f32; 3] {
    let (u, v) = (nx + pose.ox, ny + pose.oy);
    let mut c = mix([0.05, 0.28, 0.12], [0.09, 0.38, 0.18], fbm(u * 8.0, v * 8.0, 3, salt));
    let (dx, dy) = (nx - pose.cx, ny - pose.cy);
    let h_trace = 1.0 - smoothstep(0.035 - aa, 0.035 + aa, dy.abs());
    let v_trace = (1.0 - smoothstep(0.025 - aa, 0.025 + aa, (dx + 0.12).abs())) * smoothstep(0.0, aa, -dy);
    c = mix(c, [0.13, 0.47, 0.23], 0.8 * h_trace.max(v_trace));
    for (vx, vy) in [(0.36, -0.30), (-0.36, 0.30)] {
        let r = ((dx - vx) * (dx - vx) + (dy - vy) * (dy - vy)).sqrt();
        let ring = 1.0 - smoothstep(0.035 - aa, 0.035 + aa, r);
        c = mix(c, [0.82, 0.66, 0.34], ring);
        c = mix(c, [0.05, 0.05, 0.04], 1.0 - smoothstep(0.015 - aa, 0.015 + aa, r));
    }
    c
}

/// A gold-plated rounded-rectangle contact pad centred on a PCB.
pub(crate) fn pcb_pad(size: u32, pose: &Pose) -> Canvas {
    let salt = tag("pcb_pad");
    let (hx, hy) = (PAD_HALF.0 * pose.scale, PAD_HALF.1 * pose.scale);
    let aa = 0.75 / size as f32;
    let (lx, ly) = (cos(pose.light - 2.4), sin(pose.light - 2.4));
    Canvas::from_fn(size, |nx, ny| {
        let (dx, dy) = (nx - pose.cx, ny - pose.cy);
        let base = scale(board(nx, ny, pose, salt, aa), pose.gain);
        let d = rounded_rect(dx, dy, hx, hy, PAD_CORNER);
        // Dark rim where the solder mask opening ends.
        let rim = 1.0 - smoothstep(0.0, 0.012, d.abs());
        let base = scale(base, 1.0 - 0.5 * rim * smoothstep(-aa, aa, d));
        let cover = 1.0 - smoothstep(-aa, aa, d);
        if cover <= 0.0 {
            return base;
        }
        let brushed = fbm((nx + pose.ox) * 3.0, (ny + pose.oy) * 60.0, 2, salt + 2);
        let shade = 0.88 + 0.16 * (brushed - 0.5) + 0.10 * (dx * lx + dy * ly) / hx;
        mix(base, scale([0.88, 0.70, 0.36], shade * pose.gain), cover)
    })
}
