//! Runs you can trust, part 2: damaged models and checkpoints are refused with a line naming the
//! file and the checkpoint to fall back to; `--resume` takes the newest checkpoint that verifies;
//! a run killed while writing a checkpoint leaves only complete files under final names.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn train_args<'a>(name: &'a str, epochs: &'a str) -> Vec<&'a str> {
    let mut args = vec!["--set", name, "--set", "data.train_limit=600"];
    args.extend(QUICK);
    args.extend(["--set", epochs, "train"]);
    args
}

/// `args` with `--resume` in front.
fn resuming<'a>(args: &[&'a str]) -> Vec<&'a str> {
    ["--resume"]
        .into_iter()
        .chain(args.iter().copied())
        .collect()
}

fn one_error_line(output: &std::process::Output) -> String {
    let (stdout, stderr) = text(output);
    assert!(!output.status.success(), "should fail:\n{stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_string()
}

#[test]
fn damaged_files_are_refused_and_resume_takes_the_newest_that_verifies() {
    let runs = temp_runs("integrity");
    let args = train_args("name=\"integrity\"", "train.epochs=2");
    let output = run(&runs, &args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let stage = runs.join("integrity/float");
    for kind in ["model", "optim", "scheduler"] {
        for epoch in [1, 2] {
            let file = stage.join(format!("checkpoint/{kind}-{epoch}.bpk"));
            trainer::integrity::read_checked(&file).unwrap();
        }
    }

    // A flipped byte anywhere in the model file: eval and ptq (which starts from it) refuse it.
    let model = stage.join("model.bpk");
    let pristine = std::fs::read(&model).unwrap();
    for at in [40, pristine.len() / 2, pristine.len() - 3] {
        std::fs::write(&model, &pristine).unwrap();
        flip_byte(&model, at);
        let checkpoint = model.to_string_lossy().into_owned();
        let line = one_error_line(&run(
            &runs,
            &[
                "--set",
                "name=\"integrity\"",
                "--no-tui",
                "eval",
                "--checkpoint",
                &checkpoint,
            ],
        ));
        assert!(
            line.contains("checksum mismatch") && line.contains("float/model.bpk"),
            "{line}"
        );
        assert!(
            line.contains("fall back to") && line.contains("checkpoint/model-2.bpk"),
            "{line}"
        );
    }
    let line = one_error_line(&run(
        &runs,
        &[
            "--set",
            "name=\"integrity\"",
            "--no-tui",
            "--set",
            "schemes=[\"w8a8\"]",
            "ptq",
        ],
    ));
    assert!(line.contains("checksum mismatch"), "{line}");

    // The newest epoch checkpoint damaged and the finished model gone: --resume warns and
    // continues from epoch 1, the newest checkpoint that verifies.
    std::fs::remove_file(&model).unwrap();
    flip_byte(&stage.join("checkpoint/model-2.bpk"), 5000);
    let line = one_error_line(&run(
        &runs,
        &[
            "--set",
            "name=\"integrity\"",
            "--no-tui",
            "eval",
            "--checkpoint",
            &stage.join("checkpoint/model-2.bpk").to_string_lossy(),
        ],
    ));
    assert!(
        line.contains("checkpoint/model-2.bpk") && line.contains("checkpoint/model-1.bpk"),
        "{line}"
    );
    let output = run(&runs, &resuming(&args));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("skipping the epoch-2 checkpoint") && stderr.contains("checksum mismatch"),
        "{stderr}"
    );
    assert!(stdout.contains("[float] training epochs 2..=2"), "{stdout}");
    trainer::integrity::read_checked(&model).unwrap();
    std::fs::remove_dir_all(runs).ok();
}

/// Kills the run while a checkpoint is being written (writes slowed down so the kill lands inside
/// one), three times in a row, resuming each time; every file under a final name verifies, and a
/// last `--resume` finishes the stage.
#[test]
fn a_run_killed_while_writing_a_checkpoint_leaves_the_last_good_one_usable() {
    let runs = temp_runs("kill-mid-write");
    let args = train_args("name=\"kill\"", "train.epochs=3");
    let dir = runs.join("kill/float/checkpoint");
    let mut kills = 0;
    for attempt in 0..3 {
        let attempt_args = if attempt > 0 {
            resuming(&args)
        } else {
            args.clone()
        };
        let mut child = trainer(&runs, &attempt_args)
            .env("TRAINER_TEST_WRITE_DELAY_MS", "20")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mid_write = loop {
            let writing = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with('.') && name.ends_with(".tmp")
                });
            if writing {
                break true;
            }
            if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(120) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        if mid_write {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "bpk") {
                trainer::integrity::read_checked(&path)
                    .unwrap_or_else(|e| panic!("after kill {attempt}: {e}"));
            }
        }
    }
    assert!(
        kills >= 2,
        "only {kills} of 3 kills landed during a checkpoint write"
    );
    let output = run(&runs, &resuming(&args));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    trainer::integrity::read_checked(&runs.join("kill/float/model.bpk")).unwrap();
    std::fs::remove_dir_all(runs).ok();
}
