//! How the trainer's binaries keep freed tensor memory: mimalloc, told never to return it.
//!
//! A training step frees and reallocates the same megabyte-sized buffers every few
//! milliseconds. glibc's malloc hands them back to the OS; so does mimalloc, a second after
//! they are freed (its `purge_delay`: 1,000 ms in mimalloc 3; 100 and 1,000 measured as slow
//! as the default, only -1 helped). Every re-use then faults the pages in again and the kernel
//! zeroes them: on the BERT step (`cargo xtask bench bert-step`) that was 60% of the profile
//! (`clear_page_erms`), 1.5–2.6× the step time, and hit the QAT step (more, shorter-lived
//! buffers) far harder than the float one. With purging off, the process keeps its peak
//! working set, which a training loop reaches every step anyway.

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (v2 and v3 `mimalloc.h`; the Rust
/// bindings do not name it): milliseconds before freed memory goes back to the OS, -1 = never.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc (the binaries' global allocator) to keep freed memory instead of returning it
/// to the OS. Call first thing in `main`; harmless under another allocator.
pub fn keep_freed_memory() {
    // SAFETY: sets one integer option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// mimalloc's current purge delay in milliseconds (-1: never), for tests and diagnostics.
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reads one integer option.
    unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the option index: mimalloc 3's default purge delay is 1,000 ms (`options.c`; 10 in
    /// mimalloc 2), and ours is -1 once set. A wrong index would read another option's default
    /// (0, 1, 100, …) and fail here.
    #[test]
    fn the_purge_delay_option_is_the_one_we_set() {
        let before = purge_delay_ms();
        assert!(
            [1000, 10, -1].contains(&before),
            "option {MI_OPTION_PURGE_DELAY} reads {before}: not mimalloc's purge_delay"
        );
        keep_freed_memory();
        assert_eq!(purge_delay_ms(), -1);
    }
}
