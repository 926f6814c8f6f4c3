//! The task seam: what the trainer needs from a task — its data and batches, its network, loss,
//! live metrics, evaluation report and headline metric. The stages (`train`, `ptq`, `qat`,
//! `eval`, `pipeline`), checkpoints, `--resume`, the QAT schedule and the reports are written
//! once over [`Task`]; a new task (sequence classification, rating prediction, …) is one more
//! implementation and one more arm in [`crate::run`].
//!
//! - [`ImageTask`]: images → classes (LeNet-BN, ResNet), accuracy.
//! - [`SentenceTask`]: sentences → classes (BERT + sequence head), accuracy and P/R/F1.
//! - [`TokenTask`]: a tag per word (BERT + token head), entity-level F1 (seqeval strict).
mod entity_metric;
mod image;
mod sentence;
mod text_data;
mod token;

pub use entity_metric::*;
pub use image::*;
pub use sentence::*;
pub use text_data::*;
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

    /// The loss in `output` (what is back-propagated).
    fn loss(output: &Self::Output) -> Tensor<1>;

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
    fn evaluate(&self, net: &Self::Net, device: &Device) -> Evaluation;
}
