//! The whole workflow end to end on the embedded Fashion-MNIST subset, on Flex and on wgpu
//! (Vulkan through Mesa lavapipe on CPU-only machines): exit code, `report.json`, checkpoints,
//! the exported integer model (parity, size, `infer`, its ONNX form on ONNX Runtime), and `eval`
//! reproducing the reported accuracy from the saved model.
mod common;
#[path = "../crates/engine/tests/common/onnxruntime.rs"]
mod onnxruntime;

use common::*;
use serde_json::Value;

/// Class names in label order, from the export's metadata (`int-w8a8/eval.json` has the report).
fn report_classes(run_dir: &std::path::Path) -> Value {
    let artifact = engine::Artifact::read(&run_dir.join("int-w8a8/model.qat")).unwrap();
    artifact.meta["labels"].clone()
}

/// The export's `model.onnx` on ONNX Runtime predicts the test images as the engine does.
fn check_onnx(
    run_dir: &std::path::Path,
    deployment: &Value,
    images: &std::path::Path,
    labels: &[u8],
) {
    let onnx = std::fs::read(run_dir.join("int-w8a8/model.onnx")).unwrap();
    assert_eq!(deployment["onnx_bytes"].as_u64(), Some(onnx.len() as u64));
    let artifact = engine::Artifact::read(&run_dir.join("int-w8a8/model.qat")).unwrap();
    let input = &artifact.meta["input"];
    let (mean, std) = (
        input["mean"].as_f64().unwrap(),
        input["std"].as_f64().unwrap(),
    );
    let pixels = data::read_idx(images).unwrap().data;
    let x: Vec<f32> = pixels
        .iter()
        .map(|&p| (p as f32 / 255.0 - mean as f32) / std as f32)
        .collect();
    let n = labels.len();
    let engine::Value::Float(ours) = engine::Engine::new(&artifact)
        .unwrap()
        .run(n, &[&x])
        .unwrap()
        .remove(0)
    else {
        panic!("logits are float")
    };
    let Some(ort) = onnxruntime::run("pipeline lenet w8a8", &onnx, &[&x], n) else {
        return;
    };
    let argmax = |row: &[f32]| {
        (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap()
    };
    let classes = ours.len() / n;
    let predicted = |logits: &[f32]| -> Vec<usize> { logits.chunks(classes).map(argmax).collect() };
    let (ours, theirs) = (predicted(&ours), predicted(&ort.optimized[0]));
    let agree = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    let correct = |p: &[usize]| {
        p.iter()
            .zip(labels)
            .filter(|(p, l)| **p == **l as usize)
            .count()
    };
    eprintln!(
        "ONNX Runtime {}: {agree}/{n} predictions agree with the engine; accuracy {}/{n} (engine {}/{n})",
        ort.report["onnxruntime"],
        correct(&theirs),
        correct(&ours)
    );
    // One rounding tie may flip a near-even prediction; a wrong graph flips many.
    assert!(agree + 2 >= n, "ONNX Runtime agrees on {agree}/{n}");
}

/// `export.onnx_weights = "int8"` reaches the file: `export` again writes exactly the engine's
/// `Int8` form of the same artifact (its numbers on ONNX Runtime: `crates/models/tests/export_onnx.rs`).
fn check_int8_onnx_weights(runs: &std::path::Path, run_dir: &std::path::Path) {
    let args = [
        "--backend",
        "flex",
        "--set",
        "name=\"e2e\"",
        "--set",
        "schemes=[\"w8a8\"]",
        "--set",
        "export.onnx_weights=\"int8\"",
        "--no-tui",
        "--resume",
        "export",
    ];
    let stdout = run_ok(runs, &args);
    assert!(stdout.contains("int8 weights"), "{stdout}");
    let artifact = engine::Artifact::read(&run_dir.join("int-w8a8/model.qat")).unwrap();
    let written = std::fs::read(run_dir.join("int-w8a8/model.onnx")).unwrap();
    assert!(
        written == artifact.to_onnx(engine::onnx::OnnxWeights::Int8).unwrap()
            && written != artifact.to_onnx(engine::onnx::OnnxWeights::Uint8).unwrap(),
        "model.onnx holds the Int8 form"
    );
}

fn pipeline_on(backend: &str, extra: &[&str], env: &[(&str, &str)]) {
    let runs = temp_runs(&format!("pipeline-{backend}"));
    let mut args = vec!["--backend", backend, "--set", "name=\"e2e\""];
    args.extend(QUICK);
    args.extend(extra);
    let output = trainer(&runs, &args)
        .envs(env.iter().copied())
        .output()
        .expect("trainer binary runs");
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "pipeline failed on {backend}:\n{stdout}\n{stderr}"
    );
    let run_dir = runs.join("e2e");

    let report = json(&run_dir.join("report.json"));
    assert_eq!(report["task"], "image-classification");
    assert_eq!(report["model"], "lenet-bn");
    assert_eq!(report["backend"], backend);
    assert_eq!(report["dataset"], "fashion-mnist-small");
    let rows = report["results"].as_array().unwrap();
    let find = |variant: &str, scheme: &str| report_row(&report, variant, scheme);
    let float = find("float", "float");
    for row in rows {
        assert_eq!(row["metric"], "accuracy");
        let value = row["value"].as_f64().unwrap();
        // One epoch on 1,800 images: well above chance (10%) for every variant.
        assert!((0.4..=1.0).contains(&value), "{row}");
    }
    let qat = find("qat", "W8A8");
    let float_size = float["size_bytes"].as_u64().unwrap() as f64;
    let ratio = float_size / qat["size_bytes"].as_u64().unwrap() as f64;
    assert!(
        (3.5..4.1).contains(&ratio),
        "W8A8 is about 4× smaller than float: {ratio}"
    );
    // QAT starts from the PTQ model; one epoch of fine-tuning may not gain, but must not lose
    // more than 5 points (a broken QAT stage, e.g. observers reset, loses tens).
    let ptq = find("ptq", "W8A8");
    let (qat_acc, ptq_acc) = (
        qat["value"].as_f64().unwrap(),
        ptq["value"].as_f64().unwrap(),
    );
    assert!(qat_acc >= ptq_acc - 0.05, "QAT {qat_acc} vs PTQ {ptq_acc}");
    assert_eq!(
        ptq["size_bytes"], qat["size_bytes"],
        "same scheme, same deployed size"
    );

    for stage in ["float", "qat-w8a8"] {
        let dir = run_dir.join(stage);
        assert!(
            dir.join("checkpoint/model-1.bpk").is_file(),
            "{stage} epoch checkpoint"
        );
        assert!(
            dir.join("model.bpk").is_file() && dir.join("eval.json").is_file(),
            "{stage} outputs"
        );
    }
    for file in ["report.md", "curves.svg", "config.toml"] {
        assert!(run_dir.join(file).is_file(), "{file}");
    }
    assert!(
        std::fs::read_to_string(run_dir.join("curves.svg"))
            .unwrap()
            .contains("<polyline")
    );

    // The exported integer model, run by the engine on the test set: the QAT model's
    // predictions, at a quarter of the float checkpoint's size.
    let int = find("int", "W8A8");
    let deployment = &int["deployment"];
    assert_eq!(deployment["source"], "qat");
    let agreement = deployment["parity"]["agreement"].as_f64().unwrap();
    assert!(
        agreement >= 0.999,
        "engine vs fake-quant agreement {agreement}"
    );
    assert_eq!(deployment["parity"]["compared"], 500);
    let delta = int["value"].as_f64().unwrap() - qat_acc;
    assert!(delta.abs() <= 0.001, "engine accuracy differs by {delta}");
    let artifact = run_dir.join("int-w8a8/model.qat");
    let artifact_bytes = std::fs::metadata(&artifact).unwrap().len();
    assert_eq!(
        int["size_bytes"].as_u64(),
        Some(artifact_bytes),
        "size is the file's"
    );
    let checkpoint_bytes = std::fs::metadata(run_dir.join("float/model.bpk"))
        .unwrap()
        .len();
    let smaller = checkpoint_bytes as f64 / artifact_bytes as f64;
    assert!(
        smaller >= 3.9,
        "W8A8 artifact only {smaller:.2}× smaller than the float checkpoint"
    );
    assert!(
        std::fs::read_to_string(run_dir.join("report.md"))
            .unwrap()
            .contains("| integer model |")
    );

    // `infer` from the artifact alone reproduces the engine's test accuracy.
    let images = root().join("datasets/embedded/fashion-mnist-small/t10k-images-idx3-ubyte.gz");
    let labels = data::read_idx(
        root().join("datasets/embedded/fashion-mnist-small/t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap();
    let predictions_file = runs.join("predictions.json");
    let infer_args = [
        "infer",
        "--artifact",
        artifact.to_str().unwrap(),
        "--input",
        images.to_str().unwrap(),
        "--output",
        predictions_file.to_str().unwrap(),
    ];
    let output = run(&runs, &infer_args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "infer failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("| image 499 |"), "{stdout}");
    let predictions: Value =
        serde_json::from_str(&std::fs::read_to_string(&predictions_file).unwrap()).unwrap();
    let classes: Vec<String> = serde_json::from_value(report_classes(&run_dir)).unwrap();
    let correct = predictions
        .as_array()
        .unwrap()
        .iter()
        .zip(&labels.data)
        .filter(|(p, l)| p["label"] == classes[**l as usize].as_str())
        .count();
    assert_eq!(
        correct as f64 / 500.0,
        int["value"].as_f64().unwrap(),
        "infer = the export stage's engine"
    );

    check_onnx(&run_dir, deployment, &images, &labels.data);
    if backend == "flex" {
        check_int8_onnx_weights(&runs, &run_dir);
    }

    // A damaged artifact is refused in one line naming the file.
    let mut bytes = std::fs::read(&artifact).unwrap();
    bytes[1000] ^= 4;
    let damaged = runs.join("damaged.qat");
    std::fs::write(&damaged, &bytes).unwrap();
    let output = run(
        &runs,
        &[
            "infer",
            "--artifact",
            damaged.to_str().unwrap(),
            "--input",
            images.to_str().unwrap(),
        ],
    );
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("damaged.qat")
            && stderr.contains("checksum mismatch")
            && stderr.trim().lines().count() == 1,
        "{stderr}"
    );

    // `eval` on the saved QAT model reproduces the reported accuracy exactly.
    std::fs::remove_file(run_dir.join("qat-w8a8/eval.json")).unwrap();
    let checkpoint = run_dir.join("qat-w8a8/model.bpk");
    let mut eval_args = vec![
        "--backend",
        backend,
        "--set",
        "name=\"e2e\"",
        "--no-tui",
        "eval",
        "--checkpoint",
    ];
    let checkpoint = checkpoint.to_string_lossy().into_owned();
    eval_args.push(&checkpoint);
    let output = run(&runs, &eval_args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "eval failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("weighted avg") && stdout.contains("Ankle boot"),
        "{stdout}"
    );
    let eval: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("qat-w8a8/eval.json")).unwrap())
            .unwrap();
    assert_eq!(
        eval["report"]["accuracy"].as_f64(),
        qat["value"].as_f64(),
        "eval reproduces the report"
    );
    assert_eq!(eval["size_bytes"], qat["size_bytes"]);
    std::fs::remove_dir_all(runs).ok();
}

