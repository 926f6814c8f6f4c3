//! [`RunConfig`]: everything a run needs, read from TOML (unknown keys are errors).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::apply_overrides;
use crate::TrainerError;

/// The tiny default run (LeNet-BN on the embedded Fashion-MNIST subset), compiled in so the
/// trainer runs on a fresh checkout with no arguments.
pub const DEFAULT_CONFIG: &str = include_str!("../../../../configs/fashion-mnist-tiny.toml");

/// A whole run: where its outputs go, the model, the data, and the three training stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name: outputs go to `<runs_dir>/<name>/`.
    pub name: String,
    /// Parent folder of run folders.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
    /// Seed of the device RNG (weight init) and of data shuffling and augmentation.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Make a run on a CPU device reproducible bit for bit: the same config and seed give the
    /// same `report.json` results and the same checkpoint bytes. It loads data on one thread
    /// (several loader threads deliver batches in the order they finish); the cost is measured in
    /// the README. `false` lets `data.num_workers` threads load.
    #[serde(default = "default_deterministic")]
    pub deterministic: bool,
    /// What is learned: `image-classification` (the default), `sentence-classification`,
    /// `token-classification` or `sequence-classification`.
    #[serde(default)]
    pub task: TaskKind,
    /// Quantization schemes that `ptq` and `qat` produce, each a preset name (`w8a8`, `w4a8`,
    /// `w4a4`, `w2a8`) or a path to a `QuantMapping` TOML file (e.g. `configs/schemes/w4a4.toml`).
    pub schemes: Vec<String>,
    /// The network.
    pub model: ModelConfig,
    /// The dataset.
    pub data: DataConfig,
    /// Float training.
    pub train: TrainConfig,
    /// Post-training quantization.
    #[serde(default)]
    pub ptq: PtqConfig,
    /// Quantization-aware fine-tuning.
    pub qat: QatConfig,
    /// The integer model's files.
    #[serde(default)]
    pub export: ExportConfig,
}

/// What `export` writes besides `model.qat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// How `model.onnx` stores weight codes: `uint8` (codes + 128, zero point 128; the default,
    /// exact on every ONNX Runtime x86 CPU) or `int8` (zero point 0; exact and about 3× faster
    /// on ONNX Runtime with AVX-512 VNNI / AVX-VNNI, off by saturation on AVX2-only CPUs).
    #[serde(default)]
    pub onnx_weights: engine::onnx::OnnxWeights,
}

/// What a run learns; each kind is a [`crate::task::Task`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskKind {
    /// Images to classes (IDX files; LeNet-BN or ResNet).
    #[default]
    ImageClassification,
    /// Sentences to classes (CSV/TSV; BERT with a sequence-classification head).
    SentenceClassification,
    /// A tag per word (CoNLL; BERT with a token-classification head), scored per entity.
    TokenClassification,
    /// Sequences of feature frames to classes (sktime `.ts` files; an LSTM).
    SequenceClassification,
}

impl TaskKind {
    /// The kebab-case name, as in configs and `report.json`.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::ImageClassification => "image-classification",
            TaskKind::SentenceClassification => "sentence-classification",
            TaskKind::TokenClassification => "token-classification",
            TaskKind::SequenceClassification => "sequence-classification",
        }
    }
}

/// Which network, and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "kebab-case")]
pub enum ModelConfig {
    /// LeNet-style CNN with batch norm.
    LenetBn {
        /// Output channels of the two convolutions.
        #[serde(default = "default_lenet_channels")]
        channels: [usize; 2],
        /// Hidden width of the first linear layer.
        #[serde(default = "default_hidden")]
        hidden: usize,
    },
    /// ResNet-20-style residual network (6n + 2 layers).
    Resnet {
        /// Blocks per stage (3: ResNet-20).
        #[serde(default = "default_blocks")]
        blocks_per_stage: usize,
        /// Channels of the three stages.
        #[serde(default = "default_resnet_channels")]
        channels: [usize; 3],
    },
    /// Stacked LSTM layers, quantized gate by gate, and a linear classifier (sequence tasks).
    Lstm {
        /// Hidden state size of every layer.
        #[serde(default = "default_lstm_hidden")]
        hidden: usize,
        /// Stacked layers.
        #[serde(default = "default_lstm_layers")]
        layers: usize,
    },
    /// A pretrained BERT-architecture checkpoint with the task's head (text tasks).
    Bert {
        /// Hugging Face checkpoint folder: `config.json`, `model.safetensors` (or
        /// `pytorch_model.bin`) and `tokenizer.json` (or `vocab.txt`).
        checkpoint: PathBuf,
        /// Dropout before the classifier (default: the checkpoint's `hidden_dropout_prob`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        classifier_dropout: Option<f64>,
    },
}

