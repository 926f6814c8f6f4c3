//! The task seam: what the trainer needs from a task — its data and batches, its network, loss,
//! live metrics, evaluation report and headline metric. The stages (`train`, `ptq`, `qat`,
//! `eval`, `pipeline`), checkpoints, `--resume`, the QAT schedule and the reports are written
//! once over [`Task`]; a new task (sequence classification, rating prediction, …) is one more
//! implementation and one more arm in [`crate::run`].
//!
//! - [`ImageTask`]: images → classes (LeNet-BN, ResNet), accuracy.
//! - [`SentenceTask`]: sentences → classes (BERT + sequence head), accuracy and P/R/F1.
//! - [`TokenTask`]: a tag per word (BERT + token head), entity-level F1 (seqeval strict).
//! - [`SequenceTask`]: sequences of feature frames → classes (stacked LSTMs quantized gate by
//!   gate), accuracy and macro P/R/F1.
mod classifier_outputs;
mod engine_io;
mod entity_metric;
mod image;
mod sentence;
mod sequence;
mod text_data;
mod text_engine;
mod token;

pub(crate) use classifier_outputs::classifier_outputs;
pub use engine_io::*;
pub use entity_metric::*;
pub use image::*;
pub use sentence::*;
pub use sequence::*;
pub use text_data::*;
pub use text_engine::*;
pub use token::*;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use burn::train::SupervisedTraining;
use burn::train::metric::{Adaptor, ItemLazy, LossInput};
use quant::QuantMapping;

use crate::{ModelConfig, TaskKind, Trainee, TrainerError};

/// A network a task trains: its batch, its step output (loss and what the metrics read), and how
/// it gets quantizers.
pub trait TaskNet: Module + burn::module::ModuleDisplay + std::fmt::Display + 'static {
    /// A batch of the task's data.
    type Batch: Clone + Send + Sync + Debug + 'static;
    /// What one step produces: the loss, and whatever the task's live metrics read.
    type Output: ItemLazy + Adaptor<LossInput> + Adaptor<()> + 'static;

    /// Forward pass and loss of a batch.
    fn step(&self, batch: Self::Batch) -> Self::Output;

    /// The forward pass that calibration and bias correction run (output dropped): [`Self::step`],
    /// with a padded batch's real positions marked (`quant::qat::counting_positions`) so that
    /// the correction measures the tokens, not the padding.
    fn calibration_step(&self, batch: Self::Batch) {
        let _ = self.step(batch);
    }

    /// The loss in `output` (what is back-propagated).
    fn loss(output: &Self::Output) -> Tensor<1>;

    /// `output` with its loss replaced (QAT distillation mixes the teacher's term in), the rest
    /// (what the metrics read) kept.
    fn with_loss(output: Self::Output, loss: Tensor<1>) -> Self::Output;

    /// The logits in `output` that a distillation loss compares with a teacher's, `[items,
    /// labels]`, and which of those items count (`[items]` 1/0 weights; `None`: every one):
    /// the items the task's own loss scores.
    fn scored_logits(output: &Self::Output) -> (Tensor<2>, Option<Tensor<1>>);

    /// `batch` on its device's inner backend, for a frozen teacher: without autodiff a network
    /// runs as in inference (batch norm on its running statistics, no dropout) and records no
    /// graph.
    fn without_autodiff(batch: Self::Batch) -> Self::Batch;

    /// The same network with `mapping`'s quantizers (replacing any), weights kept.
    fn quantized(self, mapping: &QuantMapping) -> Result<Self, TrainerError>;

    /// Registers the task's live metrics (dashboard and logs) besides the common ones.
    fn metrics(
        training: SupervisedTraining<Trainee<Self>>,
        labels: &[String],
    ) -> SupervisedTraining<Trainee<Self>>;
}

/// A split of the task's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Training data.
    Train,
    /// Validation data (early stopping, checkpoint choice).
    Valid,
    /// Test data (the reported metrics).
    Test,
}

/// A model's scores on the test set.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The headline metric's name (`accuracy`, `entity_f1`).
    pub metric: &'static str,
    /// Its value, in `[0, 1]`.
    pub value: f64,
    /// Other metrics, by name, in `[0, 1]`.
    pub metrics: BTreeMap<String, f64>,
    /// The report tables as text (per class, per entity type, …).
    pub text: String,
    /// The report for programs.
    pub json: serde_json::Value,
}

/// A learning task: its data (loaded once), its network family, and its evaluation.
pub trait Task: Sized {
    /// The network.
    type Net: TaskNet;

    /// Which task this is.
    fn kind(&self) -> TaskKind;

    /// One line on the data, for the start of a run (`2000 train / 500 test images`).
    fn describe(&self) -> String;

    /// Label names in index order (classes, or tags).
    fn labels(&self) -> &[String];