#[test]
fn pipeline_on_flex() {
    pipeline_on("flex", &[], &[]);
}

#[test]
fn pipeline_on_wgpu() {
    // lavapipe runs Vulkan on the CPU: slow, so fewer images; same code path as a real GPU.
    pipeline_on(
        "wgpu",
        &[
            "--set",
            "data.train_limit=600",
            "--set",
            "schemes=[\"w8a8\"]",
        ],
        // CubeCL's exclusive memory pages (burn's default pool runs the text pipeline's wgpu
        // tests and every kernel test).
        &[(trainer::GPU_MEMORY_VAR, "exclusive")],
    );
}

/// A scheme file's rules reach the trained model: the first and last layers of the W4A4 LeNet get
/// 8-bit weights in the saved checkpoint, and the reported size grows by exactly their extra bits.
#[test]
fn scheme_rules_set_bit_widths_in_the_checkpoint_and_the_size() {
    let runs = temp_runs("rules");
    let mut args = vec![
        "--backend",
        "flex",
        "--set",
        "name=\"rules\"",
        "--set",
        "schemes=[\"w4a4\", \"configs/schemes/w4a4-first-last-8bit.toml\"]",
        "--set",
        "data.train_limit=600",
    ];
    args.extend(QUICK);
    let output = run(&runs, &args);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let run_dir = runs.join("rules");
    let report = json(&run_dir.join("report.json"));
    let size = |scheme: &str| {
        report_row(&report, "qat", scheme)["size_bytes"]
            .as_u64()
            .unwrap()
    };
    // conv1 (16×1×5×5 weights) and fc2 (128×10) at 8 instead of 4 bits: 4 more bits per weight;
    // the 8-bit activations keep one scale and one zero point, as the 4-bit ones do.
    let extra_bits = (16 * 25 + 128 * 10) * 4;
    assert_eq!(size("W4A4-FIRST-LAST-8BIT") - size("W4A4"), extra_bits / 8);
    let device = burn::tensor::Device::flex();
    let mut config = trainer::RunConfig::load(None, &[]).unwrap();
    config.data.dir = root().join(&config.data.dir);
    let task = trainer::task::ImageTask::load(&config.data, &config.model).unwrap();
    let (net, _) =
        trainer::stages::load_model(&task, &run_dir.join("qat-w4a4-first-last-8bit"), &device)
            .unwrap();
    let trainer::Net::LeNet(lenet) = net else {
        panic!("a LeNet run")
    };
    let bits = |q: &Option<quant::Quantizer>| {
        q.as_ref()
            .unwrap()
            .grid
            .value()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()[0]
    };
    assert_eq!(bits(&lenet.conv1.weight_quant), 8.0);
    assert_eq!(bits(&lenet.conv2.weight_quant), 4.0);
    assert_eq!(bits(&lenet.input_quant.quant), 8.0);
    assert_eq!(bits(&lenet.conv1.output_quant), 4.0);
    assert_eq!(bits(&lenet.fc1.output_quant), 8.0);
    std::fs::remove_dir_all(runs).ok();
}
