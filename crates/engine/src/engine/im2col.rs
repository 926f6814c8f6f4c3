//! im2col for channels-last (NHWC) codes: each output pixel's receptive field as one row of the
//! convolution's GEMM, `(ky, kx, c)` in order.
//!
//! A kernel row's `kw · c` codes are contiguous both in the input and in the patch, so a patch
//! is `kh` span copies. Each output row first stages its `kh` input rows with the padding
//! written in (the zero point), so the spans need no bounds tests; the spans are short (5 bytes
//! for LeNet's first layer, 48 for a 3 × 3 over 16 channels) and are copied with overlapping
//! unaligned loads and stores rather than a `memcpy` call each, which cost more than the copy.
//!
//! Where a kernel row's `kw · c` codes are whole depth groups of the GEMM (a multiple of 4: every
//! convolution over 4, 8, 16… channels), the GEMM needs no patches at all: it reads each kernel
//! row's span where it lies in a padded copy of the input (implicit GEMM, [`RowsOfA::Gathered`]),
//! one offset per output pixel.

use super::chunks::fill_chunks;
use crate::gemm::{RowsOfA, Segments};

/// The shape of one im2col: input `[c, h, w]`, window, output `[oh, ow]`, stride, padding
/// `[top, left, bottom, right]`, and the patch row length `kp` (the window's `kh·kw·c` codes,
/// then the GEMM's padding up to its depth or its row stride: left as the buffer held it, since
/// the packed weights are zero there or the caller keeps it zero — writing it cost LeNet's first
/// layer a `memset` call per pixel).
#[derive(Debug, Clone, Copy)]
pub(super) struct Im2col {
    pub(super) input: [usize; 3],
    pub(super) kernel: [usize; 2],
    pub(super) output: [usize; 2],
    pub(super) stride: [usize; 2],
    pub(super) padding: [usize; 4],
    pub(super) kp: usize,
}

impl Im2col {
    /// Patches `first..first + dst.len() / kp` (counted over the batch's output pixels, row by
    /// row) into `dst`: a block of the GEMM's rows, for a convolution that patches and multiplies
    /// a block at a time. `staged` is scratch for the input rows, kept by the caller across
    /// blocks.
    pub(super) fn fill_rows(
        &self,
        x: &[u8],
        first: usize,
        zero_point: u8,
        dst: &mut [u8],
        staged: &mut Vec<u8>,
    ) {
        let c = self.input[0];
        let [kh, kw] = self.kernel;
        let [oh, ow] = self.output;
        let (kp, span) = (self.kp, kw * c);
        let k = kh * span;
        // Input columns a row of patches reads, padding included.
        let staged_w = ((ow - 1) * self.stride[1] + kw) * c;
        staged.resize(kh * staged_w, zero_point);
        let end = first + dst.len() / kp;
        let mut at = first;
        while at < end {
            let row = at / ow;
            let (n, oy) = (row / oh, row % oh);
            for (ky, rows) in staged.chunks_exact_mut(staged_w).enumerate() {
                self.stage_row(x, [n, oy * self.stride[0] + ky], zero_point, rows);
            }
            let row_end = ((row + 1) * ow).min(end);
            for p in at..row_end {
                let patch = &mut dst[(p - first) * kp..][..k];
                let from = (p - row * ow) * self.stride[1] * c;
                for (ky, dst) in patch.chunks_exact_mut(span).enumerate() {
                    copy_span(dst, &staged[ky * staged_w + from..][..span]);
                }
            }
            at = row_end;
        }
    }

    /// Whether the GEMM can read this convolution's patches where they lie in its padded input:
    /// a kernel row's `kw · c` codes are whole depth groups, so the packed weights hold the
    /// kernel rows back to back, as the input does each one.
    pub(super) fn reads_in_place(&self) -> bool {
        let span = self.kernel[1] * self.input[0];
        span.is_multiple_of(4) && self.kp == self.kernel[0] * span
    }

    /// `[rows, columns]` of an image with its padding.
    fn padded_size(&self) -> [usize; 2] {
        let [_, h, w] = self.input;
        let [top, left, bottom, right] = self.padding;
        [h + top + bottom, w + left + right]
    }

    /// Codes in the padded copy of `batch` images that [`Im2col::padded_input`] writes.
    pub(super) fn padded_len(&self, batch: usize) -> usize {
        let [hp, wp] = self.padded_size();
        batch * hp * wp * self.input[0]
    }

