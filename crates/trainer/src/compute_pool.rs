//! Where the trainer's binaries do their work: on a thread of a rayon pool, not beside it.
//!
//! A training step on the CPU alternates between work on the calling thread (Burn's element-wise
//! ops, autodiff, the optimizer) and parallel kernels on rayon's pool (gemm's products, burn-flex's
//! reductions, this workspace's fused kernels). Called from a thread outside the pool, each
//! parallel kernel hands its whole job to the pool and puts the caller to sleep until it is done;
//! the pool's threads, asleep since the last kernel, must be woken first. On a shared 2-core VM
//! one such hand-off measured 30–70 µs (a `rayon::join` of two 10 µs tasks from outside the pool
//! took 42–93 µs once the workers had slept), and a MiniLM-L6 step makes hundreds of them. Run on a
//! pool thread instead, a kernel splits its job with the caller: the caller starts at once and
//! another thread joins in if it is awake. Measured with [`COMPUTE_POOL_VAR`] off and on in
//! alternating runs (2-core Intel Xeon VM, 2026-12-07): LeNet-BN's training step at batch 128
//! 78–81 → 71–72 ms, MiniLM-L6's at 32 × 64 tokens 893–900 → 855–867 ms, the fake-quant bench's
//! MLP step 1–8% less (README, *Performance notes*).
//!
//! The pool is the binaries' own, not rayon's global one, so a thread outside it that uses rayon
//! (a data-loader worker batching tensors) never waits behind the training loop holding a thread
//! of the pool it needs: with a single-thread pool that would deadlock.

use crate::denormals::{flush_denormals_on_this_thread, flush_denormals_wanted};

/// The stack of each of the pool's threads: the 8 MiB a Linux main thread gets, since the
/// trainer's whole run (deep autodiff graphs, recursive module visitors) moves onto one of them;
/// rayon's default would be Rust's 2 MiB for spawned threads.
pub const COMPUTE_STACK_BYTES: usize = 8 << 20;

/// Set to `off` to run the work on the calling thread as before (to compare, or to rule the pool
/// out when something misbehaves).
pub const COMPUTE_POOL_VAR: &str = "TRAINER_COMPUTE_POOL";

/// Runs `work` on a thread of a new rayon pool with one thread per core (or `RAYON_NUM_THREADS`),
/// and returns its result; the parallel kernels that `work` calls run on that pool, whose threads
/// flush subnormal floats to zero (see [`crate::denormals`]; [`crate::denormals::DENORMALS_VAR`]` = keep` leaves
/// them alone). A panic in `work` resumes on the caller. With [`COMPUTE_POOL_VAR`]` = off`, or
/// if the pool cannot be built (the OS refused a thread), `work` runs on the caller's thread, as
/// it is (subnormals kept).
pub fn on_compute_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if std::env::var(COMPUTE_POOL_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("off")) {
        return work();
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(COMPUTE_STACK_BYTES)
        .thread_name(|i| format!("compute-{i}"))
        .start_handler(|_| {
            if flush_denormals_wanted() {
                flush_denormals_on_this_thread();
            }
        })
        .build();
    match pool {
        // `install` resumes a panic of `work` on this thread.
        Ok(pool) => pool.install(work),
        Err(error) => {
            eprintln!("warning: no compute pool ({error}); running on the main thread");
            work()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::panic::catch_unwind;

    use super::*;

    /// The work runs on one of the pool's threads, and the rayon calls it makes use that pool.
    #[test]
    fn work_runs_on_a_pool_thread_and_its_kernels_on_that_pool() {
        assert!(rayon::current_thread_index().is_none(), "test thread");
        let (index, name, threads) = on_compute_pool(|| {
            (
                rayon::current_thread_index(),
                std::thread::current().name().map(String::from),
                rayon::current_num_threads(),
            )
        });
        assert!(index.is_some(), "not on a pool thread");
        assert!(name.is_some_and(|n| n.starts_with("compute-")));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let expected = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(cores);
        assert_eq!(threads, expected);
    }

    /// Every thread of the pool flushes subnormals (the variable that turns it off is not set
    /// in the tests), the one running the work and the ones its parallel calls run on.
    #[test]
    fn the_pools_threads_flush_denormals() {
        assert!(
            flush_denormals_wanted(),
            "{} is set",
            crate::denormals::DENORMALS_VAR
        );
        let flushed =
            on_compute_pool(|| rayon::broadcast(|_| crate::denormals::flushes_denormals()));
        assert!(
            !flushed.is_empty() && flushed.iter().all(|&f| f),
            "{flushed:?}"
        );
    }

    /// A parallel kernel called from the work returns the same result as on the caller's thread
    /// (the work is nested inside the pool, which must not deadlock, even with one thread).
    #[test]
    fn nested_parallel_work_completes() {
        use rayon::prelude::*;
        let sum = on_compute_pool(|| (0..100_000u64).into_par_iter().sum::<u64>());
        assert_eq!(sum, 100_000 * 99_999 / 2);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let nested = pool.install(|| on_compute_pool(|| rayon::join(|| 1, || 2)));
        assert_eq!(nested, (1, 2));
    }

    /// A panic in the work reaches the caller with its message, as it would without the pool.
    #[test]
    fn a_panic_in_the_work_resumes_on_the_caller() {
        let caught = catch_unwind(|| on_compute_pool(|| panic!("bad batch in file x")));
        let payload = caught.expect_err("the panic must reach the caller");
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned());
        assert_eq!(message.as_deref(), Some("bad batch in file x"));
    }
}
