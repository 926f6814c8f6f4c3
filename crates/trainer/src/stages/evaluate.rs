//! Test-set evaluation of a network through its task: the report, `eval.{json,md}`.

use std::path::Path;

use burn::tensor::Device;

use crate::TrainerError;
use crate::report::write_file;
use crate::task::{Evaluation, Task};

/// Evaluates `net` (observers off) on the test set, prints the report, and writes `eval.json` /
/// `eval.md` in `stage_dir`. Returns the scores and the model's deployed size.
pub fn evaluate_and_save<T: Task>(
    task: &T,
    net: &T::Net,
    title: &str,
    stage_dir: &Path,
    device: &Device,
) -> Result<(Evaluation, usize), TrainerError> {
    let scores = task.evaluate(net, device);
    let size = quant::qat::storage_bytes(net);
    let others: String = scores
        .metrics
        .iter()
        .map(|(name, value)| format!(", {name} {:.2}%", 100.0 * value))
        .collect();
    println!(
        "\n{title}: test {} {:.2}%{others}, {:.1} KiB\n{}",
        scores.metric,
        100.0 * scores.value,
        size as f64 / 1024.0,
        scores.text
    );
    let json = serde_json::json!({
        "model": title,
        "size_bytes": size,
        "metric": scores.metric,
        "value": scores.value,
        "metrics": scores.metrics,
        "report": scores.json,
    });
    write_file(
        &stage_dir.join("eval.json"),
        &serde_json::to_string_pretty(&json).expect("serializes"),
    )?;
    write_file(
        &stage_dir.join("eval.md"),
        &format!("# {title}\n\n```text\n{}```\n", scores.text),
    )?;
    Ok((scores, size))
}
