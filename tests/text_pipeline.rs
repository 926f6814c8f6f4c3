//! The text tasks end to end through the trainer binary, on the committed fixtures (the 1-layer
//! MiniLM fixture, hand-written reviews and NER sentences): sentiment and NER pipelines on Flex and
//! on wgpu, reports in the CNN runs' format with each task's metrics, and `--resume` of a BERT run.
mod common;

use common::*;
use serde_json::Value;

fn report(run_dir: &std::path::Path) -> Value {
    json(&run_dir.join("report.json"))
}

fn pipeline(config: &str, backend: &str, extra: &[&str]) -> (std::path::PathBuf, Value) {
    let runs = temp_runs(&format!(
        "text-{backend}-{}",
        config.replace(['/', '.'], "-")
    ));
    let mut args = vec!["--no-tui", "--backend", backend, "--config", config];
    args.extend(extra);
    let output = run(&runs, &args);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "{config} on {backend} failed:\n{stdout}\n{stderr}"
    );
    let name = std::path::Path::new(config)
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let run_dir = runs.join(name);
    let report = report(&run_dir);
    (run_dir, report)
}

fn check_sentiment(backend: &str, extra: &[&str]) {
    let (run_dir, report) = pipeline("configs/bert-sentiment-tiny.toml", backend, extra);
    assert_eq!(report["task"], "sentence-classification");
    assert_eq!(report["model"], "bert:minilm-l1");
    for r in report["results"].as_array().unwrap() {
        assert_eq!(r["metric"], "accuracy");
        for m in ["precision", "recall", "f1"] {
            assert!(r["metrics"][m].is_number(), "{m} in {r}");
        }
    }
    let float = report_row(&report, "float", "float")["value"]
        .as_f64()
        .unwrap();
    // 24 test sentences, two classes: the fine-tuned fixture is far above chance.
    assert!(float >= 0.75, "float accuracy {float}");
    for scheme in ["W8A8", "W4A8"] {
        let qat = report_row(&report, "qat", scheme)["value"]
            .as_f64()
            .unwrap();
        assert!(qat >= float - 0.15, "QAT {scheme} {qat} vs float {float}");
    }
    let size = |v, s| report_row(&report, v, s)["size_bytes"].as_f64().unwrap();
    let ratio = size("float", "float") / size("qat", "W8A8");
    assert!(
        (3.5..4.1).contains(&ratio),
        "W8A8 is about 4× smaller: {ratio}"
    );
    for stage in ["float", "ptq-w8a8", "qat-w8a8", "qat-w4a8"] {
        assert!(run_dir.join(stage).join("model.bpk").is_file(), "{stage}");
    }
    check_int_rows(&run_dir, &report, &["W8A8", "W4A8"]);
    // `infer` on raw sentences gives a label per line.
    let stdout = infer(
        &run_dir,
        "sentences.txt",
        "a wonderful, moving film\n\nthe plot was dull\n",
    );
    assert!(
        stdout.contains("| a wonderful, moving film |") && stdout.contains("| the plot was dull |"),
        "{stdout}"
    );
    std::fs::remove_dir_all(run_dir.parent().unwrap()).ok();
}

