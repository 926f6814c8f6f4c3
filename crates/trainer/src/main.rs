//! `trainer`: see the crate docs and `trainer --help`.

use clap::Parser;

/// mimalloc instead of the system allocator: CPU training frees and reallocates megabyte-sized
/// tensor buffers every step, and glibc's malloc hands them back to the OS and faults them in
/// again (≈ 350 page faults per quantized layer step, doubling its time); mimalloc, told not to
/// purge ([`trainer::allocator`]), keeps them. See the README's "Speed" section.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    trainer::allocator::keep_freed_memory();
    // A bug must still read as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let place = info
            .location()
            .map(|l| format!(" ({}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "error: internal: {}{place}",
            message.lines().next().unwrap_or_default()
        );
    }));
    let cli = trainer::Cli::parse();
    if let Err(error) = trainer::install_interrupt_handler() {
        eprintln!("warning: Ctrl-C will not stop training gracefully: {error}");
    }
    // The run on a rayon pool thread: see `trainer::on_compute_pool` for why.
    if let Err(error) = trainer::on_compute_pool(|| trainer::run(cli)) {
        eprintln!("error: {error}");
        let code = if matches!(error, trainer::TrainerError::Interrupted { .. }) {
            130
        } else {
            1
        };
        std::process::exit(code);
    }
}
