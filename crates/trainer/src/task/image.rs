//! [`ImageTask`]: images to classes with LeNet-BN or the ResNet (the trainer's first task).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor};
use burn::train::ClassificationOutput;
use data::ImageBatch;
use quant::QuantMapping;

use super::{
    Evaluation, Parity, Part, Prediction, Task, TaskNet, argmax_rows, artifact_labels,
    engine_logits, host, ints, top_label,
};
use crate::report::ClassificationReport;
use crate::{
    DataConfig, ModelConfig, Net, Splits, TaskKind, TrainerError, eval_loader, load_splits,
    train_loader,
};

/// Image classification on IDX files.
pub struct ImageTask {
    splits: Splits,
    data: DataConfig,
    model: ModelConfig,
}

impl ImageTask {
    /// Reads the IDX files of `data` into splits.
    pub fn load(data: &DataConfig, model: &ModelConfig) -> Result<Self, TrainerError> {
        Ok(ImageTask {
            splits: load_splits(data)?,
            data: data.clone(),
            model: model.clone(),
        })
    }

    /// The splits (images, class names, normalisation).
    pub fn splits(&self) -> &Splits {
        &self.splits
    }
}

impl TaskNet for Net {
    type Batch = ImageBatch;
    type Output = ClassificationOutput;

    super::classifier_outputs!();

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.forward(batch.images);
        classification_output(logits, batch.targets)
    }

    fn without_autodiff(batch: ImageBatch) -> ImageBatch {
        ImageBatch {
            images: batch.images.without_autodiff(),
            targets: batch.targets.without_autodiff(),
        }
    }

    fn quantized(self, mapping: &QuantMapping) -> Result<Self, TrainerError> {
        Ok(Net::quantized(self, mapping)?)
    }
}

/// Cross-entropy of `logits` `[batch, classes]` against `targets`, as burn-train's metrics read it.
pub fn classification_output(
    logits: Tensor<2>,
    targets: Tensor<1, burn::tensor::Int>,
) -> ClassificationOutput {
    let loss = CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits.clone(), targets.clone());
    ClassificationOutput::new(loss, logits, targets)
}

/// Predicted and true classes of every item a loader yields, for a network's logits; and those
/// logits, `[items, classes]` row-major.
pub fn predictions<B>(
    loader: Arc<dyn DataLoader<B>>,
    mut logits_and_targets: impl FnMut(B) -> (Tensor<2>, Tensor<1, burn::tensor::Int>),
) -> (Vec<usize>, Vec<usize>, Vec<f32>) {
    let (mut predicted, mut actual, mut all) = (Vec::new(), Vec::new(), Vec::new());
    for batch in loader.iter().flatten() {
        let (logits, targets) = logits_and_targets(batch);
        let [_, classes] = logits.dims();
        let values = host(logits);
        predicted.extend(argmax_rows(&values, classes));
        actual.extend(ints(targets));
        all.extend(values);
    }
    (predicted, actual, all)
}

/// The evaluation of a classification: accuracy as headline, the per-class report.
pub fn classification_evaluation(
    report: ClassificationReport,
    extra: BTreeMap<String, f64>,
) -> Evaluation {
    Evaluation {
        metric: "accuracy",
        value: report.accuracy,
        metrics: extra,
        text: report.to_text(),
        json: serde_json::to_value(&report).expect("a report serializes"),
    }
}

impl Task for ImageTask {
    type Net = Net;

    fn kind(&self) -> TaskKind {
        TaskKind::ImageClassification
    }

    fn describe(&self) -> String {
        format!(
            "{} train / {} valid / {} test images",
            self.splits.train.items.len(),
            self.splits.valid.items.len(),
            self.splits.test.items.len()
        )
    }

    fn labels(&self) -> &[String] {
        &self.splits.classes
    }

    fn len(&self, part: Part) -> usize {
        match part {
            Part::Train => self.splits.train.items.len(),
            Part::Valid => self.splits.valid.items.len(),
            Part::Test => self.splits.test.items.len(),
        }
    }

    fn loader(&self, part: Part, shuffle: Option<u64>) -> Arc<dyn DataLoader<ImageBatch>> {
        let s = &self.splits;
        match (part, shuffle) {
            (Part::Train, Some(seed)) => train_loader(&self.data, s, seed),
            (Part::Train, None) => eval_loader(&self.data, s, s.train.clone()),
            (Part::Valid, _) => eval_loader(&self.data, s, s.valid.clone()),
            (Part::Test, _) => eval_loader(&self.data, s, s.test.clone()),
        }
    }

    fn build(
        &self,
        model: &ModelConfig,
        num_labels: usize,
        mapping: &QuantMapping,
        device: &Device,
    ) -> Result<Net, TrainerError> {
        Net::init(model, num_labels, mapping, device)
    }

