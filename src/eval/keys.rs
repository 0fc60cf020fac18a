//! Packing of `f32` scores into sortable integer keys.
//!
//! The ranking metrics sort up to ~10^7 pixels. Sorting an index array with a
//! comparator that chases `scores[i]` is cache-hostile; instead each sample is
//! packed into one `u64` whose high bits order exactly like the score and whose
//! low bits carry the payload (a label bit or a region id). A plain
//! `sort_unstable` on integers is then several times faster and needs no
//! extra index allocation.

/// Maps a score to a `u32` whose unsigned order equals the numeric order of
/// the score, or `None` for NaN (a NaN has no rank, so callers report the
/// metric as undefined rather than invent a position for it).
///
/// `-0.0` is folded into `+0.0` so that the two compare as a tie, as they do
/// numerically.
pub(crate) fn ordered_bits(score: f32) -> Option<u32> {
    if score.is_nan() {
        return None;
    }
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    Some(if bits & 0x8000_0000 != 0 { !bits } else { bits | 0x8000_0000 })
}

/// Inverse of [`ordered_bits`]; used to report a threshold back as a score.
pub(crate) fn score_from_bits(ordered: u32) -> f32 {
    let bits = if ordered & 0x8000_0000 != 0 { ordered & 0x7FFF_FFFF } else { !ordered };
    f32::from_bits(bits)
}

/// Builds `score << 1 | label` keys. Sorting them groups tied scores together
/// with negatives before positives inside each group.
pub(crate) fn label_keys(pairs: impl Iterator<Item = (f32, bool)>, capacity: usize) -> Option<Vec<u64>> {
    let mut keys = Vec::with_capacity(capacity);
    for (score, label) in pairs {
        keys.push((u64::from(ordered_bits(score)?) << 1) | u64::from(label));
    }
    Some(keys)
}

/// Score part of a key built by [`label_keys`].
pub(crate) fn label_key_score(key: u64) -> u64 {
    key >> 1
}

/// Whether a key built by [`label_keys`] is a positive sample.
pub(crate) fn label_key_positive(key: u64) -> bool {
    key & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_matches_float_order() {
        let values = [f32::NEG_INFINITY, -3.5, -1e-30, 0.0, 1e-30, 0.25, 7.0, f32::INFINITY];
        let bits: Vec<u32> = values.iter().map(|&v| ordered_bits(v).unwrap()).collect();
        assert!(bits.windows(2).all(|w| w[0] < w[1]));
        for (&v, &b) in values.iter().zip(&bits) {
            assert_eq!(score_from_bits(b), v);
        }
    }

    #[test]
    fn signed_zero_ties_and_nan_rejected() {
        assert_eq!(ordered_bits(-0.0), ordered_bits(0.0));
        assert_eq!(ordered_bits(f32::NAN), None);
    }
}
