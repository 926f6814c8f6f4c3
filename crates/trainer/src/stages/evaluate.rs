//! Test-set evaluation of a network: predictions, the classification report, `eval.{json,md}`.

use std::path::Path;

use burn::tensor::Device;
use data::ImageDataset;

use crate::report::{ClassificationReport, write_file};
use crate::{DataConfig, Net, TrainerError, eval_loader};

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Predicts every image of `dataset` with `net` (observers must be off) and builds the report.
pub fn evaluate(
    net: &Net,
    dataset: &ImageDataset,
    config: &DataConfig,
    device: &Device,
) -> ClassificationReport {
    let loader = eval_loader(config, dataset.clone()).to_device(device);
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
    ClassificationReport::new(&predicted, &actual, &FASHION_MNIST_CLASSES)
}

/// Evaluates `net` on the test set, prints the report, and writes `eval.json` / `eval.md` in
/// `stage_dir`. Returns the report and the model's deployed size.
pub fn evaluate_and_save(
    net: &Net,
    title: &str,
    stage_dir: &Path,
    test: &ImageDataset,
    config: &DataConfig,
    device: &Device,
) -> Result<(ClassificationReport, usize), TrainerError> {
    let report = evaluate(net, test, config, device);
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
