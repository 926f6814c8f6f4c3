//! One element's arithmetic, shared by every loop: the code and its clip mask, rounding half to
//! even without a libm call, and the scale-gradient coefficient.

/// Independent accumulators for reductions over one parameter's run: a single accumulator is a
/// dependency chain the compiler may not reorder (float addition is not associative).
pub(super) const LANES: usize = 16;

/// Round half to even for `|v| < 2^22` without a libm call: adding and subtracting `1.5 · 2^23`
/// leaves no fractional bits, and IEEE round-to-nearest-even does the rest. Callers clamp first.
#[inline(always)]
pub(super) fn round_half_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// The code offset from the zero point, `clamp(round(x / s), lo, hi)` (= `q - zp`), and 1 where
/// `round(x / s)` lies on the grid, else 0. One rounding serves both: clamping to one code beyond
/// the grid first keeps the rounding exact and tells inside from outside.
#[inline(always)]
pub(super) fn code_and_mask(x: f32, inv: f32, lo: f32, hi: f32) -> (f32, f32) {
    let (code, inside) = code_and_inside(x, inv, lo, hi);
    (code, inside as u8 as f32)
}

/// [`code_and_mask`] with the mask as a `bool` (for packing into bits).
#[inline(always)]
pub(super) fn code_and_inside(x: f32, inv: f32, lo: f32, hi: f32) -> (f32, bool) {
    let c = round_half_even(clamp(x * inv, lo - 1.0, hi + 1.0));
    let code = clamp(c, lo, hi);
    (code, c == code)
}

/// The code offset alone, `round(clamp(x / s, lo, hi))`: with integer bounds this equals
/// [`code_and_mask`]'s code (rounding is monotone and fixes integers) at one clamp instead of two.
#[inline(always)]
pub(super) fn code(x: f32, inv: f32, lo: f32, hi: f32) -> f32 {
    round_half_even(clamp(x * inv, lo, hi))
}

/// `v` clamped to `[lo, hi]` by plain comparisons, which compile to one vector min and max
/// (`f32::clamp` also orders NaNs, which costs a compare and blend per bound). NaN stays NaN.
#[inline(always)]
pub(super) fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

/// `∂x̂/∂s` of one element: `(q - zp) - x/s` inside the grid, `(q - zp)` outside.
#[inline(always)]
pub(super) fn scale_coef(x: f32, code: f32, mask: f32, inv: f32) -> f32 {
    code - x * inv * mask
}
