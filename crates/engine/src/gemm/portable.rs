//! The portable kernel: plain Rust over the packed layout, for CPUs without AVX2 (and ARM, until
//! a NEON dot-product kernel lands).

use super::{MR, PANEL, Segments};

/// One `MR × 16` tile.
///
/// # Safety
/// `rows[r]` must hold `seg.count` spans of `4·kq` codes, `seg.jump` apart, and `panel`
/// `64·kq·seg.count` bytes.
pub unsafe fn tile(
    rows: [*const u8; MR],
    seg: Segments,
    panel: *const i8,
    kq: usize,
    acc: &mut [i32; MR * 2 * PANEL],
) {
    let panel = unsafe { std::slice::from_raw_parts(panel, seg.count * kq * 4 * PANEL) };
    for (r, row) in rows.iter().enumerate() {
        let mut sums = [0i32; PANEL];
        for (q, group) in panel.chunks_exact(4 * PANEL).enumerate() {
            // Depth group `q` lies in span `q / kq` of the row.
            let (s, q) = (q / kq, q % kq);
            let x = unsafe { std::slice::from_raw_parts(row.add(s * seg.jump + 4 * q), 4) };
            for (j, w) in group.chunks_exact(4).enumerate() {
                sums[j] += (0..4).map(|t| x[t] as i32 * w[t] as i32).sum::<i32>();
            }
        }
        acc[r * PANEL..(r + 1) * PANEL].copy_from_slice(&sums);
    }
}