/// Where the data is and how to batch it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset name for reports (e.g. `fashion-mnist`).
    pub name: String,
    /// Images: folder holding `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
    /// `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]` (relative to the working directory).
    #[serde(default, skip_serializing_if = "path_is_empty")]
    pub dir: PathBuf,
    /// Text: the labelled file (CSV/TSV sentences, or CoNLL), split into train / validation /
    /// test with `seed` by `test_fraction` and `valid_fraction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Text: a separate test file (then `file` is split into train and validation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_file: Option<PathBuf>,
    /// Text: fraction of `file` held out for testing (without `test_file`).
    #[serde(default = "default_fraction")]
    pub test_fraction: f64,
    /// Text: fraction of the rest held out for validation.
    #[serde(default = "default_fraction")]
    pub valid_fraction: f64,
    /// Sentence classification: the columns of `file` (delimiter, header, text, label,
    /// optional `positive_above` threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<data::SentenceFormat>,
    /// Text: longest sequence in tokens, `[CLS]` and `[SEP]` included (longer ones are cut).
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    /// Text: pad batches to their `longest` sequence or to a `fixed` `max_length`.
    #[serde(default = "default_padding")]
    pub padding: data::Padding,
    /// Every `valid_every`-th training image is held out for validation (early stopping and
    /// checkpoint selection); the test set is only used for the reported accuracy.
    #[serde(default = "default_valid_every")]
    pub valid_every: usize,
    /// Use only the first `train_limit` training images (0: all).
    #[serde(default)]
    pub train_limit: usize,
    /// Mini-batch size.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Data-loading worker threads.
    #[serde(default = "default_workers")]
    pub num_workers: usize,
    /// Light augmentation of training images: random horizontal flips and shifts of up to 2 pixels.
    #[serde(default)]
    pub augment: bool,
    /// Class names in label order; overrides the folder's `dataset.json` (default: its
    /// `classes`, else the label indices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// `[mean, std]` to normalise pixels (in `[0, 1]`) with; overrides `dataset.json` (default:
    /// its `mean` and `std`, else the statistics of the training split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalization: Option<(f32, f32)>,
}

/// Float training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate (cosine-annealed to 0 over the run).
    pub lr: f64,
    /// Decoupled weight decay (AdamW).
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Stop when the validation loss has not improved for this many epochs (0: never).
    #[serde(default)]
    pub early_stopping_patience: usize,
}

/// Post-training quantization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtqConfig {
    /// Training batches run through the model to calibrate the observers.
    #[serde(default = "default_calibration_batches")]
    pub calibration_batches: usize,
    /// Empirical bias correction after calibration (`quant::qat::correct_bias`): each layer's
    /// output mean shifted back to the float model's, measured on the calibration batches (one
    /// more pass over them per layer with a bias). It matters most at 4 bits, where rounding
    /// shifts the means.
    #[serde(default)]
    pub bias_correction: bool,
    /// Learned rounding of the weights after calibration (`quant::qat::adaround`,
    /// `[ptq.adaround]`, every field optional): each layer's weights rounded down or up so that
    /// its output on the calibration batches stays close to the float model's. It runs before
    /// the bias correction. Leave it out for nearest rounding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaround: Option<quant::qat::AdaRoundConfig>,
}

/// Quantization-aware fine-tuning from the float model, and its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QatConfig {
    /// Epochs.
    pub epochs: usize,
    /// Peak learning rate of the weights.
    pub lr: f64,
    /// Learning rate of quantizer parameters (LSQ step sizes, zero points, PACT clips), which get
    /// no weight decay.
    pub quant_lr: f64,
    /// Decoupled weight decay of the weights.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Epoch (0-based) from which observers are frozen (PyTorch's `disable_observer`); leave it
    /// out for "never". An epoch past the stage is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observer_freeze_epoch: Option<usize>,
    /// Epoch (0-based) from which batch-norm statistics are frozen (`freeze_bn_stats`); leave it
    /// out for "never". An epoch past the stage is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bn_freeze_epoch: Option<usize>,
    /// Optimizer steps during which observers run and fake quantization is off (0: quantize at once).
    #[serde(default)]
    pub quant_delay: usize,
    /// Stop when the validation loss has not improved for this many epochs (0: never).
    #[serde(default)]
    pub early_stopping_patience: usize,
    /// Distillation from the float model (`[qat.distillation]`, `weight` and `temperature`):
    /// the QAT loss also matches the float model's softened outputs. Leave it out to train on
    /// the labels alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distillation: Option<quant::qat::Distillation>,
}

