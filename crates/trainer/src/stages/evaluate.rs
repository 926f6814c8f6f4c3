//! Test-set evaluation of a network: predictions, the classification report, `eval.{json,md}`.

use std::path::Path;

use burn::tensor::Device;
use data::ImageDataset;

use crate::report::{ClassificationReport, write_file};
use crate::{DataConfig, Net, Splits, TrainerError, eval_loader};

/// Predicts every image of `dataset` with `net` (observers must be off) and builds the report.
pub fn evaluate(
    net: &Net,
    splits: &Splits,
    dataset: &ImageDataset,
    config: &DataConfig,
    device: &Device,
) -> ClassificationReport {
    let loader = eval_loader(config, splits, dataset.clone()).to_device(device);
    let (mut predicted, mut actual) = (Vec::new(), Vec::new());
    for batch in loader.iter().flatten() {
        let logits = net.forward(batch.images);
        let p = logits
            .argmax(1)
            .reshape([-1])
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("argmax is an int tensor");
        let a = batch
            .targets
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("targets are ints");
        predicted.extend(p.into_iter().map(|v| v as usize));
        actual.extend(a.into_iter().map(|v| v as usize));
    }
    let classes: Vec<&str> = splits.classes.iter().map(String::as_str).collect();
    ClassificationReport::new(&predicted, &actual, &classes)
}

/// Evaluates `net` on the test set, prints the report, and writes `eval.json` / `eval.md` in
/// `stage_dir`. Returns the report and the model's deployed size.
pub fn evaluate_and_save(
    net: &Net,
    title: &str,
    stage_dir: &Path,
    splits: &Splits,
    config: &DataConfig,
    device: &Device,
) -> Result<(ClassificationReport, usize), TrainerError> {
    let report = evaluate(net, splits, &splits.test, config, device);
    let size = quant::qat::storage_bytes(net);
    println!(
        "\n{title}: test accuracy {:.2}%, {:.1} KiB\n{}",
        100.0 * report.accuracy,
        size as f64 / 1024.0,
        report.to_text()
    );
    let json = serde_json::json!({ "model": title, "size_bytes": size, "report": report });
    write_file(
        &stage_dir.join("eval.json"),
        &serde_json::to_string_pretty(&json).expect("serializes"),
    )?;
    write_file(
        &stage_dir.join("eval.md"),
        &format!("# {title}\n\n```text\n{}```\n", report.to_text()),
    )?;
    Ok((report, size))
}
