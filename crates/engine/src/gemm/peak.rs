//! The machine's int8 peak, measured: how many multiply-adds per second a core issues with each
//! kernel family's instructions when nothing else limits them. Benchmarks report GEMM speed
//! against it (a fraction of a measured peak, not of a datasheet number).

use super::Isa;

/// Multiply-adds one spin round performs per chain instruction group.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn macs_per_round(isa: Isa) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Amx {
        return super::amx::SPIN_MACS;
    }
    12.0 * match isa {
        Isa::Amx | Isa::Avx512Vnni => 64.0,
        Isa::AvxVnni | Isa::Avx2 => 32.0,
        Isa::NeonDot | Isa::Portable => 1.0,
    }
}

/// Peak int8 operations (2 per multiply-add) per second of **one thread** with `isa`'s
/// instructions, timed over about `millis` ms; `None` for the portable family (no peak to speak of).
pub fn peak_ops_per_second(isa: Isa, millis: u64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if !isa.supported() {
            return None;
        }
        let spin = |iters: usize| -> i32 {
            // SAFETY: `isa` is supported (checked above).
            unsafe {
                match isa {
                    Isa::Amx => super::amx::spin(iters),
                    Isa::Avx512Vnni => super::x86::spin_avx512vnni(iters),
                    Isa::AvxVnni => super::x86::spin_avxvnni(iters),
                    Isa::Avx2 => super::x86::spin_avx2(iters),
                    Isa::NeonDot | Isa::Portable => 0,
                }
            }
        };
        if matches!(isa, Isa::Portable | Isa::NeonDot) {
            return None;
        }
        // Calibrate the round count, then time.
        use std::time::Instant;
        let mut iters = 1 << 16;
        loop {
            let start = Instant::now();
            std::hint::black_box(spin(std::hint::black_box(iters)));
            let took = start.elapsed().as_secs_f64();
            if took * 1000.0 >= millis as f64 {
                return Some(2.0 * macs_per_round(isa) * iters as f64 / took);
            }
            iters *= 2;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (isa, millis);
        None
    }
}
