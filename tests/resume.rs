//! An interrupted run resumes from its last checkpoint, not from zero: the run is stopped with
//! SIGINT (Ctrl-C) after its first epoch's checkpoint is written, then continued with `--resume`.
//! The trainer handles the signal itself, so this holds also where the test runs with SIGINT
//! ignored (started in the background by a non-interactive shell, which children inherit).
mod common;

use std::time::{Duration, Instant};

use common::*;

/// QAT distilling from the float model, interrupted: the resumed stage rebuilds its teacher (the
/// checkpoint holds the student only) and goes on from the epoch after the last checkpoint.
#[test]
fn interrupted_distillation_resumes_with_its_teacher() {
    let runs = temp_runs("resume-distillation");
    let args = [
        "--no-tui",
        "--set",
        "name=\"resume\"",
        "--set",
        "schemes=[\"w4a4\"]",
        "--set",
        "train.epochs=1",
        "--set",
        "qat.epochs=4",
        "--set",
        "qat.distillation.weight=0.5",
        "--set=data.num_workers=1",
    ];
    run_ok(&runs, &[&args[..], &["train"]].concat());
    let qat: Vec<&str> = [&args[..], &["qat"]].concat();
    let last = interrupted_within_three_tries(&runs, &qat, "resume/qat-w4a4", 4);
    let stdout = run_ok(&runs, &[&["--resume"][..], &qat].concat());
    assert!(
        stdout.contains("[qat W4A4] distilling from the float model"),
        "{stdout}"
    );
    let start = format!("[qat W4A4] training epochs {}..=4", last + 1);
    assert!(stdout.contains(&start), "expected `{start}` in:\n{stdout}");
    assert_eq!(
        trainer::last_checkpoint(&runs.join("resume/qat-w4a4")),
        Some(4)
    );
    assert!(runs.join("resume/qat-w4a4/model.bpk").is_file());
    std::fs::remove_dir_all(runs).ok();
}

#[test]
fn interrupted_training_resumes_from_its_last_checkpoint() {
    let runs = temp_runs("resume");
    let args = [
        "--no-tui",
        "--set",
        "name=\"resume\"",
        "--set",
        "train.epochs=4",
        "--set=data.num_workers=1",
        "train",
    ];
    let last = interrupted_within_three_tries(&runs, &args, "resume/float", 4);
    assert!(
        last < 4,
        "interrupted before the end (last checkpoint {last})"
    );

    let resume_args: Vec<&str> = ["--resume"].into_iter().chain(args).collect();
    let output = run(&runs, &resume_args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let start = format!("[float] training epochs {}..=4", last + 1);
    assert!(
        stdout.contains(&start),
        "resumed from epoch {}, expected `{start}` in:\n{stdout}",
        last + 1
    );
    assert!(
        !stdout.contains("epoch 1/4 train"),
        "epoch 1 was not retrained:\n{stdout}"
    );
    assert_eq!(
        trainer::last_checkpoint(&runs.join("resume/float")),
        Some(4)
    );
    assert!(runs.join("resume/float/model.bpk").is_file());

    // A finished stage is reused by --resume (refusal without it: tests/bad_input.rs).
    let output = run(&runs, &resume_args);
    assert!(
        text(&output).0.contains("finished earlier"),
        "{}",
        text(&output).0
    );
    std::fs::remove_dir_all(runs).ok();
}

/// [`interrupt_after_first_checkpoint`], started again (`stage` removed first) while the stage
/// finishes before the signal takes effect: burn-train writes checkpoints on a background thread,
/// and on a loaded machine the first one can land so late that the stage has run all its epochs.
/// Such a run says nothing about interruption. At most three tries.
fn interrupted_within_three_tries(
    runs: &std::path::Path,
    args: &[&str],
    stage: &str,
    epochs: usize,
) -> usize {
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(runs.join(stage));
        if let Some(last) = interrupt_after_first_checkpoint(runs, args, stage, epochs) {
            return last;
        }
    }
    panic!("`{stage}` finished before each of three interrupts");
}

/// Starts the run, sends it SIGINT (Ctrl-C) once the first epoch's checkpoint of `stage` (a
/// folder under `runs`, of `epochs` epochs) is on disk, and returns its last checkpoint, or
/// `None` when the stage had finished every epoch by then.
fn interrupt_after_first_checkpoint(
    runs: &std::path::Path,
    args: &[&str],
    stage: &str,
    epochs: usize,
) -> Option<usize> {
    let mut child = trainer(runs, args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stage = runs.join(stage);
    let started = Instant::now();
    while !stage.join("checkpoint/scheduler-1.bpk").is_file() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no checkpoint after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = child.try_wait().unwrap() {
        // Finished before the signal could be sent: only a complete, successful run may do that.
        assert!(status.success(), "the run failed: {status}");
        assert_eq!(trainer::last_checkpoint(&stage), Some(epochs));
        return None;
    }
    // Ctrl-C.
    let status = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = trainer::last_checkpoint(&stage);
    if output.status.success() && last == Some(epochs) {
        // The signal came after the last epoch: nothing was left to interrupt.
        return None;
    }
    // The trainer handles the signal itself: it stops after the current batch and says how to
    // continue, with the shell's status for Ctrl-C.
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("continue with --resume"), "{stderr}");
    Some(last.expect("a checkpoint survives the interrupt"))
}
