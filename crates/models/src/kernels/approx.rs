//! The counter-based hash of the dropout masks, and the vectorisable `erf` / `exp` (which live
//! in the engine, whose float islands compute the same floats as these kernels).

pub(crate) use engine::approx::{erf, exp_nonpositive};

/// A well-mixed 32-bit hash of a 32-bit counter under a 64-bit key (two rounds of
/// Chris Wellons' `lowbias32`), so element `i` of a dropout mask depends only on `(key, i)`:
/// any split of the work across threads gives the same mask.
#[inline(always)]
pub(crate) fn hash(i: u32, key: u64) -> u32 {
    #[inline(always)]
    fn lowbias32(mut x: u32) -> u32 {
        x ^= x >> 16;
        x = x.wrapping_mul(0x7feb_352d);
        x ^= x >> 15;
        x = x.wrapping_mul(0x846c_a68b);
        x ^ (x >> 16)
    }
    lowbias32(lowbias32(i ^ key as u32) ^ (key >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash's bits are unbiased over a counter range: each of the 32 bits is set in
    /// 50% ± 1% of 100,000 consecutive counters, for two keys.
    #[test]
    fn hash_bits_are_balanced() {
        for key in [0u64, 0x9e37_79b9_7f4a_7c15] {
            let mut ones = [0u32; 32];
            for i in 0..100_000u32 {
                let h = hash(i, key);
                for (b, count) in ones.iter_mut().enumerate() {
                    *count += (h >> b) & 1;
                }
            }
            for (b, &count) in ones.iter().enumerate() {
                let share = count as f64 / 100_000.0;
                assert!((share - 0.5).abs() < 0.01, "bit {b}: {share}");
            }
        }
    }
}
