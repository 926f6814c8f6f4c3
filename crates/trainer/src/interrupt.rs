//! Ctrl-C (SIGINT), SIGTERM and SIGHUP stop training gracefully: the running stage stops after
//! its current batch, its finished epochs' checkpoints stay on disk, and the trainer exits with
//! status 130 and the `--resume` hint. A second signal, or one outside training, exits at once.
//!
//! The trainer installs its own handler rather than relying on the default action, so the
//! behaviour is the same when it was started from a script or in the background (where a shell
//! leaves SIGINT ignored) and when a job scheduler sends SIGTERM.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::train::Interrupter;

/// The interrupter of the stage that is training now, if any.
static TRAINING: Mutex<Option<Interrupter>> = Mutex::new(None);
/// A stop was requested: later stages do not start.
static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Installs the signal handler; call once, at start-up.
pub fn install_interrupt_handler() -> Result<(), ctrlc::Error> {
    ctrlc::set_handler(|| {
        let first = !REQUESTED.swap(true, Ordering::SeqCst);
        let training = TRAINING.lock().ok().and_then(|t| t.clone());
        match (first, training) {
            (true, Some(interrupter)) => {
                eprintln!(
                    "\nstopping after the current batch; finished epochs keep their checkpoints \
                     (signal again to quit at once)"
                );
                interrupter.stop(Some("interrupted by a signal"));
            }
            _ => std::process::exit(130),
        }
    })
}

/// Whether a stop was requested (a stage about to start should not).
pub fn interrupt_requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Routes signals to `interrupter` while `train` runs.
pub fn while_training<T>(interrupter: Interrupter, train: impl FnOnce() -> T) -> T {
    set_training(Some(interrupter));
    let out = train();
    set_training(None);
    out
}

fn set_training(interrupter: Option<Interrupter>) {
    if let Ok(mut training) = TRAINING.lock() {
        *training = interrupter;
    }
}