    fn initial(&self, device: &Device) -> Result<Net, TrainerError> {
        self.build(
            &self.model,
            self.splits.classes.len(),
            &QuantMapping::new(),
            device,
        )
    }

    fn evaluate_with_logits(
        &self,
        net: &Net,
        part: Part,
        device: &Device,
    ) -> (Evaluation, Vec<f32>) {
        let loader = self.loader(part, None).to_device(device);
        let (predicted, actual, logits) =
            predictions(loader, |batch| (net.forward(batch.images), batch.targets));
        let classes: Vec<&str> = self.splits.classes.iter().map(String::as_str).collect();
        let evaluation = classification_evaluation(
            ClassificationReport::new(&predicted, &actual, &classes),
            BTreeMap::new(),
        );
        (evaluation, logits)
    }

    fn export(
        &self,
        net: &Net,
        mut meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<engine::Artifact, TrainerError> {
        let test = &self.splits.test;
        if test.height != test.width {
            return Err(TrainerError::Unsupported(format!(
                "exporting for {}×{} images: the models take square images",
                test.height, test.width
            )));
        }
        let (mean, std) = self.splits.normalization;
        let input = ImageInput {
            height: test.height,
            width: test.width,
            mean,
            std,
        };
        meta.insert(
            "input".into(),
            serde_json::to_value(input).expect("serializes"),
        );
        Ok(net.to_artifact(test.height, serde_json::Value::Object(meta))?)
    }

    fn evaluate_engine(
        &self,
        engine: &engine::Engine,
        net: &Net,
        device: &Device,
    ) -> Result<(Evaluation, Parity), TrainerError> {
        let loader = self.loader(Part::Test, None).to_device(device);
        let (mut int_logits, mut fake_logits, mut actual) = (Vec::new(), Vec::new(), Vec::new());
        for batch in loader.iter().flatten() {
            let n = batch.images.dims()[0];
            let pixels = host(batch.images.clone());
            int_logits.extend(engine_logits(engine, n, &[&pixels])?);
            fake_logits.extend(host(net.forward(batch.images)));
            actual.extend(
                batch
                    .targets
                    .into_data()
                    .convert::<i64>()
                    .try_into_vec::<i64>()
                    .expect("int targets")
                    .into_iter()
                    .map(|t| t as usize),
            );
        }
        let classes: Vec<&str> = self.splits.classes.iter().map(String::as_str).collect();
        let predicted = argmax_rows(&int_logits, classes.len());
        let parity = Parity::of_logits(&int_logits, &fake_logits, classes.len());
        let scores = classification_evaluation(
            ClassificationReport::new(&predicted, &actual, &classes),
            BTreeMap::new(),
        );
        Ok((scores, parity))
    }

    fn infer(
        artifact: &engine::Artifact,
        engine: &engine::Engine,
        input: &Path,
    ) -> Result<Vec<Prediction>, TrainerError> {
        let meta = |field: &str| TrainerError::Config {
            origin: "artifact metadata".into(),
            message: format!("`{field}` is missing or malformed"),
        };
        let spec: ImageInput =
            serde_json::from_value(artifact.meta["input"].clone()).map_err(|_| meta("input"))?;
        let labels = artifact_labels(artifact)?;
        let images = data::read_idx(input)?;
        let [n, h, w] = images.dims[..] else {
            return Err(TrainerError::io(
                input,
                format!(
                    "holds dims {:?}; images are [n, height, width]",
                    images.dims
                ),
            ));
        };
        if [h, w] != [spec.height, spec.width] {
            return Err(TrainerError::io(
                input,
                format!(
                    "holds {h}×{w} images; the model takes {}×{}",
                    spec.height, spec.width
                ),
            ));
        }
        let pixels: Vec<f32> = images
            .data
            .iter()
            .map(|&p| (p as f32 / 255.0 - spec.mean) / spec.std)
            .collect();
        let mut predictions = Vec::with_capacity(n);
        for (chunk, start) in pixels.chunks(64 * h * w).zip((0..n).step_by(64)) {
            let count = chunk.len() / (h * w);
            let logits = engine_logits(engine, count, &[chunk])?;
            for (i, row) in logits.chunks_exact(labels.len().max(1)).enumerate() {
                let (best, confidence) = top_label(row);
                predictions.push(Prediction {
                    input: format!("image {}", start + i),
                    label: labels
                        .get(best)
                        .cloned()
                        .unwrap_or_else(|| best.to_string()),
                    confidence,
                });
            }
        }
        Ok(predictions)
    }
}

/// How `infer` turns raw images into the network's input: `(pixel/255 − mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageInput {
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Pixel mean (pixels in `[0, 1]`).
    pub mean: f32,
    /// Pixel standard deviation.
    pub std: f32,
}