    /// `batch` images of `x` with their padding written in (the zero point), NHWC, into `dst`
    /// ([`Im2col::padded_len`] long).
    pub(super) fn padded_input(&self, x: &[u8], zero_point: u8, dst: &mut [u8]) {
        let [hp, wp] = self.padded_size();
        let row = wp * self.input[0];
        fill_chunks(dst, row, |at, rows| {
            for (i, dst) in rows.chunks_exact_mut(row).enumerate() {
                let r = at / row + i;
                self.stage_row(x, [r / hp, r % hp], zero_point, dst);
            }
        });
    }

    /// Output pixels `first..first + rows` as rows of `A` read in place from `padded` (the input
    /// as [`Im2col::padded_input`] lays it, or the input itself where there is no padding): each
    /// pixel's first kernel row in `offsets`, the others `jump` codes apart.
    pub(super) fn rows_in_place<'a>(
        &self,
        padded: &'a [u8],
        first: usize,
        rows: usize,
        offsets: &'a mut Vec<usize>,
    ) -> RowsOfA<'a> {
        let c = self.input[0];
        let [oh, ow] = self.output;
        let [hp, wp] = self.padded_size();
        let [sy, sx] = self.stride;
        offsets.clear();
        let (mut image, mut oy, mut ox) = (first / (oh * ow), first / ow % oh, first % ow);
        for _ in 0..rows {
            offsets.push(((image * hp + oy * sy) * wp + ox * sx) * c);
            ox += 1;
            if ox == ow {
                ox = 0;
                oy += 1;
                if oy == oh {
                    oy = 0;
                    image += 1;
                }
            }
        }
        RowsOfA::Gathered {
            codes: padded,
            offsets,
            spans: Segments {
                count: self.kernel[0],
                jump: wp * c,
            },
        }
    }

    /// Input row `py` (counted from the top of the padded image) of image `n`, columns from the
    /// left edge of the padding on, into `dst`: the zero point where it falls outside the image.
    fn stage_row(&self, x: &[u8], [n, py]: [usize; 2], zero_point: u8, dst: &mut [u8]) {
        let [c, h, w] = self.input;
        let (top, left) = (self.padding[0], self.padding[1]);
        let Some(iy) = py.checked_sub(top).filter(|&iy| iy < h) else {
            dst.fill(zero_point);
            return;
        };
        // Staged columns `lo..hi` are image columns `lo − left..hi − left`.
        let cols = dst.len() / c;
        let (lo, hi) = (left.min(cols), (left + w).min(cols));
        dst[..lo * c].fill(zero_point);
        if hi > lo {
            let from = ((n * h + iy) * w + lo - left) * c;
            dst[lo * c..hi * c].copy_from_slice(&x[from..from + (hi - lo) * c]);
        }
        dst[hi * c..].fill(zero_point);
    }
}

/// `dst.copy_from_slice(src)` for short spans, inline: overlapping unaligned 4-, 8- and 16-byte
/// moves (how `memcpy` copies short spans, without the call).
#[inline(always)]
fn copy_span(dst: &mut [u8], src: &[u8]) {
    let len = dst.len();
    assert_eq!(len, src.len(), "spans of one length");
    /// One `T`-wide move at byte `at` of both spans.
    ///
    /// # Safety
    /// `at + size_of::<T>() <= len` for both spans.
    #[inline(always)]
    unsafe fn mv<T: Copy>(dst: &mut [u8], src: &[u8], at: usize) {
        unsafe {
            let v = std::ptr::read_unaligned(src.as_ptr().add(at) as *const T);
            std::ptr::write_unaligned(dst.as_mut_ptr().add(at) as *mut T, v);
        }
    }
    // SAFETY: every move below lies within `len` bytes of both spans.
    unsafe {
        match len {
            0..4 => {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s;
                }
            }
            4..8 => {
                mv::<u32>(dst, src, 0);
                mv::<u32>(dst, src, len - 4);
            }
            8..16 => {
                mv::<u64>(dst, src, 0);
                mv::<u64>(dst, src, len - 8);
            }
            16..=64 => {
                let mut at = 0;
                while at + 16 < len {
                    mv::<u128>(dst, src, at);
                    at += 16;
                }
                mv::<u128>(dst, src, len - 16);
            }
            _ => dst.copy_from_slice(src),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_span_copies_every_length() {
        let src: Vec<u8> = (0..200).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..200 {
            let mut dst = vec![0xAAu8; len + 2];
            copy_span(&mut dst[1..len + 1], &src[..len]);
            assert_eq!(&dst[1..len + 1], &src[..len], "length {len}");
            assert_eq!(
                (dst[0], dst[len + 1]),
                (0xAA, 0xAA),
                "length {len} wrote outside"
            );
        }
    }
}