impl QatConfig {
    /// The stage's schedule (quant delay, BN and observer freeze) for `steps_per_epoch`.
    pub fn schedule(&self, steps_per_epoch: usize) -> quant::qat::QatSchedule {
        quant::qat::QatSchedule::new(steps_per_epoch)
            .with_observer_freeze_epoch(self.observer_freeze_epoch)
            .with_bn_freeze_epoch(self.bn_freeze_epoch)
            .with_quant_delay(self.quant_delay)
    }
}

impl Default for PtqConfig {
    fn default() -> Self {
        PtqConfig {
            calibration_batches: default_calibration_batches(),
            bias_correction: false,
            adaround: None,
        }
    }
}

fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}
fn default_seed() -> u64 {
    42
}
fn default_deterministic() -> bool {
    true
}
fn default_lenet_channels() -> [usize; 2] {
    [16, 32]
}
fn default_hidden() -> usize {
    128
}
fn default_lstm_hidden() -> usize {
    64
}
fn default_lstm_layers() -> usize {
    1
}
fn default_blocks() -> usize {
    3
}
fn default_resnet_channels() -> [usize; 3] {
    [16, 32, 64]
}
fn path_is_empty(path: &Path) -> bool {
    path.as_os_str().is_empty()
}
fn default_fraction() -> f64 {
    0.1
}
fn default_max_length() -> usize {
    128
}
fn default_padding() -> data::Padding {
    data::Padding::Longest
}
fn default_valid_every() -> usize {
    10
}
fn default_batch_size() -> usize {
    128
}
fn default_workers() -> usize {
    2
}
fn default_weight_decay() -> f64 {
    1e-4
}
fn default_calibration_batches() -> usize {
    16
}

fn field(path: &str, reason: impl Into<String>) -> TrainerError {
    TrainerError::Config {
        origin: "config".into(),
        message: format!("`{path}`: {}", reason.into()),
    }
}

/// A config error from a section's own validation (`quant`'s), its field named from the config's
/// root: `section.field`.
fn field_within(section: &str, error: quant::QuantError) -> TrainerError {
    match error.within(section) {
        quant::QuantError::InvalidField { field: f, reason } => field(&f, reason),
    }
}

