//! [`ImageTask`]: images to classes with LeNet-BN or the ResNet (the trainer's first task).

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{Device, Tensor};
use burn::train::metric::AccuracyMetric;
use burn::train::{ClassificationOutput, SupervisedTraining};
use data::ImageBatch;
use quant::QuantMapping;

use super::{Evaluation, Part, Task, TaskNet};
use crate::report::ClassificationReport;
use crate::{
    DataConfig, ModelConfig, Net, Splits, TaskKind, Trainee, TrainerError, eval_loader,
    load_splits, train_loader,
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

    fn step(&self, batch: ImageBatch) -> ClassificationOutput {
        let logits = self.forward(batch.images);
        classification_output(logits, batch.targets)
    }

    fn loss(output: &ClassificationOutput) -> Tensor<1> {
        output.loss.clone()
    }

    fn quantized(self, mapping: &QuantMapping) -> Result<Self, TrainerError> {
        Ok(Net::quantized(self, mapping)?)
    }

    fn metrics(
        training: SupervisedTraining<Trainee<Self>>,
        _labels: &[String],
    ) -> SupervisedTraining<Trainee<Self>> {
        training.metrics((AccuracyMetric::new(),))
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

/// Predicted and true classes of every item a loader yields, for a network's logits.
pub fn predictions<B>(
    loader: Arc<dyn DataLoader<B>>,
    mut logits_and_targets: impl FnMut(B) -> (Tensor<2>, Tensor<1, burn::tensor::Int>),
) -> (Vec<usize>, Vec<usize>) {
    let ints = |t: Tensor<1, burn::tensor::Int>| -> Vec<usize> {
        t.into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("an int tensor")
            .into_iter()
            .map(|v| v as usize)
            .collect()
    };
    let (mut predicted, mut actual) = (Vec::new(), Vec::new());
    for batch in loader.iter().flatten() {
        let (logits, targets) = logits_and_targets(batch);
        predicted.extend(ints(logits.argmax(1).reshape([-1])));
        actual.extend(ints(targets));
    }
    (predicted, actual)
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

    fn evaluate(&self, net: &Net, device: &Device) -> Evaluation {
        let loader = self.loader(Part::Test, None).to_device(device);
        let (predicted, actual) =
            predictions(loader, |batch| (net.forward(batch.images), batch.targets));
        let classes: Vec<&str> = self.splits.classes.iter().map(String::as_str).collect();
        classification_evaluation(
            ClassificationReport::new(&predicted, &actual, &classes),
            BTreeMap::new(),
        )
    }
}
