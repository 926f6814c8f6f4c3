//! x86-64 kernels, each compiled for its instruction set and called only after run-time
//! detection ([`super::Isa::supported`]).

use std::arch::x86_64::*;

use super::{MR, PANEL, Segments};

/// Broadcasts 4 activation codes (one depth group) to every 32-bit lane.
#[inline(always)]
unsafe fn group(row: *const u8, q: usize) -> i32 {
    unsafe { (row.add(4 * q) as *const i32).read_unaligned() }
}

/// `MR × 32` with `vpdpbusd` on 512 bits: two panels, 8 accumulators.
///
/// # Safety
/// AVX-512 F/BW/VNNI present; `rows[r]` hold `seg.count` spans of `4·kq` codes, `seg.jump`
/// apart; two panels of `64·kq·seg.count` bytes follow `panel`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn tile_avx512vnni(
    rows: [*const u8; MR],
    seg: Segments,
    panel: *const i8,
    kq: usize,
    acc: &mut [i32; MR * 2 * PANEL],
) {
    unsafe {
        let next = panel.add(seg.count * kq * 4 * PANEL);
        let mut c = [_mm512_setzero_si512(); 2 * MR];
        for s in 0..seg.count {
            let rows = rows.map(|row| row.add(s * seg.jump));
            let (panel, next) = (panel.add(s * kq * 64), next.add(s * kq * 64));
            for q in 0..kq {
                let w0 = _mm512_loadu_si512(panel.add(q * 64) as *const _);
                let w1 = _mm512_loadu_si512(next.add(q * 64) as *const _);
                for r in 0..MR {
                    let x = _mm512_set1_epi32(group(rows[r], q));
                    c[2 * r] = _mm512_dpbusd_epi32(c[2 * r], x, w0);
                    c[2 * r + 1] = _mm512_dpbusd_epi32(c[2 * r + 1], x, w1);
                }
            }
        }
        for (i, v) in c.iter().enumerate() {
            _mm512_storeu_si512(acc.as_mut_ptr().add(i * 16) as *mut _, *v);
        }
    }
}

/// `MR × 16` on 256 bits, with `dot` the family's `vpdpbusd` (VEX or EVEX): one panel, 8
/// accumulators. Inlined into each family's kernel, which gives it its instructions.
///
/// # Safety
/// `dot`'s instructions present; `rows[r]` hold `seg.count` spans of `4·kq` codes, `seg.jump`
/// apart; `panel` holds `64·kq·seg.count` bytes.
#[inline(always)]
unsafe fn tile_256(
    rows: [*const u8; MR],
    seg: Segments,
    panel: *const i8,
    kq: usize,
    acc: &mut [i32; MR * 2 * PANEL],
    dot: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
) {
    unsafe {
        let mut c = [_mm256_setzero_si256(); 2 * MR];
        for s in 0..seg.count {
            let rows = rows.map(|row| row.add(s * seg.jump));
            let panel = panel.add(s * kq * 64);
            for q in 0..kq {
                let w0 = _mm256_loadu_si256(panel.add(q * 64) as *const _);
                let w1 = _mm256_loadu_si256(panel.add(q * 64 + 32) as *const _);
                for r in 0..MR {
                    let x = _mm256_set1_epi32(group(rows[r], q));
                    c[2 * r] = dot(c[2 * r], x, w0);
                    c[2 * r + 1] = dot(c[2 * r + 1], x, w1);
                }
            }
        }
        for (i, v) in c.iter().enumerate() {
            _mm256_storeu_si256(acc.as_mut_ptr().add(i * 8) as *mut _, *v);
        }
    }
}

/// `MR × 16` with the VEX-encoded `vpdpbusd` on 256 bits (AVX-VNNI).
///
/// # Safety
/// AVX2 and AVX-VNNI present; otherwise as [`tile_256`].
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn tile_avxvnni(
    rows: [*const u8; MR],
    seg: Segments,
    panel: *const i8,
    kq: usize,
    acc: &mut [i32; MR * 2 * PANEL],
) {
    unsafe {
        tile_256(rows, seg, panel, kq, acc, |c, x, w| {
            _mm256_dpbusd_avx_epi32(c, x, w)
        })
    }
}

/// `2·MR × 16` with `vpdpbusd` on 512 bits: the AVX-512 VNNI family's kernel for products of at
/// most 16 columns, where the 32-column tile would multiply a panel of padding. One panel, one
/// 16-lane accumulator per row; twice the rows of the other kernels, so that a call's fixed costs
/// (row pointers, storing the tile, the epilogue) weigh half as much against a short depth.
///
/// # Safety
/// AVX-512 F/VNNI present; `rows[r]` hold `seg.count` spans of `4·kq` codes, `seg.jump` apart;
/// `panel` holds `64·kq·seg.count` bytes.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn tile_avx512vnni_narrow(
    rows: [*const u8; 2 * MR],
    seg: Segments,
    panel: *const i8,
    kq: usize,
    acc: &mut [i32; MR * 2 * PANEL],
) {
    unsafe {
        let mut c = [_mm512_setzero_si512(); 2 * MR];
        for s in 0..seg.count {
            let rows = rows.map(|row| row.add(s * seg.jump));
            let panel = panel.add(s * kq * 64);
            for q in 0..kq {
                let w = _mm512_loadu_si512(panel.add(q * 64) as *const _);
                for r in 0..2 * MR {
                    let x = _mm512_set1_epi32(group(rows[r], q));
                    c[r] = _mm512_dpbusd_epi32(c[r], x, w);
                }
            }
        }
        for (i, v) in c.iter().enumerate() {
            _mm512_storeu_si512(acc.as_mut_ptr().add(i * 16) as *mut _, *v);
        }
    }
}

