//! Bad input ends in one clear line on stderr and a non-zero exit code, never a panic.
mod common;

use std::path::Path;

use common::*;

/// Runs the trainer and checks it fails with one `error:` line mentioning every `expected` part.
fn fails_cleanly(runs: &Path, args: &[&str], expected: &[&str]) {
    fails_cleanly_with(runs, args, &[], expected);
}

/// [`fails_cleanly`] with the environment variables `env` set.
fn fails_cleanly_with(runs: &Path, args: &[&str], env: &[(&str, &str)], expected: &[&str]) {
    let output = trainer(runs, args)
        .envs(env.iter().copied())
        .output()
        .expect("trainer binary runs");
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
fn a_bad_gpu_memory_pool_is_named() {
    let runs = temp_runs("bad-gpu-memory");
    let cases = [
        ("sliced", "wgpu", "expected `adaptive` or `exclusive`"),
        ("exclusive", "flex", "applies to `--backend wgpu` only"),
    ];
    for (value, backend, expected) in cases {
        fails_cleanly_with(
            &runs,
            &["--backend", backend, "train"],
            &[(trainer::GPU_MEMORY_VAR, value)],
            &[trainer::GPU_MEMORY_VAR, expected],
        );
    }
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
fn a_distillation_weight_or_temperature_out_of_range() {
    let runs = temp_runs("bad-distillation");
    fails_cleanly(
        &runs,
        &["--set", "qat.distillation.weight=1.5", "qat"],
        &["qat.distillation.weight", "1.5", "(0, 1]"],
    );
    fails_cleanly(
        &runs,
        &[
            "--set",
            "qat.distillation.weight=0.5",
            "--set",
            "qat.distillation.temperature=0",
            "qat",
        ],
        &["qat.distillation.temperature", "positive"],
    );
    let config = write(
        &runs,
        "kd.toml",
        &DEFAULT.replace(
            "[qat]\n",
            "[qat.distillation]\nweight = 0.5\ntemprature = 2.0\n\n[qat]\n",
        ),
    );
    fails_cleanly(
        &runs,
        &["--config", &config, "qat"],
        &["kd.toml", "temprature"],
    );
}

#[test]
fn an_adaround_setting_out_of_range_or_misspelled() {
    let runs = temp_runs("bad-adaround");
    fails_cleanly(
        &runs,
        &["--set", "ptq.adaround={iterations=0}", "ptq"],
        &["ptq.adaround.iterations", "at least 1"],
    );
    fails_cleanly(
        &runs,
        &["--set", "ptq.adaround.beta=[2.0, 20.0]", "ptq"],
        &["ptq.adaround.beta", "start must be"],
    );
    fails_cleanly(
        &runs,
        &["--set", "ptq.adaround={iteration=10}", "ptq"],
        &["iteration"],
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

const SENTIMENT: &str = "configs/bert-sentiment-tiny.toml";
const NER: &str = "configs/bert-ner-tiny.toml";

#[test]
fn malformed_conll_line_is_named_with_file_and_line() {
    let runs = temp_runs("bad-conll");
    let file = write(&runs, "bad.conll", "Anna B-PER\nworks O\nhere\n\nok O\n");
    let set = format!("data.file=\"{file}\"");
    fails_cleanly(
        &runs,
        &["--config", NER, "--set", &set, "train"],
        &["bad.conll:3"],
    );
}

#[test]
fn a_test_tag_never_seen_in_training_is_named() {
    let runs = temp_runs("bad-tag");
    let test = write(&runs, "test.conll", "Anna B-PER\nsaw O\nMars B-PLANET\n");
    let set = format!("data.test_file=\"{test}\"");
    fails_cleanly(
        &runs,
        &["--config", NER, "--set", &set, "train"],
        &[
            "test.conll",
            "B-PLANET",
            "never appears in the training file",
        ],
    );
}

#[test]
fn a_missing_label_column_is_named() {
    let runs = temp_runs("bad-column");
    fails_cleanly(
        &runs,
        &[
            "--config",
            SENTIMENT,
            "--set",
            "data.format.label=\"stars\"",
            "train",
        ],
        &["reviews.tsv", "no label column `stars`", "label", "text"],
    );
}

#[test]
fn empty_text_files_are_errors() {
    let runs = temp_runs("bad-empty");
    let tsv = write(&runs, "empty.tsv", "");
    let set = format!("data.file=\"{tsv}\"");
    fails_cleanly(
        &runs,
        &["--config", SENTIMENT, "--set", &set, "train"],
        &["empty.tsv"],
    );
    let conll = write(&runs, "empty.conll", "\n \n");
    let set = format!("data.file=\"{conll}\"");
    fails_cleanly(
        &runs,
        &["--config", NER, "--set", &set, "train"],
        &["empty.conll"],
    );
}

#[test]
fn a_corrupt_tokenizer_json_is_named() {
    let runs = temp_runs("bad-tokenizer");
    let checkpoint = runs.join("checkpoint");
    std::fs::create_dir_all(&checkpoint).unwrap();
    let fixture = root().join("models/fixtures/minilm-l1");
    for file in ["config.json", "model.safetensors", "vocab.txt"] {
        std::fs::copy(fixture.join(file), checkpoint.join(file)).unwrap();
    }
    std::fs::write(
        checkpoint.join("tokenizer.json"),
        "{\"model\": {\"type\": \"WordPiece\"",
    )
    .unwrap();
    let set = format!("model.checkpoint=\"{}\"", checkpoint.display());
    fails_cleanly(
        &runs,
        &["--config", SENTIMENT, "--set", &set, "train"],
        &["tokenizer.json", "not a valid tokenizer.json"],
    );
    let set = format!("model.checkpoint=\"{}\"", runs.join("absent").display());
    fails_cleanly(
        &runs,
        &["--config", SENTIMENT, "--set", &set, "train"],
        &["absent", "not a folder", "cargo xtask fetch minilm"],
    );
}

const LSTM: &str = "configs/lstm-japanese-vowels.toml";

#[test]
fn malformed_sequence_files_are_named_with_file_and_line() {
    let runs = temp_runs("bad-ts");
    let header = "@dimensions 2\n@classLabel true 1 2\n@data\n";
    let cases = [
        (
            "ragged.ts",
            format!("{header}1,2,3:4,5,6:1\n1,2:3:2\n"),
            vec!["ragged.ts:5", "dimension 2 has 1 frames"],
        ),
        (
            "label.ts",
            format!("{header}1,2:3,4:7\n"),
            vec!["label.ts:4", "label `7`"],
        ),
        (
            "number.ts",
            format!("{header}1,2:3,x:1\n"),
            vec!["number.ts:4", "`x` is not a number"],
        ),
    ];
    for (name, contents, expected) in cases {
        let file = write(&runs, name, &contents);
        let set = format!("data.file=\"{file}\"");
        fails_cleanly(
            &runs,
            &["--config", LSTM, "--set", &set, "train"],
            &expected,
        );
    }
    // A test file with another number of features than the training file.
    let test = write(&runs, "test.ts", "@dimensions 3\n@data\n1:2:3:1\n");
    let set = format!("data.test_file=\"{test}\"");
    fails_cleanly(
        &runs,
        &["--config", LSTM, "--set", &set, "train"],
        &["test.ts", "3 features per frame", "`data.file` has 12"],
    );
    // The task and the model must fit.
    fails_cleanly(
        &runs,
        &[
            "--config",
            LSTM,
            "--set",
            "task=\"image-classification\"",
            "train",
        ],
        &["model.kind", "`image-classification` needs an image model"],
    );
}
