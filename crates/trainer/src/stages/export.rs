//! `export`: each scheme's trained model (QAT, else PTQ) becomes the integer artifact
//! `int-<scheme>/model.qat`; the file is read back, run by the engine on the test set beside the
//! fake-quant model it came from (parity: agreement of predictions, largest logit difference),
//! and the report gets an `int` row with the artifact's real size. Where every op of the program
//! has an ONNX form (the CNNs), the same program is also written as `int-<scheme>/model.onnx`
//! (QDQ, opset 13) for ONNX Runtime and other ONNX engines; otherwise the reason is printed.

use std::path::Path;

use super::{Context, Existing, load_model};
use crate::report::{Deployment, write_file};
use crate::task::Task;
use crate::{Scheme, TrainerError};

/// Whether a scheme the task or the engine cannot run fails the command (`export`) or is
/// reported and skipped (`pipeline`, which also runs text tasks whose export is not built yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unexportable {
    /// Return the error.
    Fail,
    /// Print it and go on.
    Skip,
}

/// Exports every scheme of the run.
pub fn export<T: Task>(ctx: &Context<T>, unexportable: Unexportable) -> Result<(), TrainerError> {
    for scheme in ctx.schemes()? {
        match export_scheme(ctx, &scheme) {
            Err(e @ (TrainerError::Unsupported(_) | TrainerError::Model(_)))
                if unexportable == Unexportable::Skip =>
            {
                println!("[export {}] skipped: {e}", scheme.name);
            }
            other => other?,
        }
    }
    Ok(())
}

fn file_size(path: &Path) -> Result<usize, TrainerError> {
    Ok(std::fs::metadata(path)
        .map_err(|e| TrainerError::io(path, e))?
        .len() as usize)
}

/// Writes the artifact's ONNX form to `path` and returns its size, or says why there is none
/// (an op without an ONNX form: the LSTM, the text models' float and attention ops).
fn write_onnx(
    artifact: &engine::Artifact,
    path: &Path,
    scheme: &str,
    weights: engine::onnx::OnnxWeights,
) -> Result<Option<usize>, TrainerError> {
    match artifact.to_onnx(weights) {
        Ok(bytes) => {
            std::fs::write(path, &bytes).map_err(|e| TrainerError::io(path, e))?;
            let kind = match weights {
                engine::onnx::OnnxWeights::Uint8 => "uint8",
                engine::onnx::OnnxWeights::Int8 => "int8",
            };
            println!(
                "[export {scheme}] ONNX (QDQ, opset 13, {kind} weights) → {}",
                path.display()
            );
            Ok(Some(bytes.len()))
        }
        Err(e) => {
            // A stale file from an earlier export of another model must not pass for this one.
            if path.is_file() {
                std::fs::remove_file(path).map_err(|e| TrainerError::io(path, e))?;
            }
            println!("[export {scheme}] no ONNX file: {e}");
            Ok(None)
        }
    }
}

fn export_scheme<T: Task>(ctx: &Context<T>, scheme: &Scheme) -> Result<(), TrainerError> {
    let source = ["qat", "ptq"]
        .into_iter()
        .find(|v| ctx.stage_dir(v, Some(scheme)).join("model.bpk").is_file())
        .ok_or_else(|| TrainerError::Checkpoint {
            path: ctx.stage_dir("qat", Some(scheme)),
            message: "no trained model of this scheme (run `qat` or `ptq` first)".into(),
        })?;
    let dir = ctx.stage_dir("int", Some(scheme));
    let path = dir.join("model.qat");
    if path.is_file() && ctx.existing == Existing::Refuse {
        return Err(TrainerError::Io {
            path: dir,
            message: "has outputs of an earlier run; pass --resume or --fresh to export again"
                .into(),
        });
    }
    let (net, model) = load_model(&ctx.task, &ctx.stage_dir(source, Some(scheme)), &ctx.device)?;
    let mut meta = serde_json::Map::new();
    meta.insert("task".into(), ctx.task.kind().name().into());
    meta.insert(
        "model".into(),
        serde_json::to_value(&model.model).expect("serializes"),
    );
    meta.insert("scheme".into(), scheme.name.clone().into());
    meta.insert("source".into(), source.into());
    meta.insert("labels".into(), ctx.task.labels().into());
    println!(
        "[export {}] {source} model → {}",
        scheme.name,
        path.display()
    );
    let artifact = ctx.task.export(&net, meta)?;
    std::fs::create_dir_all(&dir).map_err(|e| TrainerError::io(&dir, e))?;
    artifact.write(&path)?;
    let onnx_bytes = write_onnx(
        &artifact,
        &dir.join("model.onnx"),
        &scheme.name,
        ctx.config.export.onnx_weights,
    )?;

    // Everything below reads the file as a deployment would.
    let artifact = engine::Artifact::read(&path)?;
    let engine = engine::Engine::new(&artifact)?;
    let (scores, parity) = ctx.task.evaluate_engine(&engine, &net, &ctx.device)?;
    let fake = ctx.task.evaluate(&net, &ctx.device);
    let deployment = Deployment {
        source: source.into(),
        artifact_bytes: file_size(&path)?,
        float_checkpoint_bytes: file_size(&ctx.stage_dir("float", None).join("model.bpk"))
            .unwrap_or(0),
        isa: engine.isa().name().into(),
        metric_delta: scores.value - fake.value,
        parity,
        onnx_bytes,
    };
    println!(
        "[export {}] engine ({}): test {} {:.2}% ({:+.2} points vs the {source} model); predictions agree on {}/{} ({:.2}%), max |Δlogit| {:.2e}; {:.1} KiB ({:.1}× smaller than the float checkpoint)\n{}",
        scheme.name,
        deployment.isa,
        scores.metric,
        100.0 * scores.value,
        100.0 * deployment.metric_delta,
        (parity.agreement * parity.compared as f64).round(),
        parity.compared,
        100.0 * parity.agreement,
        parity.max_abs_logit_diff,
        deployment.artifact_bytes as f64 / 1024.0,
        deployment.float_checkpoint_bytes as f64 / deployment.artifact_bytes.max(1) as f64,
        scores.text
    );
    let json = serde_json::json!({
        "model": format!("int {}", scheme.name),
        "size_bytes": deployment.artifact_bytes,
        "metric": scores.metric,
        "value": scores.value,
        "metrics": scores.metrics,
        "deployment": deployment,
        "report": scores.json,
    });
    write_file(
        &dir.join("eval.json"),
        &serde_json::to_string_pretty(&json).expect("serializes"),
    )?;
    write_file(
        &dir.join("eval.md"),
        &format!(
            "# int {} (engine)\n\n```text\n{}```\n",
            scheme.name, scores.text
        ),
    )?;
    ctx.record_deployment(&scheme.name, &scores, deployment)
}
