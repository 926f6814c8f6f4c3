//! The arithmetic where integers meet scales, shared by the interpreter and the engine so both
//! compute the same bits. Requantization is a **float rescale**: `code = clamp(round_half_even(
//! acc · M[c]), qmin − z, qmax − z) + z` with `M[c] = s_x · s_w[c] / s_y` in `f32` (not Jacob et
//! al.'s fixed-point multiplier and shift): the fake-quant model rounds an `f32` product too, so
//! this keeps the engine closest to what was trained, and `f32` multiplies are as cheap as the
//! fixed-point ones on every CPU we target.

use crate::program::ActQuant;

/// `x` quantized onto `q` with `inv_scale` (= 1/step, or a requantization multiplier), the
/// lower bound raised to real zero when `relu`. Exactly the fake-quant forward:
/// `round_half_even(clamp(x · inv, qmin − z, qmax − z)) + z`; NaN maps to the lower bound.
#[inline(always)]
pub fn quantize(x: f32, inv_scale: f32, q: &ActQuant, relu: bool) -> i32 {
    let (lo, hi) = bounds(q, relu);
    code(x, inv_scale, lo, hi, q.zero_point)
}

/// Bits of [`round_half_even`]'s 1.5·2²³.
const MAGIC_BITS: i32 = 0x4B40_0000;

/// `round_half_even(clamp(x · inv, lo, hi)) + zp` with the integer read straight from the
/// float's bits (`x + 1.5·2²³` holds `round(x)` in its mantissa for |x| ≤ 2²²): no float-to-int
/// conversion, so loops of it vectorise. NaN goes to `lo`, as `f32::max` would send it.
#[inline(always)]
pub fn code(x: f32, inv: f32, lo: f32, hi: f32, zp: i32) -> i32 {
    let v = x * inv;
    let v = if v > lo { v } else { lo };
    let v = if v < hi { v } else { hi };
    (v + 12_582_912.0).to_bits() as i32 - MAGIC_BITS + zp
}

/// The `(lo, hi)` bounds of [`code`] for grid `q` (relative to its zero point).
pub fn bounds(q: &ActQuant, relu: bool) -> (f32, f32) {
    let lo = if relu { 0 } else { q.qmin - q.zero_point };
    (lo as f32, (q.qmax - q.zero_point) as f32)
}

/// `x.round_ties_even()` for |x| ≤ 2²²: adding and removing 1.5·2²³ leaves no fractional bits,
/// and IEEE round-to-nearest-even does the rest — one add and one subtract that vectorise,
/// where `round_ties_even` is a libm call on baseline x86-64.
#[inline(always)]
pub fn round_half_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// `1 / scale` in `f32`, as the fake-quant kernels form it.
#[inline(always)]
pub fn inverse(scale: f32) -> f32 {
    1.0 / scale
}

/// Per-channel requantization multipliers `M[c] = (s_x · s_w[c]) / s_y`.
pub fn multipliers(input_scale: f32, weight_scale: &[f32], output_scale: f32) -> Vec<f32> {
    weight_scale
        .iter()
        .map(|&sw| input_scale * sw * inverse(output_scale))
        .collect()
}

/// The accumulator's real step per channel, `s_x · s_w[c]` (dequantized outputs, bias scale).
pub fn accumulator_scales(input_scale: f32, weight_scale: &[f32]) -> Vec<f32> {
    weight_scale.iter().map(|&sw| input_scale * sw).collect()
}

/// The grid a float row is quantized onto at run time (dynamic quantization): unsigned 8-bit,
/// affine, its range widened to include 0, as PyTorch's and ONNX Runtime's dynamic int8.
pub fn dynamic_grid(row: &[f32]) -> ActQuant {
    let (lo, hi) = row
        .iter()
        .fold((0f32, 0f32), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let span = hi - lo;
    let scale = if span > 0.0 && span.is_finite() {
        span / 255.0
    } else {
        1.0
    };
    let zero_point = ((-lo / scale).round_ties_even() as i32).clamp(0, 255);
    ActQuant {
        scale,
        zero_point,
        qmin: 0,
        qmax: 255,
    }
}

/// Real value of a residual add's codes: `(a − z_a)·s_a + (b − z_b)·s_b`, the fake-quant model's sum.
#[inline(always)]
pub fn add_real(a: i32, qa: &ActQuant, b: i32, qb: &ActQuant) -> f32 {
    (a - qa.zero_point) as f32 * qa.scale + (b - qb.zero_point) as f32 * qb.scale
}

/// Real value of a mean from the sum of `n` centred codes: `sum · (s_x / n)`.
#[inline(always)]
pub fn mean_real(centred_sum: i32, n: usize, q: &ActQuant) -> f32 {
    centred_sum as f32 * (q.scale / n as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const U8: ActQuant = ActQuant {
        scale: 0.5,
        zero_point: 10,
        qmin: 0,
        qmax: 255,
    };

    #[test]
    fn quantize_rounds_half_to_even_and_clamps_to_the_grid() {
        assert_eq!(quantize(0.25, 2.0, &U8, false), 10); // 0.5 → 0
        assert_eq!(quantize(0.75, 2.0, &U8, false), 12); // 1.5 → 2
        assert_eq!(quantize(-100.0, 2.0, &U8, false), 0);
        assert_eq!(quantize(1e9, 2.0, &U8, false), 255);
        assert_eq!(quantize(-3.0, 2.0, &U8, true), 10);
        assert_eq!(quantize(f32::NAN, 2.0, &U8, false), 0);
    }

    #[test]
    fn the_magic_rounding_equals_round_ties_even_on_the_grid_range() {
        for i in -600_000..600_000 {
            let x = i as f32 / 1024.0 + 0.000_1 * (i % 7) as f32;
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
        }
        for x in [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 254.5, -255.5] {
            assert_eq!(round_half_even(x), x.round_ties_even(), "{x}");
            assert_eq!(
                code(x, 1.0, -300.0, 300.0, 7),
                x.round_ties_even() as i32 + 7,
                "{x}"
            );
        }
    }

    #[test]
    fn dynamic_grid_covers_zero_and_the_row() {
        let q = dynamic_grid(&[0.5, 2.0, 1.0]);
        assert_eq!(q.zero_point, 0);
        assert_eq!(quantize(2.0, 1.0 / q.scale, &q, false), 255);
        let q = dynamic_grid(&[-1.0, 3.0]);
        assert_eq!(quantize(0.0, 1.0 / q.scale, &q, false), q.zero_point);
        assert_eq!(quantize(-1.0, 1.0 / q.scale, &q, false), 0);
        assert_eq!(dynamic_grid(&[0.0, 0.0]).scale, 1.0);
    }
}