/// `infer` with the run's W8A8 artifact on a file holding `contents`; its standard output.
fn infer(run_dir: &std::path::Path, name: &str, contents: &str) -> String {
    let input = run_dir.join(name);
    std::fs::write(&input, contents).unwrap();
    let artifact = run_dir.join("int-w8a8/model.qat");
    let args = [
        "infer",
        "--artifact",
        artifact.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    let output = run(run_dir.parent().unwrap(), &args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// Each scheme's exported artifact, run by the engine on the test set: the QAT model's
/// predictions (≥ 99.5%, metric within 0.1 point), the file's size about 4× / 8× smaller than
/// the float checkpoint.
fn check_int_rows(run_dir: &std::path::Path, report: &Value, schemes: &[&str]) {
    for scheme in schemes {
        let int = report_row(report, "int", scheme);
        let qat = report_row(report, "qat", scheme)["value"].as_f64().unwrap();
        let d = &int["deployment"];
        let agreement = d["parity"]["agreement"].as_f64().unwrap();
        assert!(agreement >= 0.995, "{scheme}: agreement {agreement}");
        let delta = int["value"].as_f64().unwrap() - qat;
        assert!(
            delta.abs() <= 0.001,
            "{scheme}: engine metric differs by {delta}"
        );
        let smaller =
            d["float_checkpoint_bytes"].as_f64().unwrap() / int["size_bytes"].as_f64().unwrap();
        let floor = if scheme.starts_with("W8") { 3.9 } else { 7.5 };
        assert!(
            smaller >= floor,
            "{scheme}: {smaller:.2}× smaller than the float checkpoint"
        );
        let dir = run_dir.join(format!("int-{}", scheme.to_lowercase()));
        assert!(dir.join("model.qat").is_file() && dir.join("eval.json").is_file());
    }
}

fn check_ner(backend: &str, extra: &[&str]) {
    let (run_dir, report) = pipeline("configs/bert-ner-tiny.toml", backend, extra);
    assert_eq!(report["task"], "token-classification");
    for r in report["results"].as_array().unwrap() {
        assert_eq!(r["metric"], "entity_f1");
        assert!(r["metrics"]["token_accuracy"].is_number(), "{r}");
    }
    let float = report_row(&report, "float", "float")["value"]
        .as_f64()
        .unwrap();
    assert!(float >= 0.7, "float entity F1 {float}");
    let qat = report_row(&report, "qat", "W8A8")["value"]
        .as_f64()
        .unwrap();
    assert!(qat >= float - 0.15, "QAT W8A8 {qat} vs float {float}");
    check_int_rows(&run_dir, &report, &["W8A8"]);
    // `infer` on CoNLL words gives a tag per word.
    let words = "-DOCSTART- O\n\nSofia\nRossi\nworks\n\nRome\n";
    let stdout = infer(&run_dir, "words.conll", words);
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| input"))
            .count(),
        4,
        "{stdout}"
    );
    // The per-type table and the token-level table are in each stage's report.
    let eval = std::fs::read_to_string(run_dir.join("qat-w8a8/eval.md")).unwrap();
    for part in ["PER", "LOC", "ORG", "B-PER", "micro avg", "tokens (words)"] {
        assert!(eval.contains(part), "`{part}` in:\n{eval}");
    }
    let logged = std::fs::read_dir(run_dir.join("float/train/epoch-1")).unwrap();
    let names: Vec<String> = logged
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.contains("Entity_F1")),
        "entity F1 is a live metric: {names:?}"
    );
    std::fs::remove_dir_all(run_dir.parent().unwrap()).ok();
}

#[test]
fn sentiment_pipeline_on_flex() {
    check_sentiment("flex", &[]);
}

#[test]
fn ner_pipeline_on_flex() {
    check_ner("flex", &[]);
}

#[test]
fn sentiment_and_ner_pipelines_on_wgpu() {
    // lavapipe runs Vulkan on the CPU: one QAT epoch (float keeps the config's 14: the fresh
    // head needs them to leave 50%).
    let short = [
        "--set",
        "qat.epochs=1",
        "--set",
        "qat.observer_freeze_epoch=0",
    ];
    check_sentiment("wgpu", &short);
    let short = [
        "--set",
        "train.epochs=5",
        "--set",
        "qat.epochs=1",
        "--set",
        "qat.observer_freeze_epoch=0",
    ];
    check_ner("wgpu", &short);
}

#[test]
fn an_interrupted_bert_stage_resumes_from_its_checkpoint() {
    let runs = temp_runs("text-resume");
    let args = [
        "--no-tui",
        "--config",
        "configs/bert-ner-tiny.toml",
        "--set",
        "train.epochs=3",
        "train",
    ];
    let output = run(&runs, &args);
    assert!(output.status.success(), "{:?}", text(&output));
    // Lose the finished model and the last epoch: as if the run stopped after epoch 2.
    let stage = runs.join("bert-ner-tiny/float");
    for file in ["model.bpk", "model.bpk.sha256", "model.json"] {
        std::fs::remove_file(stage.join(file)).unwrap();
    }
    for kind in ["model", "optim", "scheduler"] {
        for suffix in ["", ".sha256"] {
            let _ = std::fs::remove_file(stage.join(format!("checkpoint/{kind}-3.bpk{suffix}")));
        }
    }
    assert_eq!(trainer::last_checkpoint(&stage), Some(2));
    let resumed: Vec<&str> = ["--resume"].into_iter().chain(args).collect();
    let output = run(&runs, &resumed);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("[float] training epochs 3..=3"), "{stdout}");
    assert!(!stdout.contains("epoch 1/3 train"), "{stdout}");
    assert!(stage.join("model.bpk").is_file());
    std::fs::remove_dir_all(runs).ok();
}
