//! [`SequenceTask`]: sequences of feature frames to classes (speaker recognition on Japanese
//! Vowels) with stacked LSTMs quantized gate by gate; accuracy headline, with macro precision,
//! recall and F1.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::Device;
use burn::train::ClassificationOutput;
use data::{
    Holdout, SequenceBatch, SequenceBatcher, SequenceFile, SequenceItem, holdout_split, read_ts,
};
use models::{LstmClassifier, LstmClassifierConfig};
use quant::QuantMapping;

use super::{
    Evaluation, Part, Task, TaskNet, class_scores, classification_output, items_loader,
    label_names, part_of, predictions, split_sizes,
};
use crate::{DataConfig, ModelConfig, RunConfig, TaskKind, TrainerError};

/// Sequence classification on sktime `.ts` files.
pub struct SequenceTask {
    parts: Holdout<SequenceItem>,
    classes: Vec<String>,
    dims: usize,
    /// Per-feature `(mean, std)` of the training frames, applied to every split.
    normalization: Vec<(f32, f32)>,
    data: DataConfig,
    model: ModelConfig,
}

impl SequenceTask {
    /// Reads the labelled `.ts` file of `config.data` (and its test file), splits it with the
    /// run's seed, and normalises every feature by the training frames' mean and deviation.
    pub fn load(config: &RunConfig) -> Result<Self, TrainerError> {
        let data = &config.data;
        let file = data
            .file
            .as_deref()
            .expect("validated: sequence tasks have data.file");
        let train = read_ts(file)?;
        let test = data.test_file.as_deref().map(read_ts).transpose()?;
        let classes = match &data.classes {
            Some(classes) => classes.clone(),
            None if !train.classes.is_empty() => train.classes.clone(),
            None => label_names(train.sequences.iter().map(|s| s.label.as_str())),
        };
        let dims = train.dims;
        let encode = |set: SequenceFile, path: &Path| {
            if set.dims != dims {
                return Err(TrainerError::io(
                    path,
                    format!(
                        "has {} features per frame; `data.file` has {dims}",
                        set.dims
                    ),
                ));
            }
            set.sequences
                .into_iter()
                .map(|s| {
                    let label = classes.iter().position(|c| *c == s.label).ok_or_else(|| {
                        TrainerError::io(
                            path,
                            format!(
                                "label `{}` is not one of the classes ({})",
                                s.label,
                                classes.join(", ")
                            ),
                        )
                    })?;
                    Ok(SequenceItem {
                        frames: s.frames,
                        len: s.len,
                        label,
                    })
                })
                .collect::<Result<Vec<_>, TrainerError>>()
        };
        let items = encode(train, file)?;
        let mut parts = match (test, data.test_file.as_deref()) {
            (Some(test), Some(path)) => {
                let test = encode(test, path)?;
                Holdout {
                    test,
                    ..holdout_split(items, 0.0, data.valid_fraction, config.seed)
                }
            }
            _ => holdout_split(items, data.test_fraction, data.valid_fraction, config.seed),
        };
        let normalization = feature_statistics(&parts.train, dims);
        for item in parts
            .train
            .iter_mut()
            .chain(&mut parts.valid)
            .chain(&mut parts.test)
        {
            for frame in item.frames.chunks_exact_mut(dims) {
                for (x, (mean, std)) in frame.iter_mut().zip(&normalization) {
                    *x = (*x - mean) / std;
                }
            }
        }
        Ok(SequenceTask {
            parts,
            classes,
            dims,
            normalization,
            data: data.clone(),
            model: config.model.clone(),
        })
    }

    fn items(&self, part: Part) -> &[SequenceItem] {
        part_of(&self.parts, part)
    }

    /// Per-feature `(mean, std)` the frames are normalised with.
    pub fn normalization(&self) -> &[(f32, f32)] {
        &self.normalization
    }
}

/// Mean and standard deviation of each of the `dims` features over every frame of `items` (a
/// constant feature gets deviation 1, so it normalises to 0 rather than to NaN).
fn feature_statistics(items: &[SequenceItem], dims: usize) -> Vec<(f32, f32)> {
    let mut sums = vec![(0f64, 0f64); dims];
    let mut frames = 0usize;
    for item in items {
        for frame in item.frames.chunks_exact(dims) {
            for (s, &x) in sums.iter_mut().zip(frame) {
                s.0 += x as f64;
                s.1 += (x as f64) * (x as f64);
            }
            frames += 1;
        }
    }
    let n = frames.max(1) as f64;
    sums.into_iter()
        .map(|(sum, squares)| {
            let mean = sum / n;
            let std = (squares / n - mean * mean).max(0.0).sqrt();
            (mean as f32, if std > 1e-12 { std as f32 } else { 1.0 })
        })
        .collect()
}

impl TaskNet for LstmClassifier {
    type Batch = SequenceBatch;
    type Output = ClassificationOutput;

    super::classifier_outputs!();

    fn step(&self, batch: SequenceBatch) -> ClassificationOutput {
        let logits = self.forward(batch.frames, &batch.mask);
        classification_output(logits, batch.targets)
    }

    fn calibration_step(&self, batch: SequenceBatch) {
        let mask = batch.mask.clone();
        quant::qat::counting_positions(&mask, || {
            let _ = self.step(batch);
        });
    }

    fn without_autodiff(batch: SequenceBatch) -> SequenceBatch {
        batch.without_autodiff()
    }

    fn quantized(self, mapping: &QuantMapping) -> Result<Self, TrainerError> {
        Ok(LstmClassifier::quantized(self, mapping)?)
    }
}

impl Task for SequenceTask {
    type Net = LstmClassifier;

    fn kind(&self) -> TaskKind {
        TaskKind::SequenceClassification
    }

    fn describe(&self) -> String {
        format!(
            "{} of {} features, {} classes",
            split_sizes(&self.parts, "sequences"),
            self.dims,
            self.classes.len()
        )
    }

    fn labels(&self) -> &[String] {
        &self.classes
    }

    fn len(&self, part: Part) -> usize {
        self.items(part).len()
    }

    fn loader(&self, part: Part, shuffle: Option<u64>) -> Arc<dyn DataLoader<SequenceBatch>> {
        let batcher = SequenceBatcher { dims: self.dims };
        items_loader(batcher, self.items(part), &self.data, shuffle)
    }

    fn build(
        &self,
        model: &ModelConfig,
        num_labels: usize,
        mapping: &QuantMapping,
        device: &Device,
    ) -> Result<LstmClassifier, TrainerError> {
        let ModelConfig::Lstm { hidden, layers } = model else {
            return Err(TrainerError::Config {
                origin: "config".into(),
                message: "`model.kind`: a sequence task needs `lstm`".into(),
            });
        };
        Ok(LstmClassifierConfig::new(self.dims, num_labels)
            .with_d_hidden(*hidden)
            .with_layers(*layers)
            .with_mapping(mapping.clone())
            .try_init(device)?)
    }

    fn initial(&self, device: &Device) -> Result<LstmClassifier, TrainerError> {
        self.build(
            &self.model,
            self.classes.len(),
            &QuantMapping::new(),
            device,
        )
    }

    fn evaluate_with_logits(
        &self,
        net: &LstmClassifier,
        part: Part,
        device: &Device,
    ) -> (Evaluation, Vec<f32>) {
        let loader = self.loader(part, None).to_device(device);
        let (predicted, actual, logits) = predictions(loader, |batch| {
            (net.forward(batch.frames, &batch.mask), batch.targets)
        });
        (class_scores(&self.classes, &predicted, &actual), logits)
    }
}