/// `MR × 16` with AVX2: `x' = x − 128` (signed), `|x'| · (w · sign x')` by `vpmaddubsw` — pairs
/// reach at most 2 · 128 · 127 < 2¹⁵, so nothing saturates for weights within ±127 — then
/// `vpmaddwd` by ones to 32 bits. The result is `Σ x'·w`; the caller adds `128 · Σ w`.
///
/// # Safety
/// AVX2 present; `rows[r]` hold `seg.count` spans of `4·kq` codes, `seg.jump` apart; `panel`
/// holds `64·kq·seg.count` bytes.
#[target_feature(enable = "avx2")]
pub unsafe fn tile_avx2(
    rows: [*const u8; MR],
    seg: Segments,
    panel: *const i8,
    kq: usize,
    acc: &mut [i32; MR * 2 * PANEL],
) {
    unsafe {
        let flip = _mm256_set1_epi8(-128);
        let ones = _mm256_set1_epi16(1);
        let mut c = [_mm256_setzero_si256(); 2 * MR];
        for s in 0..seg.count {
            let rows = rows.map(|row| row.add(s * seg.jump));
            let panel = panel.add(s * kq * 64);
            for q in 0..kq {
                let w0 = _mm256_loadu_si256(panel.add(q * 64) as *const _);
                let w1 = _mm256_loadu_si256(panel.add(q * 64 + 32) as *const _);
                for r in 0..MR {
                    let x = _mm256_xor_si256(_mm256_set1_epi32(group(rows[r], q)), flip);
                    let ux = _mm256_abs_epi8(x);
                    let p0 = _mm256_maddubs_epi16(ux, _mm256_sign_epi8(w0, x));
                    let p1 = _mm256_maddubs_epi16(ux, _mm256_sign_epi8(w1, x));
                    c[2 * r] = _mm256_add_epi32(c[2 * r], _mm256_madd_epi16(p0, ones));
                    c[2 * r + 1] = _mm256_add_epi32(c[2 * r + 1], _mm256_madd_epi16(p1, ones));
                }
            }
        }
        for (i, v) in c.iter().enumerate() {
            _mm256_storeu_si256(acc.as_mut_ptr().add(i * 8) as *mut _, *v);
        }
    }
}

/// `iters` rounds of 12 independent `vpdpbusd` (512-bit) chains: the instruction's throughput
/// bound, for measuring the machine's int8 peak. Returns a value that depends on every chain.
///
/// # Safety
/// AVX-512 F/BW/VNNI present.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn spin_avx512vnni(iters: usize) -> i32 {
    let a = _mm512_set1_epi8(1);
    let b = _mm512_set1_epi8(2);
    let mut c = [_mm512_setzero_si512(); 12];
    for _ in 0..iters {
        for v in c.iter_mut() {
            *v = _mm512_dpbusd_epi32(*v, a, b);
        }
    }
    let sum = c
        .iter()
        .fold(_mm512_setzero_si512(), |s, v| _mm512_add_epi32(s, *v));
    _mm512_reduce_add_epi32(sum)
}

/// As [`spin_avx512vnni`] with the 256-bit AVX-VNNI form.
///
/// # Safety
/// AVX2 and AVX-VNNI present.
#[target_feature(enable = "avx2,avxvnni")]
pub unsafe fn spin_avxvnni(iters: usize) -> i32 {
    let a = _mm256_set1_epi8(1);
    let b = _mm256_set1_epi8(2);
    let mut c = [_mm256_setzero_si256(); 12];
    for _ in 0..iters {
        for v in c.iter_mut() {
            *v = _mm256_dpbusd_avx_epi32(*v, a, b);
        }
    }
    let sum = c
        .iter()
        .fold(_mm256_setzero_si256(), |s, v| _mm256_add_epi32(s, *v));
    _mm256_extract_epi32::<0>(sum)
}

/// As [`spin_avx512vnni`] with AVX2's `vpmaddubsw` + `vpmaddwd` + `vpaddd` (32 multiply-adds
/// per three instructions, as the AVX2 kernel issues them).
///
/// # Safety
/// AVX2 present.
#[target_feature(enable = "avx2")]
pub unsafe fn spin_avx2(iters: usize) -> i32 {
    let a = _mm256_set1_epi8(1);
    let b = _mm256_set1_epi8(2);
    let ones = _mm256_set1_epi16(1);
    let mut c = [_mm256_setzero_si256(); 12];
    // Each chain multiplies its own accumulator's bytes, so nothing is loop-invariant.
    let _ = a;
    for _ in 0..iters {
        for v in c.iter_mut() {
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*v, b), ones);
            *v = _mm256_add_epi32(*v, p);
        }
    }
    let sum = c
        .iter()
        .fold(_mm256_setzero_si256(), |s, v| _mm256_add_epi32(s, *v));
    _mm256_extract_epi32::<0>(sum)
}
