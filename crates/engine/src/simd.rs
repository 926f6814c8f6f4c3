//! Run-time SIMD for plain Rust loops: [`simd`] runs a closure inside a function compiled for
//! AVX-512 or AVX2 + FMA (whichever the CPU has), so the loops LLVM inlines there vectorise at
//! that width. Results do not change with the width: Rust never reassociates or contracts float
//! operations, so every lane computes what the scalar loop would.

/// `wide!(expr)`: evaluates `expr` through [`simd`] in a closure marked `#[inline(always)]`.
/// Without the attribute LLVM may compile the closure apart, for the baseline CPU, and its loops
/// run 4 lanes wide (MiniLM's GELU epilogue and softmax did, until this macro).
macro_rules! wide {
    ($body:expr $(,)?) => {
        $crate::simd::simd(
            #[inline(always)]
            || $body,
        )
    };
}
pub(crate) use wide;

/// Calls `f` compiled for the widest vector instructions this CPU supports; call it through
/// [`wide!`], which keeps `f` inlined into the wide context.
#[inline(always)]
pub fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
        unsafe fn v4<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn v3<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        use std::sync::OnceLock;
        static LEVEL: OnceLock<u8> = OnceLock::new();
        let level = *LEVEL.get_or_init(|| {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
            {
                4
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                3
            } else {
                0
            }
        });
        // SAFETY: the features were detected on this CPU.
        match level {
            4 => return unsafe { v4(f) },
            3 => return unsafe { v3(f) },
            _ => {}
        }
    }
    f()
}
