//! `trainer sensitivity` end to end on the embedded Fashion-MNIST subset: every LeNet unit left
//! out in turn, the plan's rows, and the two rows whose answers are known without the analysis —
//! every unit in float is the float model, every unit at W8A8 is the W8A8 scheme —, its resume
//! after an interruption, and its errors for bad options.
mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const UNITS: [&str; 5] = ["input_quant", "conv1", "conv2", "fc1", "fc2"];

/// A trained float LeNet (one epoch) in a run with schemes W8A8 and W4A4.
fn trained(test: &str) -> std::path::PathBuf {
    let runs = temp_runs(test);
    let output = run(&runs, &with_quick(&["--set", "name=\"s\"", "train"]));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "train:\n{stdout}\n{stderr}");
    runs
}

fn with_quick<'a>(args: &[&'a str]) -> Vec<&'a str> {
    quick("schemes=[\"w8a8\", \"w4a4\"]", "name=\"s\"", args)
}

fn sensitivity(runs: &Path, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["sensitivity"];
    all.extend(args);
    let output = run(runs, &with_quick(&all));
    let (stdout, stderr) = text(&output);
    (output.status.success(), stdout, stderr)
}

/// The `unit` of each of a report's units, in order.
fn unit_names(report: &Value) -> Vec<&str> {
    report["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["unit"].as_str().unwrap())
        .collect()
}

/// A JSON array of strings.
fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect()
}