impl RunConfig {
    /// Reads `path` (or the compiled-in default), applies `--set` overrides, and validates.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, TrainerError> {
        let (source, text) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| TrainerError::Io {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                (path.display().to_string(), text)
            }
            None => (
                "configs/fashion-mnist-tiny.toml (built in)".to_string(),
                DEFAULT_CONFIG.to_string(),
            ),
        };
        let config_error = |message: String| TrainerError::Config {
            origin: source.clone(),
            message,
        };
        // Parse the text itself first: its errors carry line and column.
        let base: RunConfig = toml::from_str(&text)
            .map_err(|e: toml::de::Error| config_error(one_line(&e.to_string())))?;
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| config_error(one_line(&e.to_string())))?;
        apply_overrides(&mut table, &base, overrides)?;
        let config: RunConfig = table.try_into().map_err(|e: toml::de::Error| {
            config_error(format!("after --set: {}", one_line(&e.to_string())))
        })?;
        config.validate().map_err(|e| match e {
            TrainerError::Config { origin, message } if origin == "config" => config_error(message),
            other => other,
        })?;
        Ok(config)
    }

    /// Checks values a type cannot: positive sizes, rates in range, known schemes.
    pub fn validate(&self) -> Result<(), TrainerError> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return Err(field(
                "name",
                "must be a non-empty folder name without slashes",
            ));
        }
        if self.schemes.is_empty() {
            return Err(field(
                "schemes",
                "list at least one scheme (e.g. [\"w8a8\"])",
            ));
        }
        let d = &self.data;
        if d.batch_size == 0 {
            return Err(field("data.batch_size", "must be at least 1"));
        }
        if self.task == TaskKind::ImageClassification && d.valid_every < 2 {
            return Err(field(
                "data.valid_every",
                "must be at least 2 (every k-th image goes to validation)",
            ));
        }
        for (path, epochs) in [
            ("train.epochs", self.train.epochs),
            ("qat.epochs", self.qat.epochs),
        ] {
            if epochs == 0 {
                return Err(field(path, "must be at least 1"));
            }
        }
        for (path, lr) in [
            ("train.lr", self.train.lr),
            ("qat.lr", self.qat.lr),
            ("qat.quant_lr", self.qat.quant_lr),
        ] {
            if !(lr > 0.0 && lr <= 1.0) {
                return Err(field(path, format!("{lr} is not in (0, 1]")));
            }
        }
        for (path, wd) in [
            ("train.weight_decay", self.train.weight_decay),
            ("qat.weight_decay", self.qat.weight_decay),
        ] {
            if !(0.0..1.0).contains(&wd) {
                return Err(field(path, format!("{wd} is not in [0, 1)")));
            }
        }
        // Milestones that would never fire (quant delay is checked where steps are known).
        self.qat
            .schedule(1)
            .with_quant_delay(0)
            .validate(self.qat.epochs)
            .map_err(|e| field_within("qat", e))?;
        if let Some(distillation) = &self.qat.distillation {
            distillation
                .validate()
                .map_err(|e| field_within("qat.distillation", e))?;
        }
        if let Some(adaround) = &self.ptq.adaround {
            adaround
                .validate()
                .map_err(|e| field_within("ptq.adaround", e))?;
        }
        if self.ptq.calibration_batches == 0 {
            return Err(field("ptq.calibration_batches", "must be at least 1"));
        }
        self.validate_task()?;
        match &self.model {
            ModelConfig::Bert {
                classifier_dropout, ..
            } => {
                if let Some(p) = classifier_dropout
                    && !(0.0..1.0).contains(p)
                {
                    return Err(field(
                        "model.classifier_dropout",
                        format!("{p} is not in [0, 1)"),
                    ));
                }
            }
            ModelConfig::Lstm { hidden, layers } => {
                if *hidden == 0 || *layers == 0 {
                    return Err(field("model", "hidden and layers must be positive"));
                }
            }
            ModelConfig::LenetBn { channels, hidden } => {
                if channels.contains(&0) || *hidden == 0 {
                    return Err(field("model", "channels and hidden must be positive"));
                }
            }
            ModelConfig::Resnet {
                blocks_per_stage,
                channels,
            } => {
                if channels.contains(&0) || *blocks_per_stage == 0 {
                    return Err(field(
                        "model",
                        "channels and blocks_per_stage must be positive",
                    ));
                }
            }
        }
        for (i, scheme) in self.schemes.iter().enumerate() {
            super::Scheme::resolve(scheme).map_err(|e| match e {
                TrainerError::Config { origin, message } if origin == "scheme" => {
                    field(&format!("schemes[{i}]"), message)
                }
                other => other,
            })?;
        }
        Ok(())
    }

    /// Checks that the model and the data fields fit the task.
    fn validate_task(&self) -> Result<(), TrainerError> {
        let d = &self.data;
        let image = self.task == TaskKind::ImageClassification;
        let sequence = self.task == TaskKind::SequenceClassification;
        let (fits, needs) = match (self.task, &self.model) {
            (TaskKind::ImageClassification, m) => (
                matches!(m, ModelConfig::LenetBn { .. } | ModelConfig::Resnet { .. }),
                "an image model (`lenet-bn` or `resnet`)",
            ),
            (TaskKind::SequenceClassification, m) => {
                (matches!(m, ModelConfig::Lstm { .. }), "`lstm`")
            }
            (_, m) => (matches!(m, ModelConfig::Bert { .. }), "`bert`"),
        };
        if !fits {
            return Err(field(
                "model.kind",
                format!("`{}` needs {needs}", self.task.name()),
            ));
        }
        if image {
            if path_is_empty(&d.dir) {
                return Err(field("data.dir", "an image task needs the IDX folder"));
            }
            return Ok(());
        }
        if d.file.is_none() {
            return Err(field(
                "data.file",
                if sequence {
                    "a sequence task needs its labelled `.ts` file"
                } else {
                    "a text task needs its labelled file"
                },
            ));
        }
        for (path, f) in [
            ("data.test_fraction", d.test_fraction),
            ("data.valid_fraction", d.valid_fraction),
        ] {
            if !(0.0..0.9).contains(&f) {
                return Err(field(path, format!("{f} is not in [0, 0.9)")));
            }
        }
        if d.test_file.is_none() && d.test_fraction == 0.0 {
            return Err(field(
                "data.test_fraction",
                "must be positive without a `data.test_file`",
            ));
        }
        if d.max_length < 3 {
            return Err(field("data.max_length", "must be at least 3"));
        }
        match (self.task, &d.format) {
            (TaskKind::SequenceClassification, Some(_)) => Err(field(
                "data.format",
                "`.ts` files have a fixed layout; remove `data.format`",
            )),
            (TaskKind::SentenceClassification, None) => Err(field(
                "data.format",
                "a sentence task needs the file's columns (delimiter, header, text, label)",
            )),
            (TaskKind::TokenClassification, Some(_)) => Err(field(
                "data.format",
                "CoNLL files have a fixed layout; remove `data.format`",
            )),
            _ => Ok(()),
        }
    }

    /// Short model name for reports (`lenet-bn`, `resnet-20`, `bert:minilm-l1`).
    pub fn model_name(&self) -> String {
        match &self.model {
            ModelConfig::Bert { checkpoint, .. } => format!(
                "bert:{}",
                checkpoint
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            ModelConfig::LenetBn { .. } => "lenet-bn".into(),
            ModelConfig::Lstm { hidden, layers } => format!("lstm-{layers}x{hidden}"),
            ModelConfig::Resnet {
                blocks_per_stage, ..
            } => format!("resnet-{}", 6 * blocks_per_stage + 2),
        }
    }

    /// The run's output folder.
    pub fn run_dir(&self) -> PathBuf {
        self.runs_dir.join(&self.name)
    }

    /// The config as TOML, as resolved (overrides applied), for `runs/<name>/config.toml`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serializes")
    }
}

