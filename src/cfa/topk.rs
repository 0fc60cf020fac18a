//! A running top-K: the few smallest values seen so far, ascending, with their indices.

/// Inserts `d` (of centre `centre`) into the ascending `best`, dropping its last (largest).
#[inline]
pub fn insert(best: &mut [f32], index: &mut [u32], d: f32, centre: u32) {
    let mut i = best.len() - 1;
    while i > 0 && best[i - 1] > d {
        best[i] = best[i - 1];
        index[i] = index[i - 1];
        i -= 1;
    }
    best[i] = d;
    index[i] = centre;
}
