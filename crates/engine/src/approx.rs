//! Branch-free `f32` approximations of `erf` and `exp`, written as plain arithmetic so that
//! loops over slices compile to vector instructions (libm's scalar `erff`/`expf` were 17% of a
//! MiniLM fine-tuning step on Flex). Shared by the fake-quant model's kernels
//! (`models::kernels`) and the engine's float islands (softmax, GELU), so both compute the same
//! floats.

/// 1.5·2²³ and its bits: `(v + MAGIC) − MAGIC` rounds half to even for |v| ≤ 2²².
const MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4B40_0000;

/// `erf(x)` as the rational function `x · P(x²) / Q(x²)` on `[-4, 4]` (clamped outside, where
/// `|erf| > 1 - 2e-8`), the approximation Eigen and XLA use for `f32`. Tested against libm's
/// `f64` `erf` below: absolute error under 4e-7 (3 ulp of 1; libm's `erff` is within 1).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // The published coefficients, digit for digit.
    #[allow(clippy::excessive_precision)]
    const P: [f32; 7] = [
        -2.72614225801306e-10,
        2.77068142495902e-08,
        -2.10102402082508e-06,
        -5.69250639462346e-05,
        -7.34990630326855e-04,
        -2.95459980854025e-03,
        -1.60960333262415e-02,
    ];
    #[allow(clippy::excessive_precision)]
    const Q: [f32; 5] = [
        -1.45660718464996e-05,
        -2.13374055278905e-04,
        -1.68282697438203e-03,
        -7.37332916720468e-03,
        -1.42647390514189e-02,
    ];
    let x = clamp(x, -4.0, 4.0);
    let x2 = x * x;
    let mut p = P[0];
    for c in &P[1..] {
        p = p * x2 + c;
    }
    let mut q = Q[0];
    for c in &Q[1..] {
        q = q * x2 + c;
    }
    x * p / q
}

/// `e^x` for `x ≤ 0` (inputs below -87 give `e^-87 ≈ 1.6e-38`, not a subnormal): `2^n · e^r`
/// with `n = round(x / ln 2)`, `|r| ≤ ln 2 / 2`, and `e^r` from its degree-7 Taylor polynomial
/// (truncation below 1e-8 relative). Tested against libm's `f64` `exp` below.
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n · LN2_HI` is exact for |n| < 2^12.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = clamp(x, -87.0, 0.0);
    // `n = round(x / ln 2)`, and its integer read from the rounded float's bits (as
    // `requant::code` does): no float-to-int conversion, so the loop vectorises.
    let shifted = x * LOG2_E + MAGIC;
    let n_int = shifted.to_bits() as i32 - MAGIC_BITS;
    let n = shifted - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.0 / 5040.0;
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + c;
    }
    let scale = f32::from_bits(((n_int + 127) as u32) << 23);
    p * scale
}

/// GELU with the exact (erf) form, `x · Φ(x)`, as BERT uses it.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `v` clamped by two comparisons (one vector min and max).
#[inline(always)]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 1/1000 from -6 to 6, plus the tails: `erf` within 4e-7 of libm's `f64` `erf`.
    #[test]
    fn erf_is_within_4e_7_of_the_f64_reference() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 / 1000.0)
            .chain([-1e3, -10.0, 10.0, 1e3, 0.0, -0.0, 1e-8])
            .map(|x| (erf(x) as f64 - libm::erf(x as f64)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 4e-7, "max |erf error| {worst:e}");
    }

    /// `e^x` within 2 ulp-ish (3e-7 relative) of libm's `f64` `exp` on `[-87, 0]`.
    #[test]
    fn exp_is_within_3e_7_relative_of_the_f64_reference() {
        let worst = (0..=87_000)
            .map(|i| -(i as f32) / 1000.0)
            .map(|x| {
                let reference = libm::exp(x as f64);
                (exp_nonpositive(x) as f64 - reference).abs() / reference
            })
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "max relative exp error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(-1e4) < 1e-37);
    }
}
