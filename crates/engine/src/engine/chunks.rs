//! Filling an output chunk by chunk, on rayon's threads when it is large.

use rayon::prelude::*;

/// Fills `out` chunk by chunk with `f(offset, chunk)` — chunks of about 2¹⁴ elements, whole
/// multiples of `unit` (a row) — on rayon's threads when `out` is large, on this thread when
/// waking the others would cost more than the work; each chunk compiled for the widest vectors.
pub(super) fn fill_chunks<T: Send>(out: &mut [T], unit: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunk = (1usize << 14).div_ceil(unit).max(1) * unit;
    if out.len() >= 1 << 17 {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, o)| crate::simd::wide!(f(c * chunk, o)));
    } else {
        crate::simd::wide!({
            for (c, o) in out.chunks_mut(chunk).enumerate() {
                f(c * chunk, o);
            }
        },);
    }
}
