//! Subnormal floats flushed to zero on the threads that train.
//!
//! On Intel CPUs an `f32` operation with a subnormal input or result (below 1.2e-38) takes a
//! microcode assist of a hundred cycles or more, instead of one. Fine-tuning MiniLM-L6 on
//! WNUT-16 (`configs/bert-ner.toml`) fills some activations' gradients with them, and the weight
//! gradients' products `xᵀ · g` then ran 30–50× slower than their FLOPs (a 384 × 832 × 384
//! product 30–70 ms instead of about 2; `gemm`'s microkernel 95% of the profile): an epoch took
//! 930 s on a 2-core Intel Xeon VM, against 35 s with subnormals flushed (2026-12-07). Values
//! that small carry nothing a `f32` model can use (`1e-38` of a weight's step), so, as
//! TensorFlow does on its CPU threads, the trainer's compute pool sets the CPU to read subnormal
//! inputs as zero and write zero for subnormal results (x86-64: MXCSR's DAZ and FTZ; AArch64:
//! FPCR's FZ). The setting is per thread (a thread inherits it from the thread that spawns it), so
//! only the pool's threads, and threads they start, change.

/// Set to `keep` to leave subnormals alone on the compute pool's threads (IEEE 754 gradual
/// underflow, at its speed), e.g. to compare results bit for bit with a run on another thread.
pub const DENORMALS_VAR: &str = "TRAINER_DENORMALS";

/// Whether the compute pool flushes subnormals: unless [`DENORMALS_VAR`] is `keep`.
pub fn flush_denormals_wanted() -> bool {
    !std::env::var(DENORMALS_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("keep"))
}

/// Makes this thread's `f32`/`f64` arithmetic treat subnormal inputs as zero and round subnormal
/// results to zero. Returns whether the CPU has the setting (x86-64 and AArch64 do).
pub fn flush_denormals_on_this_thread() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) flags.
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let mut csr: u32 = 0;
        // SAFETY: `stmxcsr` / `ldmxcsr` read and write this thread's SSE control register
        // through a valid, aligned `u32`; setting FTZ and DAZ changes only how subnormals round.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
        }
        true
    }
    #[cfg(target_arch = "aarch64")]
    {
        /// FPCR's flush-to-zero flag (bit 24), inputs and results alike.
        const FZ: u64 = 1 << 24;
        let mut fpcr: u64;
        // SAFETY: reads and writes this thread's floating-point control register; setting FZ
        // changes only how subnormals round.
        unsafe {
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack));
            fpcr |= FZ;
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack));
        }
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Whether this thread currently flushes subnormals, read off the arithmetic itself: a
/// subnormal input counts as zero, or a subnormal result comes out as zero.
pub fn flushes_denormals() -> bool {
    use std::hint::black_box;
    // Bits, not `== 0.0`: under DAZ the comparison itself reads a subnormal as zero.
    let subnormal = black_box(1e-40_f32);
    black_box(subnormal * black_box(1.0)).to_bits() == 0
        || black_box(black_box(f32::MIN_POSITIVE) * black_box(0.5)).to_bits() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh thread keeps IEEE subnormals; after the call it reads a subnormal input as zero
    /// and writes zero for a subnormal result, normal numbers untouched; the thread that spawned
    /// it is left as it was.
    #[test]
    fn flushing_changes_this_thread_only() {
        assert!(!flushes_denormals(), "the test thread already flushes");
        std::thread::spawn(|| {
            use std::hint::black_box;
            assert!(!flushes_denormals(), "a fresh thread already flushes");
            assert!(flush_denormals_on_this_thread());
            // Bits, not `== 0.0`: under DAZ the comparison itself reads a subnormal as zero.
            // A subnormal input read as zero (DAZ), though the product would be normal...
            assert_eq!(
                black_box(black_box(1e-40_f32) * black_box(1e30)).to_bits(),
                0
            );
            // ...and a subnormal result written as zero (FTZ).
            assert_eq!(
                black_box(black_box(f32::MIN_POSITIVE) * black_box(0.5)).to_bits(),
                0
            );
            assert!(flushes_denormals());
            assert_eq!(black_box(black_box(3.0_f32) * black_box(0.5)), 1.5);
        })
        .join()
        .unwrap();
        assert!(!flushes_denormals(), "leaked to the spawning thread");
    }
}
