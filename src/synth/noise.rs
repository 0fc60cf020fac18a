//! Deterministic procedural-noise and math helpers.
//!
//! `f32::sin`, `exp` and friends come from the platform's libm and may differ
//! in the last bit between machines, which could flip a rounded pixel and
//! break byte-identical datasets. Everything here uses only `+ - * /`,
//! `floor` and `sqrt`, which IEEE 754 defines exactly.

use crate::util::rng::mix64;

const PI: f32 = std::f32::consts::PI;
const TAU: f32 = std::f32::consts::TAU;

/// Sine from a range reduction and an odd Taylor polynomial (max error
/// ~4e-6, plenty for shading).
pub(crate) fn sin(x: f32) -> f32 {
    // Reduce to [-pi, pi], then fold to [-pi/2, pi/2] via sin(pi - x) = sin(x).
    let mut r = x - TAU * (x / TAU).round();
    if r > PI / 2.0 {
        r = PI - r;
    } else if r < -PI / 2.0 {
        r = -PI - r;
    }
    let r2 = r * r;
    r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 / 362_880.0))))
}

/// Cosine via [`sin`].
pub(crate) fn cos(x: f32) -> f32 {
    sin(x + PI / 2.0)
}

/// Hermite smoothstep of `x` between `e0` and `e1`, clamped to `[0, 1]`.
pub(crate) fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Linear interpolation.
pub(crate) fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Per-channel linear interpolation of two colours.
pub(crate) fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [lerp(a[0], b[0], t), lerp(a[1], b[1], t), lerp(a[2], b[2], t)]
}

/// Scales a colour by a scalar.
pub(crate) fn scale(c: [f32; 3], k: f32) -> [f32; 3] {
    [c[0] * k, c[1] * k, c[2] * k]
}

/// Hash of an integer lattice point to `[0, 1)`.
pub(crate) fn hash2(ix: i32, iy: i32, salt: u64) -> f32 {
    let key = (u64::from(ix as u32) << 32) | u64::from(iy as u32);
    (mix64(key ^ mix64(salt)) >> 40) as f32 / (1u64 << 24) as f32
}

/// Smoothly interpolated value noise in `[0, 1]` with unit lattice spacing.
pub(crate) fn value_noise(x: f32, y: f32, salt: u64) -> f32 {
    let (fx, fy) = (x.floor(), y.floor());
    let (ix, iy) = (fx as i32, fy as i32);
    let (tx, ty) = (fade(x - fx), fade(y - fy));
    let top = lerp(hash2(ix, iy, salt), hash2(ix + 1, iy, salt), tx);
    let bottom = lerp(hash2(ix, iy + 1, salt), hash2(ix + 1, iy + 1, salt), tx);
    lerp(top, bottom, ty)
}

fn fade(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Fractal Brownian motion: `octaves` layers of value noise, each at double
/// frequency and half amplitude, normalised back to `[0, 1]`.
pub(crate) fn fbm(x: f32, y: f32, octaves: u32, salt: u64) -> f32 {
    let (mut sum, mut norm, mut amp, mut freq) = (0.0, 0.0, 1.0, 1.0);
    for octave in 0..octaves {
        sum += amp * value_noise(x * freq, y * freq, salt.wrapping_add(u64::from(octave)));
        norm += amp;
        amp *= 0.5;
        freq *= 2.0;
    }
    sum / norm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_is_accurate_enough() {
        for i in -400..400 {
            let x = i as f32 * 0.05;
            assert!((sin(x) - x.sin()).abs() < 1e-5, "x={x}");
            assert!((cos(x) - x.cos()).abs() < 1e-5, "x={x}");
        }
    }

    #[test]
    fn noise_is_bounded_and_continuous() {
        for i in 0..500 {
            let x = i as f32 * 0.137 - 20.0;
            let v = fbm(x, x * 0.7, 4, 9);
            assert!((0.0..=1.0).contains(&v));
            assert!((value_noise(x, 1.5, 3) - value_noise(x + 1e-3, 1.5, 3)).abs() < 0.01);
        }
    }
}
