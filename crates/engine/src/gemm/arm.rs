//! The AArch64 kernel: `sdot` (Armv8.2 dot product) over the same packed panels, called only
//! after run-time detection. Activations are shifted to signed (`a − 128`) and the driver adds
//! `128 · Σw` back, as for AVX2; signed × signed is exact for every code, −128 included.

use std::arch::aarch64::*;

use super::{MR, PANEL, Segments};

/// `acc += a · b` in four 4-byte dot products (`sdot`; its intrinsic `vdotq_s32` is not stable
/// in Rust 1.95, the instruction is).
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    unsafe {
        std::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// `MR × 16`: per depth group, four 16-byte weight vectors (4 columns × 4 depths each) and one
/// broadcast activation group per row, 16 accumulators.
///
/// # Safety
/// NEON with the dot-product extension present; `rows[r]` hold `seg.count` spans of `4·kq`
/// codes, `seg.jump` apart; `panel` holds `64·kq·seg.count` bytes.
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn tile_neondot(
    rows: [*const u8; MR],
    seg: Segments,
    panel: *const i8,
    kq: usize,
    acc: &mut [i32; MR * 2 * PANEL],
) {
    unsafe {
        let flip = vdupq_n_u8(0x80);
        let mut c = [vdupq_n_s32(0); 4 * MR];
        for s in 0..seg.count {
            let rows = rows.map(|row| row.add(s * seg.jump));
            let panel = panel.add(s * kq * 64);
            for q in 0..kq {
                let w = panel.add(q * 64);
                let ws = [
                    vld1q_s8(w),
                    vld1q_s8(w.add(16)),
                    vld1q_s8(w.add(32)),
                    vld1q_s8(w.add(48)),
                ];
                for r in 0..MR {
                    let group = (rows[r].add(4 * q) as *const u32).read_unaligned();
                    let x = vreinterpretq_s8_u8(veorq_u8(
                        vreinterpretq_u8_u32(vdupq_n_u32(group)),
                        flip,
                    ));
                    for (v, w) in ws.iter().enumerate() {
                        c[4 * r + v] = sdot(c[4 * r + v], x, *w);
                    }
                }
            }
        }
        for (i, v) in c.iter().enumerate() {
            vst1q_s32(acc.as_mut_ptr().add(i * 4), *v);
        }
    }
}