/// Joins a multi-line parser message (toml quotes the offending line) into one line.
pub(crate) fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        // Drop the quoted source line (`3 | epohcs = 3`): the message already says where.
        .filter(|l| {
            !l.split_once(" |")
                .is_some_and(|(n, _)| n.trim().chars().all(|c| c.is_ascii_digit()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_default_parses_and_validates() {
        let config = RunConfig::load(None, &[]).unwrap();
        assert_eq!(config.model_name(), "lenet-bn");
        assert_eq!(
            config.data.dir,
            PathBuf::from("datasets/embedded/fashion-mnist-small")
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let dir = std::env::temp_dir().join(format!("trainer-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(
            &path,
            DEFAULT_CONFIG.replace("[train]\n", "[train]\nepohcs = 3\n"),
        )
        .unwrap();
        let err = RunConfig::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(
            err.contains("bad.toml") && err.contains("epohcs") && err.contains("line"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn overrides_apply_and_unknown_ones_are_rejected() {
        let config = RunConfig::load(
            None,
            &["train.epochs=7".into(), "schemes=[\"w4a4\"]".into()],
        )
        .unwrap();
        assert_eq!(
            (config.train.epochs, config.schemes.clone()),
            (7, vec!["w4a4".to_string()])
        );
        let err = RunConfig::load(None, &["train.epoch=7".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.epoch") && err.contains("epochs"),
            "{err}"
        );
        let err = RunConfig::load(None, &["qat.lr=2".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("qat.lr"), "{err}");
    }

    #[test]
    fn onnx_weights_default_to_uint8_and_take_int8_or_name_the_field() {
        use engine::onnx::OnnxWeights;
        let config = RunConfig::load(None, &[]).unwrap();
        assert_eq!(config.export.onnx_weights, OnnxWeights::Uint8);
        let config = RunConfig::load(None, &["export.onnx_weights=\"int8\"".into()]).unwrap();
        assert_eq!(config.export.onnx_weights, OnnxWeights::Int8);
        let err = RunConfig::load(None, &["export.onnx_weights=\"int4\"".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("onnx_weights") && err.contains("int4") && err.contains("uint8"),
            "{err}"
        );
    }
}