fn report(runs: &Path, scheme: &str) -> Value {
    let path = runs.join(format!("s/sensitivity-{scheme}/report.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn every_unit_left_out_in_turn_and_the_known_rows_come_out_as_known() {
    let runs = trained("sensitivity");
    let (ok, stdout, stderr) = sensitivity(&runs, &["--scheme", "w4a4", "--top", "5"]);
    assert!(ok, "{stdout}\n{stderr}");
    let r = report(&runs, "w4a4");
    assert_eq!(r["scheme"], "W4A4");
    assert_eq!(r["fallback"], "float");
    assert_eq!(
        r["split"], "valid",
        "the plan is chosen off the test set by default"
    );
    assert_eq!(r["metric"], "accuracy");
    let units: Vec<&str> = unit_names(&r);
    assert_eq!(units, UNITS);
    let float = &r["float"];
    let quantized = &r["quantized"];
    assert!(float["sqnr_db"].is_null() && float["agreement"] == 1.0);
    let db = quantized["sqnr_db"].as_f64().unwrap();
    assert!((5.0..60.0).contains(&db), "W4A4 logits' SQNR {db}");
    // The whole scheme layer by layer, in forward order: `fc2` has no output quantizer, so its
    // row is the logits' SQNR the scheme's row reports, measured another way.
    let layers = r["layers"].as_array().unwrap();
    let names: Vec<&str> = layers
        .iter()
        .map(|l| l["layer"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["conv1", "conv2", "fc1", "fc2"]);
    let last = layers[3]["sqnr_db"].as_f64().unwrap();
    assert!((last - db).abs() < 0.01, "fc2 {last} dB, logits {db} dB");
    for layer in layers {
        let (sqnr, shift) = (layer["sqnr_db"].as_f64(), layer["shift_db"].as_f64());
        assert!(shift.unwrap() >= sqnr.unwrap(), "{layer}");
    }
    for unit in r["units"].as_array().unwrap() {
        let score = &unit["score"];
        // A unit with a weight left in float makes the model bigger; an activation alone does not.
        let bigger = score["size_bytes"].as_u64() > quantized["size_bytes"].as_u64();
        let has_weight = unit["quantizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q.as_str().unwrap().contains("weight"));
        assert_eq!(bigger, has_weight, "{unit}");
        assert!(score["sqnr_db"].as_f64().is_some(), "{unit}");
    }
    // The ranking holds every unit once, and the plan grows by one ranked unit per row.
    let ranking: Vec<&str> = strings(&r["ranking"]);
    let mut sorted = ranking.clone();
    sorted.sort();
    let mut expected = UNITS.to_vec();
    expected.sort();
    assert_eq!(sorted, expected);
    let plan = r["plan"].as_array().unwrap();
    assert_eq!(plan.len(), 5);
    for (k, row) in plan.iter().enumerate() {
        let kept: Vec<&str> = strings(&row["kept"]);
        assert_eq!(kept, ranking[..=k]);
    }
    // Every unit in float is the float model: its very logits, accuracy and size.
    let all_float = &plan[4]["score"];
    assert!(all_float["sqnr_db"].is_null(), "{all_float}");
    assert_eq!(all_float["value"], float["value"]);
    assert_eq!(all_float["size_bytes"], float["size_bytes"]);
    assert_eq!(all_float["agreement"], 1.0);
    // The plan as a scheme file, and the human report.
    let plan_toml = runs.join("s/sensitivity-w4a4/plan.toml");
    let plan_text = r["plan_toml"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(&plan_toml).unwrap(), plan_text);
    assert_eq!(plan_text.matches("float = true").count(), 5, "{plan_text}");
    let md = std::fs::read_to_string(runs.join("s/sensitivity-w4a4/report.md")).unwrap();
    assert!(md.contains("| rank | unit in float |"), "{md}");
    assert!(md.contains("## W4A4, layer by layer"), "{md}");
    assert!(
        stdout.contains("[sensitivity W4A4] 5/5 fc2 left out"),
        "{stdout}"
    );

    // The plan's scheme file, run by `ptq`, scores what the analysis measured for it (on the
    // test split, which `ptq` reports).
    let on_test = [
        "--fresh", "--scheme", "w4a4", "--top", "2", "--split", "test",
    ];
    let (ok, stdout, stderr) = sensitivity(&runs, &on_test);
    assert!(ok, "{stdout}\n{stderr}");
    let r = report(&runs, "w4a4");
    let plan_toml = runs.join("s/sensitivity-w4a4/plan.toml");
    let schemes = format!("schemes=[\"{}\"]", plan_toml.display());
    let output = run(
        &runs,
        &[
            &QUICK[..],
            &["--set", "name=\"s\"", "--set", &schemes, "ptq"],
        ]
        .concat(),
    );
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let ptq: Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("s/ptq-plan/eval.json")).unwrap())
            .unwrap();
    assert_eq!(ptq["value"], r["plan"][1]["score"]["value"], "{ptq}");
    assert_eq!(
        ptq["size_bytes"], r["plan"][1]["score"]["size_bytes"],
        "{ptq}"
    );

    // Within a budget the plan passes over `fc1` (its float weights alone are 0.7 MB).
    let budget = [
        "--fresh",
        "--scheme",
        "w4a4",
        "--top",
        "5",
        "--budget-kib",
        "200",
    ];
    let (ok, stdout, stderr) = sensitivity(&runs, &budget);
    assert!(ok, "{stdout}\n{stderr}");
    let plan = report(&runs, "w4a4")["plan"].as_array().unwrap().clone();
    assert_eq!(plan.len(), 4, "{plan:?}");
    let last = &plan[3];
    assert!(
        !last["kept"].as_array().unwrap().iter().any(|u| u == "fc1"),
        "{last}"
    );
    assert!(
        last["score"]["size_bytes"].as_u64().unwrap() <= 200 * 1024,
        "{last}"
    );

    // Per tensor: a layer's weight and output apart; all eight in float is again the float model.
    let per_tensor = ["--fresh", "--scheme", "w4a4", "--per-tensor", "--top", "8"];
    let (ok, stdout, stderr) = sensitivity(&runs, &per_tensor);
    assert!(ok, "{stdout}\n{stderr}");
    let r = report(&runs, "w4a4");
    let tensors: Vec<&str> = unit_names(&r);
    assert_eq!(
        tensors,
        [
            "input_quant",
            "conv1.weight",
            "conv1.output_quant",
            "conv2.weight",
            "conv2.output_quant",
            "fc1.weight",
            "fc1.output_quant",
            "fc2.weight"
        ]
    );
    let all_float = &r["plan"][7]["score"];
    assert!(all_float["sqnr_db"].is_null(), "{all_float}");
    assert_eq!(all_float["value"], float["value"]);

    // At W8A8 instead of float, every unit at W8A8 is the W8A8 scheme itself.
    let (ok, stdout, stderr) = sensitivity(&runs, &["--fresh", "--fallback", "w8a8", "--top", "5"]);
    assert!(ok, "{stdout}\n{stderr}");
    let w4 = report(&runs, "w4a4");
    let w8 = report(&runs, "w8a8");
    assert_eq!(w4["fallback"], "W8A8");
    assert_eq!(w4["plan"][4]["score"], w8["quantized"], "{w4}\n{w8}");
    assert_eq!(w8["plan"][4]["score"], w8["quantized"]);
}

#[test]
fn an_interrupted_analysis_resumes_with_the_scores_it_had() {
    let runs = trained("sensitivity-resume");
    let (ok, stdout, stderr) = sensitivity(&runs, &["--scheme", "w4a4", "--top", "2"]);
    assert!(ok, "{stdout}\n{stderr}");
    let whole = report(&runs, "w4a4");
    let dir = runs.join("s/sensitivity-w4a4");
    // Interrupted after two units, the third one's line half written.
    let journal = std::fs::read_to_string(dir.join("scores.jsonl")).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    assert_eq!(
        lines.len(),
        1 + 5 + 2,
        "setup, units, plan rows:\n{journal}"
    );
    let cut = format!(
        "{}\n{}\n{}\n{}",
        lines[0],
        lines[1],
        lines[2],
        &lines[3][..20]
    );
    std::fs::write(dir.join("scores.jsonl"), cut).unwrap();
    std::fs::remove_file(dir.join("report.json")).unwrap();

    let (ok, _, stderr) = sensitivity(&runs, &["--scheme", "w4a4", "--top", "2"]);
    assert!(!ok && stderr.contains("--resume"), "{stderr}");
    let (ok, stdout, stderr) = sensitivity(&runs, &["--resume", "--scheme", "w4a4", "--top", "2"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stderr.contains("scores.jsonl:4: skipped"), "{stderr}");
    assert_eq!(report(&runs, "w4a4"), whole);
    // The two units measured before are reused, not measured again: the journal grew by the
    // torn line's end, three units and two plan rows.
    let resumed = std::fs::read_to_string(dir.join("scores.jsonl")).unwrap();
    let resumed: Vec<&str> = resumed.lines().collect();
    assert_eq!(resumed.len(), 4 + 3 + 2, "{resumed:#?}");
    assert_eq!(resumed[..3], lines[..3]);
    // Another fallback does not mix its scores with these.
    let (ok, _, stderr) = sensitivity(
        &runs,
        &["--resume", "--scheme", "w4a4", "--fallback", "w8a8"],
    );
    assert!(!ok && stderr.contains("--fresh"), "{stderr}");
}

#[test]
fn bad_options_and_a_missing_float_model_are_named() {
    let runs = temp_runs("sensitivity-bad");
    let (ok, _, stderr) = sensitivity(&runs, &[]);
    assert!(!ok && stderr.contains("run `train` first"), "{stderr}");
    let runs = trained("sensitivity-bad-options");
    for (args, named) in [
        (&["--scheme", "w2a8"][..], "--scheme"),
        (&["--layers", "("][..], "--layers"),
        (&["--layers", "^nothing$"][..], "--layers"),
        (&["--fallback", "w3a3"][..], "scheme"),
    ] {
        let (ok, _, stderr) = sensitivity(&runs, args);
        assert!(!ok && stderr.contains(named), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The analysis on wgpu (Vulkan through lavapipe here) of the float model trained on Flex: the
/// same units and, within a GPU's rounding, the same scores as on Flex.
#[test]
fn the_analysis_on_wgpu_matches_flex() {
    let runs = trained("sensitivity-wgpu");
    let args = [
        "--scheme",
        "w8a8",
        "--layers",
        "^(conv1|fc2)$",
        "--top",
        "1",
    ];
    let (ok, stdout, stderr) = sensitivity(&runs, &args);
    assert!(ok, "{stdout}\n{stderr}");
    let flex = report(&runs, "w8a8");
    let mut on_wgpu = vec!["--fresh", "--backend", "wgpu"];
    on_wgpu.extend(args);
    let (ok, stdout, stderr) = sensitivity(&runs, &on_wgpu);
    assert!(ok, "{stdout}\n{stderr}");
    let wgpu = report(&runs, "w8a8");
    assert_eq!(wgpu["ranking"].as_array().unwrap().len(), 2);
    let close = |a: &Value, b: &Value, tolerance: f64| {
        (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() <= tolerance
    };
    for (f, w) in [
        (&flex["float"], &wgpu["float"]),
        (&flex["quantized"], &wgpu["quantized"]),
        (&flex["units"][0]["score"], &wgpu["units"][0]["score"]),
        (&flex["units"][1]["score"], &wgpu["units"][1]["score"]),
    ] {
        assert!(close(&f["value"], &w["value"], 0.01), "{f}\n{w}");
        assert_eq!(f["size_bytes"], w["size_bytes"]);
        if !f["sqnr_db"].is_null() {
            assert!(close(&f["sqnr_db"], &w["sqnr_db"], 1.0), "{f}\n{w}");
        }
    }
}

/// On a token task (the committed 1-layer MiniLM NER fixture): the analysis scores entity F1 on
/// the validation split by default, and on the test split the float row is the one `train`
/// reported.
#[test]
fn a_token_task_is_analysed_on_either_split() {
    let runs = temp_runs("sensitivity-ner");
    let config = [
        "--no-tui",
        "--config",
        "configs/bert-ner-tiny.toml",
        "--set",
        "train.epochs=3",
    ];
    let output = run(&runs, &[&config[..], &["train"]].concat());
    assert!(output.status.success(), "{:?}", text(&output));
    let analyse = |extra: &[&str]| {
        let args = [
            &config[..],
            &[
                "sensitivity",
                "--scheme",
                "w8a8",
                "--layers",
                "intermediate",
                "--top",
                "2",
            ],
            extra,
        ]
        .concat();
        let output = run(&runs, &args);
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        let path = runs.join("bert-ner-tiny/sensitivity-w8a8/report.json");
        serde_json::from_str::<Value>(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let valid = analyse(&[]);
    assert_eq!(valid["metric"], "entity_f1");
    assert_eq!(valid["split"], "valid");
    let units: Vec<&str> = unit_names(&valid);
    assert_eq!(
        units,
        [
            "bert.encoder.layer.0.intermediate.dense",
            "bert.encoder.layer.0.intermediate.output_quant"
        ]
    );
    assert!(valid["quantized"]["sqnr_db"].as_f64().is_some());
    let test = analyse(&["--fresh", "--split", "test"]);
    assert_eq!(test["split"], "test");
    let eval: Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("bert-ner-tiny/float/eval.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(test["float"]["value"], eval["value"]);
}