    /// Number of items in a split.
    fn len(&self, part: Part) -> usize;

    /// A loader over a split: shuffled (and augmented, where the task does) with `shuffle`'s
    /// seed, else in order.
    fn loader(
        &self,
        part: Part,
        shuffle: Option<u64>,
    ) -> Arc<dyn DataLoader<<Self::Net as TaskNet>::Batch>>;

    /// The network of `model` predicting `num_labels` labels with `mapping`'s quantizers,
    /// freshly initialised: the shape to load a saved record into.
    fn build(
        &self,
        model: &ModelConfig,
        num_labels: usize,
        mapping: &QuantMapping,
        device: &Device,
    ) -> Result<Self::Net, TrainerError>;

    /// The float network that training starts from (random, or a pretrained checkpoint).
    fn initial(&self, device: &Device) -> Result<Self::Net, TrainerError>;

    /// Scores `net` (observers off) on the test split.
    fn evaluate(&self, net: &Self::Net, device: &Device) -> Evaluation {
        self.evaluate_with_logits(net, Part::Test, device).0
    }

    /// [`Task::evaluate`] on `part` (the test split, or the validation split for choices that
    /// must not peek at the test set), and the logits the scores were computed from, `[items,
    /// labels]` row-major (images, sentences, or the scored tokens), to compare two models
    /// output by output (`sensitivity`).
    fn evaluate_with_logits(
        &self,
        net: &Self::Net,
        part: Part,
        device: &Device,
    ) -> (Evaluation, Vec<f32>);

    /// The integer artifact of `net` (calibrated or QAT-trained), carrying `meta` — to which the
    /// task adds what [`Task::infer`] needs to prepare raw inputs (normalisation, tokenizer).
    fn export(
        &self,
        net: &Self::Net,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<engine::Artifact, TrainerError> {
        let _ = (net, meta);
        Err(TrainerError::Unsupported(format!(
            "exporting a {} network to the integer engine is not built yet",
            self.kind().name()
        )))
    }

    /// The engine's scores on the test split, and how its predictions and logits compare with
    /// `net`'s (the fake-quant model it was exported from) on the same items.
    fn evaluate_engine(
        &self,
        engine: &engine::Engine,
        net: &Self::Net,
        device: &Device,
    ) -> Result<(Evaluation, Parity), TrainerError> {
        let _ = (engine, net, device);
        Err(TrainerError::Unsupported(format!(
            "running a {} network on the integer engine is not built yet",
            self.kind().name()
        )))
    }

    /// Predictions of an exported model (`artifact`, run by `engine`) for the raw inputs in
    /// `input` (images, sentences, CoNLL tokens), prepared as the artifact's metadata says.
    fn infer(
        artifact: &engine::Artifact,
        engine: &engine::Engine,
        input: &std::path::Path,
    ) -> Result<Vec<Prediction>, TrainerError> {
        let _ = (artifact, engine, input);
        Err(TrainerError::Unsupported(
            "inference from an artifact is not built for this task yet".into(),
        ))
    }
}

/// One prediction of `trainer infer`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// Which input (`image 3`, the sentence, the token).
    pub input: String,
    /// The predicted label.
    pub label: String,
    /// Its softmax probability.
    pub confidence: f64,
}

/// Softmax probability of the largest logit of `row`, and its index.
pub fn top_label(row: &[f32]) -> (usize, f64) {
    let (best, max) =
        row.iter().enumerate().fold(
            (0, f32::NEG_INFINITY),
            |(b, m), (i, &v)| if v > m { (i, v) } else { (b, m) },
        );
    let total: f64 = row.iter().map(|&v| ((v - max) as f64).exp()).sum();
    (best, 1.0 / total)
}

/// How an exported model's predictions compare with the fake-quant model's on the test set.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Parity {
    /// Items compared (images, sentences, scored tokens).
    pub compared: usize,
    /// Share of items on which both predict the same label.
    pub agreement: f64,
    /// Largest `|engine logit − fake-quant logit|` over every item and label.
    pub max_abs_logit_diff: f64,
}

impl Parity {
    /// Compares row-major logits `[items, labels]` of the engine and the fake-quant model.
    pub fn of_logits(engine: &[f32], fake: &[f32], labels: usize) -> Parity {
        assert_eq!(engine.len(), fake.len(), "logits of the same items");
        let argmax = |row: &[f32]| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        };
        let items = engine.len() / labels.max(1);
        let same = engine
            .chunks_exact(labels)
            .zip(fake.chunks_exact(labels))
            .filter(|(e, f)| argmax(e) == argmax(f))
            .count();
        let gap = engine
            .iter()
            .zip(fake)
            .fold(0f64, |m, (e, f)| m.max((e - f).abs() as f64));
        Parity {
            compared: items,
            agreement: same as f64 / items.max(1) as f64,
            max_abs_logit_diff: gap,
        }
    }
}
