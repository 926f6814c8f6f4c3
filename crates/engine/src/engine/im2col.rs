//! im2col for channels-last (NHWC) codes: each output pixel's receptive field as one row of the
//! convolution's GEMM, `(ky, kx, c)` in order.
//!
//! A kernel row's `kw · c` codes are contiguous both in the input and in the patch, so a patch
//! is `kh` span copies. Each output row first stages its `kh` input rows with the padding
//! written in (the zero point), so the spans need no bounds tests; the spans are short (5 bytes
//! for LeNet's first layer, 48 for a 3 × 3 over 16 channels) and are copied with overlapping
//! unaligned loads and stores rather than a `memcpy` call each, which cost more than the copy.
//!
//! Each kernel row's `kw · c` codes are laid out in the patch (and in the packed weights) as a
//! whole number of the GEMM's 4-code depth groups, the weights zero in the gap ([`row_depth`]),
//! so the GEMM needs no patches at all: it reads each kernel row's span where it lies in a padded
//! copy of the input (implicit GEMM, [`RowsOfA::Gathered`]), one offset per output pixel — the
//! gap's codes are the input's next ones, multiplied by zero.

use super::chunks::fill_chunks;
use crate::gemm::{RowsOfA, Segments};

/// Codes a kernel row of `kw` pixels over `c` channels takes in a patch and in the packed weights:
/// `kw · c` rounded up to whole 4-code depth groups (the weights zero past `kw · c`), so that the
/// GEMM can read every kernel row where it lies in the input.
pub(super) fn row_depth(kw: usize, c: usize) -> usize {
    crate::gemm::padded_depth(kw * c)
}

/// The shape of one im2col: input `[c, h, w]`, window, output `[oh, ow]`, stride, padding
/// `[top, left, bottom, right]`, and the patch row length `kp` (the window's `kh` kernel rows of
/// [`row_depth`] codes,
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
        let (kp, span, depth) = (self.kp, kw * c, row_depth(kw, c));
        let k = kh * depth;
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
                for (ky, dst) in patch.chunks_exact_mut(depth).enumerate() {
                    copy_span(&mut dst[..span], &staged[ky * staged_w + from..][..span]);
                }
            }
            at = row_end;
        }
    }

    /// Whether the GEMM reads a kernel row's span past the window (its gap to a whole depth
    /// group): then the input is read from a copy with room after its last code.
    fn reads_past_window(&self) -> bool {
        row_depth(self.kernel[1], self.input[0]) > self.kernel[1] * self.input[0]
    }

    /// Whether [`Im2col::rows_in_place`] reads the input as it is: no padding to write in, and
    /// no kernel row read past its window.
    pub(super) fn reads_input_as_is(&self) -> bool {
        self.padding == [0; 4] && !self.reads_past_window()
    }

    /// `[rows, columns]` of an image with its padding.
    fn padded_size(&self) -> [usize; 2] {
        let [_, h, w] = self.input;
        let [top, left, bottom, right] = self.padding;
        [h + top + bottom, w + left + right]
    }

    /// Codes in the padded copy of `batch` images that [`Im2col::padded_input`] writes: the
    /// images, then up to a depth group's gap after the last one.
    pub(super) fn padded_len(&self, batch: usize) -> usize {
        let [hp, wp] = self.padded_size();
        batch * hp * wp * self.input[0] + 3
    }

    /// `batch` images of `x` with their padding written in (the zero point), NHWC, into `dst`
    /// ([`Im2col::padded_len`] long).
    pub(super) fn padded_input(&self, x: &[u8], zero_point: u8, dst: &mut [u8]) {
        let [hp, wp] = self.padded_size();
        let row = wp * self.input[0];
        let (dst, tail) = dst.split_at_mut(dst.len() - 3);
        tail.fill(zero_point);
        fill_chunks(dst, row, |at, rows| {
            for (i, dst) in rows.chunks_exact_mut(row).enumerate() {
                let r = at / row + i;
                self.stage_row(x, [r / hp, r % hp], zero_point, dst);
            }
        });
    }

    /// Output pixels `first..first + rows` as rows of `A` read in place from `padded` (the input
    /// as [`Im2col::padded_input`] lays it, or the input itself where
    /// [`Im2col::reads_input_as_is`]): each pixel's first kernel row in `offsets`, the others
    /// `jump` codes apart.
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

    /// The patches im2col writes (AMX's path) and the rows the GEMM reads in place (every other
    /// family's) hold the same codes, kernel row by kernel row, for windows over 1, 3, 6 and 16
    /// channels (kernel rows with and without a gap to a whole depth group), strides, one-sided
    /// padding and images crossing blocks.
    #[test]
    fn patches_written_equal_patches_read_in_place() {
        let cases = [
            ([1, 9, 8], [3, 3], [1, 1], [1, 1, 1, 1]),
            ([3, 7, 9], [2, 3], [2, 1], [0, 2, 1, 1]),
            ([6, 6, 5], [5, 5], [1, 1], [2, 2, 2, 2]),
            ([16, 5, 5], [3, 3], [2, 2], [0, 0, 0, 0]),
            ([2, 6, 6], [1, 3], [1, 2], [0, 0, 0, 0]),
        ];
        for (input, kernel, stride, padding) in cases {
            let [c, h, w] = input;
            let output = [
                (h + padding[0] + padding[2] - kernel[0]) / stride[0] + 1,
                (w + padding[1] + padding[3] - kernel[1]) / stride[1] + 1,
            ];
            let depth = row_depth(kernel[1], c);
            let patches = Im2col {
                input,
                kernel,
                output,
                stride,
                padding,
                kp: kernel[0] * depth,
            };
            let batch = 3;
            let x: Vec<u8> = (0..batch * c * h * w)
                .map(|i| (i * 7 % 251) as u8)
                .collect();
            let (zero_point, m) = (9, batch * output[0] * output[1]);
            let mut written = vec![0u8; m * patches.kp];
            patches.fill_rows(&x, 0, zero_point, &mut written, &mut Vec::new());
            let mut padded = vec![0u8; patches.padded_len(batch)];
            patches.padded_input(&x, zero_point, &mut padded);
            let input_codes = if patches.reads_input_as_is() {
                &x
            } else {
                &padded
            };
            let mut offsets = Vec::new();
            let RowsOfA::Gathered {
                codes,
                offsets,
                spans,
            } = patches.rows_in_place(input_codes, 0, m, &mut offsets)
            else {
                unreachable!("rows in place are gathered")
            };
            let span = kernel[1] * c;
            for (p, patch) in written.chunks_exact(patches.kp).enumerate() {
                for ky in 0..kernel[0] {
                    let at = offsets[p] + ky * spans.jump;
                    assert!(
                        at + depth <= codes.len(),
                        "{input:?}: pixel {p} reads past A"
                    );
                    assert_eq!(
                        &patch[ky * depth..][..span],
                        &codes[at..at + span],
                        "{input:?} {kernel:?} pixel {p} kernel row {ky}"
                    );
                }
            }
        }
    }

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
