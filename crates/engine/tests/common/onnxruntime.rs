//! ONNX Runtime as a second engine for the ONNX export tests: Python's `onnxruntime` driven
//! through `xtask/scripts/onnx_run.py`. Without it a check is skipped with a message, unless
//! `QAT_REQUIRE_ONNXRUNTIME=1` (as `.ci/run` sets) makes that a failure.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// What ONNX Runtime returned for one model: every output with its integer kernels fused in
/// (`optimized`, as deployed) and with the QDQ graph run as written (`reference`), and the
/// script's report (`checker`, the fused graph's `optimized_ops`, `onnxruntime` version).
pub struct OrtRun {
    /// Outputs, all graph optimizations on.
    pub optimized: Vec<Vec<f32>>,
    /// Outputs, no graph optimization.
    pub reference: Vec<Vec<f32>>,
    /// The script's JSON line.
    pub report: serde_json::Value,
}

/// Runs the ONNX model `onnx` on ONNX Runtime for a batch of `n`: `inputs` in the graph's order
/// (batch first); `None` when ONNX Runtime is not installed and not required.
pub fn run(name: &str, onnx: &[u8], inputs: &[&[f32]], n: usize) -> Option<OrtRun> {
    let dir = std::env::temp_dir().join(format!(
        "burn-qat-onnx-{}-{}",
        std::process::id(),
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.onnx");
    std::fs::write(&model, onnx).unwrap();
    let input_files: Vec<PathBuf> = inputs
        .iter()
        .enumerate()
        .map(|(k, x)| {
            let path = dir.join(format!("input{k}.f32"));
            let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&path, bytes).unwrap();
            path
        })
        .collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../xtask/scripts/onnx_run.py");
    let prefix = dir.join("out");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&model)
        .arg(n.to_string())
        .arg(&prefix)
        .args(&input_files)
        .output();
    let required = std::env::var("QAT_REQUIRE_ONNXRUNTIME").is_ok_and(|v| v == "1");
    let out = match out {
        Ok(out) => out,
        Err(e) if !required => {
            eprintln!("skipped: ONNX Runtime check of {name} (no python3: {e})");
            return None;
        }
        Err(e) => panic!("python3: {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if !required && stderr.contains("No module named") {
            eprintln!("skipped: ONNX Runtime check of {name} (pip install onnxruntime onnx numpy)");
            return None;
        }
        panic!("{name}: onnx_run.py failed:\n{stderr}");
    }
    let read = |level: &str| -> Vec<Vec<f32>> {
        (0..)
            .map_while(|k| std::fs::read(format!("{}.{level}.{k}.f32", prefix.display())).ok())
            .map(|bytes| {
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            })
            .collect()
    };
    let run = OrtRun {
        optimized: read("optimized"),
        reference: read("reference"),
        report: serde_json::from_slice(out.stdout.trim_ascii()).unwrap(),
    };
    if std::env::var_os("QAT_KEEP_ONNX").is_none() {
        std::fs::remove_dir_all(&dir).ok();
    }
    Some(run)
}
