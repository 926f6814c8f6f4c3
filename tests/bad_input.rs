//! Bad input ends in one clear line on stderr and a non-zero exit code, never a panic.
mod common;

use std::path::Path;

use common::*;

/// Runs the trainer and checks it fails with one `error:` line mentioning every `expected` part.
fn fails_cleanly(runs: &Path, args: &[&str], expected: &[&str]) {
    let output = run(runs, args);
    let (stdout, stderr) = text(&output);
    assert!(!output.status.success(), "should fail: {args:?}\n{stdout}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "one line on stderr for {args:?}, got:\n{stderr}"
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(
        !line.contains("panicked") && !line.contains("internal"),
        "{line}"
    );
    for part in expected {
        assert!(line.contains(part), "`{part}` missing from: {line}");
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_string_lossy().into_owned()
}

const DEFAULT: &str = include_str!("../configs/fashion-mnist-tiny.toml");

#[test]
fn unknown_config_key() {
    let runs = temp_runs("bad-key");
    let config = write(
        &runs,
        "typo.toml",
        &DEFAULT.replace("[train]\n", "[train]\nepohcs = 3\n"),
    );
    fails_cleanly(
        &runs,
        &["--config", &config, "train"],
        &["typo.toml", "unknown field `epohcs`", "line"],
    );
    fails_cleanly(
        &runs,
        &["--set", "train.epohcs=3", "train"],
        &["train.epohcs", "epochs"],
    );
}

#[test]
fn nine_bit_scheme() {
    let runs = temp_runs("bad-bits");
    let scheme = std::fs::read_to_string(root().join("configs/schemes/w8a8.toml"))
        .unwrap()
        .replacen("bits = 8", "bits = 9", 1);
    let scheme = write(&runs, "w9.toml", &scheme);
    let schemes = format!("schemes=[\"{scheme}\"]");
    fails_cleanly(
        &runs,
        &["--set", &schemes, "ptq"],
        &["w9.toml", "weight.spec.bits", "9"],
    );
}

#[test]
fn missing_data_file() {
    let runs = temp_runs("bad-missing");
    let dir = format!("data.dir=\"{}\"", runs.join("nowhere").display());
    fails_cleanly(
        &runs,
        &["--set", &dir, "train"],
        &["nowhere", "train-images-idx3-ubyte", "not found"],
    );
}

#[test]
fn truncated_idx_file() {
    let runs = temp_runs("bad-truncated");
    let data = runs.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let embedded = root().join("datasets/embedded/fashion-mnist-small");
    for entry in std::fs::read_dir(&embedded).unwrap().flatten() {
        std::fs::copy(entry.path(), data.join(entry.file_name())).unwrap();
    }
    // A raw (not gzipped) images file cut short: the reader must say so, naming the file.
    let mut raw = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(
            std::fs::File::open(embedded.join("train-images-idx3-ubyte.gz")).unwrap(),
        ),
        &mut raw,
    )
    .unwrap();
    std::fs::remove_file(data.join("train-images-idx3-ubyte.gz")).unwrap();
    std::fs::write(data.join("train-images-idx3-ubyte"), &raw[..raw.len() / 2]).unwrap();
    let dir = format!("data.dir=\"{}\"", data.display());
    fails_cleanly(
        &runs,
        &["--set", &dir, "train"],
        &["train-images-idx3-ubyte", "truncated"],
    );
}

#[test]
fn unknown_backend() {
    let runs = temp_runs("bad-backend");
    fails_cleanly(
        &runs,
        &["--backend", "tpu", "train"],
        &["unknown backend `tpu`", "flex"],
    );
}

#[test]
fn existing_outputs_are_not_overwritten_silently() {
    let runs = temp_runs("bad-existing");
    let stage = runs.join("fashion-mnist-tiny/float");
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::write(stage.join("model.bpk"), b"x").unwrap();
    std::fs::write(stage.join("model.json"), b"{}").unwrap();
    fails_cleanly(
        &runs,
        &["--no-tui", "train"],
        &["float", "--resume", "--fresh"],
    );
}

#[test]
fn a_schedule_milestone_that_never_fires() {
    let runs = temp_runs("bad-schedule");
    fails_cleanly(
        &runs,
        &[
            "--set",
            "qat.epochs=2",
            "--set",
            "qat.observer_freeze_epoch=2",
            "qat",
        ],
        &["qat.observer_freeze_epoch", "never take effect", "omit it"],
    );
    fails_cleanly(
        &runs,
        &[
            "--set",
            "qat.epochs=1",
            "--set",
            "qat.observer_freeze_epoch=0",
            "--set",
            "qat.bn_freeze_epoch=1",
            "train",
        ],
        &["qat.bn_freeze_epoch"],
    );
}

#[test]
fn a_folder_where_a_data_file_should_be_and_a_missing_data_folder() {
    let runs = temp_runs("bad-data-paths");
    let data = runs.join("data");
    std::fs::create_dir_all(data.join("train-images-idx3-ubyte.gz")).unwrap();
    let dir = format!("data.dir=\"{}\"", data.display());
    fails_cleanly(
        &runs,
        &["--set", &dir, "train"],
        &["train-images-idx3-ubyte.gz", "is a directory"],
    );
    let missing = format!("data.dir=\"{}\"", runs.join("nowhere").display());
    fails_cleanly(
        &runs,
        &["--set", &missing, "train"],
        &["nowhere", "does not exist", "train-images-idx3-ubyte"],
    );
    let empty = runs.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = format!("data.dir=\"{}\"", empty.display());
    fails_cleanly(
        &runs,
        &["--set", &empty, "train"],
        &["train-images-idx3-ubyte.gz", "not found"],
    );
    let broken = runs.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("dataset.json"), "{\"classes\": [1, }").unwrap();
    let broken = format!("data.dir=\"{}\"", broken.display());
    fails_cleanly(&runs, &["--set", &broken, "train"], &["dataset.json:1"]);
}
