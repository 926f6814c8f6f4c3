//! The TUI tried as a person would: the trainer runs in a real terminal (tmux), the dashboard is
//! captured while it trains, and quitting it (`q`, then `s`: stop) leaves a resumable checkpoint.
//!
//! Needs `tmux` (`.ci/run` installs it).
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn tmux(args: &[&str]) -> String {
    let output = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (.ci/run installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn dashboard_shows_training_and_quitting_leaves_a_resumable_checkpoint() {
    let runs = temp_runs("tui");
    let session = format!("trainer-tui-{}", std::process::id());
    let command = format!(
        "cd {} && {} --set 'runs_dir=\"{}\"' --set 'name=\"tui\"' --set train.epochs=20 --set data.num_workers=1 train; echo EXIT=$?; sleep 60",
        root().display(),
        env!("CARGO_BIN_EXE_trainer"),
        runs.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "48",
        &command,
    ]);
    let stage = runs.join("tui/float");
    let started = Instant::now();
    let mut screen = String::new();
    // Wait for the first epoch's checkpoint, then for the dashboard to show metrics.
    while started.elapsed() < Duration::from_secs(600) {
        screen = tmux(&["capture-pane", "-p", "-t", &session]);
        if trainer::last_checkpoint(&stage).is_some()
            && screen.contains("Loss")
            && screen.contains("Accuracy")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let dashboard = screen.clone();
    tmux(&["send-keys", "-t", &session, "q"]);
    std::thread::sleep(Duration::from_millis(700));
    tmux(&["send-keys", "-t", &session, "s"]);
    let mut ended = String::new();
    while started.elapsed() < Duration::from_secs(700) {
        ended = tmux(&["capture-pane", "-p", "-S", "-100", "-t", &session]);
        if ended.contains("EXIT=") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    tmux(&["kill-session", "-t", &session]);
    println!("dashboard while training:\n{dashboard}\nafter quitting:\n{ended}");

    assert!(
        dashboard.contains("Loss") && dashboard.contains("Accuracy"),
        "metrics on the dashboard:\n{dashboard}"
    );
    assert!(
        dashboard.contains("Epoch") || dashboard.contains("epoch"),
        "progress on the dashboard:\n{dashboard}"
    );
    assert!(
        ended.contains("EXIT=130"),
        "quitting stops the run with exit code 130:\n{ended}"
    );
    assert!(
        ended.contains("--resume"),
        "the message says how to continue:\n{ended}"
    );
    let last = trainer::last_checkpoint(&stage).expect("quitting leaves a checkpoint");
    assert!(last < 20);

    // The checkpoint is resumable: continue (plain output) for one more epoch.
    let output = run(
        &runs,
        &[
            "--no-tui",
            "--resume",
            "--set",
            "name=\"tui\"",
            "--set",
            &format!("train.epochs={}", last + 1),
            "train",
        ],
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("training epochs {}..=", last + 1)),
        "{stdout}"
    );
    std::fs::remove_dir_all(runs).ok();
}
