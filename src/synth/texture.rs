//! Procedural surface textures: brushed metal, wood, woven fabric, stone.
//!
//! Each texture is an infinite pattern sampled through the image's [`Pose`]
//! offset, so every good image is a different crop of the same material
//! (realistic nuisance variation) rather than a copy of one picture.

use super::canvas::Canvas;
use super::noise::{cos, fbm, mix, scale, sin, smoothstep, value_noise};
use super::scene::Pose;
use crate::util::rng::tag;

const PI: f32 = std::f32::consts::PI;
const TAU: f32 = std::f32::consts::TAU;

/// Brushed steel: long fine streaks along a slightly tilted direction over a
/// broad, uneven sheen.
pub(crate) fn brushed_metal(size: u32, pose: &Pose) -> Canvas {
    let salt = tag("brushed_metal");
    let (s, c) = (sin(pose.tilt), cos(pose.tilt));
    let px = size as f32;
    Canvas::from_fn(size, |nx, ny| {
        let u = nx * c - ny * s + pose.ox;
        let v = nx * s + ny * c + pose.oy;
        let streak = fbm(u * 2.0, v * 90.0, 3, salt);
        let broad = fbm(u * 1.5, v * 1.5, 2, salt + 10);
        let grain = value_noise(u * px, v * px, salt + 20);
        let val = 0.52 + 0.26 * (streak - 0.5) + 0.14 * (broad - 0.5) + 0.05 * (grain - 0.5);
        scale([0.97, 0.99, 1.03], val * pose.gain)
    })
}

/// Plain-sawn wood: warped growth rings (dark latewood bands) plus fine
/// fibres running along the board.
pub(crate) fn wood(size: u32, pose: &Pose) -> Canvas {
    let salt = tag("wood");
    let light = [0.80, 0.60, 0.38];
    let dark = [0.50, 0.31, 0.15];
    Canvas::from_fn(size, |nx, ny| {
        let (u, v) = (nx + pose.ox, ny + pose.oy);
        let warp = fbm(u * 1.5, v * 3.0, 3, salt);
        let rings = (v + 0.08 * warp + 0.01 * sin(u * 5.0)) * 9.0;
        let ring = 0.5 + 0.5 * sin(TAU * rings);
        let late = smoothstep(0.72, 0.98, ring);
        let fibre = fbm(u * 4.0, v * 220.0, 2, salt + 5);
        let t = (0.25 * ring + 0.55 * late + 0.5 * (fibre - 0.45)).clamp(0.0, 1.0);
        scale(mix(light, dark, t), pose.gain)
    })
}

/// Denim-like 2/1 twill: indigo warp threads over off-white weft, each
/// thread shaded round with a little fibre noise.
///
/// Unlike the other textures, the weave is only shifted by up to ±0.2 of a
/// thread cell: the fabric web is registered on the line. A fully random
/// phase of such a high-contrast periodic pattern makes every position's
/// training average a featureless blur, which starves memory-bank detectors
/// like CFA (their per-location means) of the structure they must match.
pub(crate) fn fabric(size: u32, pose: &Pose) -> Canvas {
    const CELLS: f32 = 16.0;
    let salt = tag("fabric");
    let warp_colour = [0.20, 0.29, 0.52];
    let weft_colour = [0.80, 0.78, 0.72];
    let shift = |o: f32| 0.2 * (2.0 * o.fract() - 1.0);
    let (sx, sy) = (shift(pose.ox), shift(pose.oy));
    Canvas::from_fn(size, |nx, ny| {
        let (cx, cy) = (nx * CELLS + sx, ny * CELLS + sy);
        let (i, j) = (cx.floor(), cy.floor());
        let (fx, fy) = (cx - i, cy - j);
        let warp_on_top = (i as i64 - j as i64).rem_euclid(3) != 0;
        let (across, colour, fibre) = if warp_on_top {
            (fx, warp_colour, fbm(cx * 6.0 + pose.ox, cy * 1.2 + pose.oy, 2, salt))
        } else {
            (fy, weft_colour, fbm(cx * 1.2 + pose.ox, cy * 6.0 + pose.oy, 2, salt + 1))
        };
        let profile = sin(PI * across);
        let shade = (0.50 + 0.50 * profile) * (0.90 + 0.20 * fibre) * pose.gain;
        scale(colour, shade)
    })
}

/// Granite-like stone: cloudy fbm colour, sparse dark and light grains and
/// a fine per-pixel texture.
pub(crate) fn stone(size: u32, pose: &Pose) -> Canvas {
    let salt = tag("stone");
    let light = [0.68, 0.65, 0.60];
    let dark = [0.40, 0.39, 0.38];
    let px = size as f32;
    Canvas::from_fn(size, |nx, ny| {
        let (u, v) = (nx + pose.ox, ny + pose.oy);
        let cloud = fbm(u * 5.0, v * 5.0, 5, salt);
        let dark_grain = smoothstep(0.70, 0.80, value_noise(u * 45.0, v * 45.0, salt + 3));
        let light_grain = smoothstep(0.75, 0.85, value_noise(u * 60.0, v * 60.0, salt + 4));
        let fine = value_noise(u * px, v * px, salt + 5);
        let mut colour = mix(light, dark, smoothstep(0.2, 0.8, cloud));
        colour = mix(colour, [0.18, 0.17, 0.17], 0.6 * dark_grain);
        colour = mix(colour, [0.90, 0.88, 0.84], 0.4 * light_grain);
        scale(colour, (0.95 + 0.10 * fine) * pose.gain)
    })
}
