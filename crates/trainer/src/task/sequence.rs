//! [`SequenceTask`]: sequences of feature frames to classes (speaker recognition on Japanese
//! Vowels) with stacked LSTMs quantized gate by gate; accuracy headline, with macro precision,
//! recall and F1.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::Device;
use burn::train::ClassificationOutput;
use data::{Holdout, SequenceBatch, SequenceBatcher, SequenceFile, SequenceItem, read_ts};
use models::{LstmClassifier, LstmClassifierConfig};
use quant::QuantMapping;

use super::{
    Evaluation, Parity, Part, Prediction, Task, TaskNet, argmax_rows, artifact_labels,
    class_scores, classification_output, engine_logits, host, ints, items_loader, label_names,
    part_of, predictions, split_items, split_sizes, top_label,
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
        let test = match (test, data.test_file.as_deref()) {
            (Some(test), Some(path)) => Some(encode(test, path)?),
            _ => None,
        };
        let mut parts = split_items(data, items, test, config.seed);
        let normalization = feature_statistics(&parts.train, dims);
        for item in parts
            .train
            .iter_mut()
            .chain(&mut parts.valid)
            .chain(&mut parts.test)
        {
            normalize(&mut item.frames, &normalization);
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

    /// The sequence length an export takes: the longest sequence of any split (shorter ones
    /// are padded and masked).
    fn export_time(&self) -> usize {
        [&self.parts.train, &self.parts.valid, &self.parts.test]
            .iter()
            .flat_map(|items| items.iter().map(|i| i.len))
            .max()
            .unwrap_or(1)
    }

    /// Per-feature `(mean, std)` the frames are normalised with.
    pub fn normalization(&self) -> &[(f32, f32)] {
        &self.normalization
    }
}

/// `frames` (`[len, dims]` row-major) with each feature normalised as `(x − mean) / std` by
/// `statistics` (one `(mean, std)` per feature): what training saw, and what `infer` feeds.
fn normalize(frames: &mut [f32], statistics: &[(f32, f32)]) {
    for frame in frames.chunks_exact_mut(statistics.len()) {
        for (x, (mean, std)) in frame.iter_mut().zip(statistics) {
            *x = (*x - mean) / std;
        }
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

    fn export(
        &self,
        net: &LstmClassifier,
        mut meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<engine::Artifact, TrainerError> {
        let input = SequenceInput {
            time: self.export_time(),
            dims: self.dims,
            normalization: self.normalization.clone(),
        };
        meta.insert(
            "input".into(),
            serde_json::to_value(&input).expect("serializes"),
        );
        Ok(net.to_artifact(input.time, serde_json::Value::Object(meta))?)
    }

    fn evaluate_engine(
        &self,
        engine: &engine::Engine,
        net: &LstmClassifier,
        device: &Device,
    ) -> Result<(Evaluation, Parity), TrainerError> {
        let time = self.export_time();
        let loader = self.loader(Part::Test, None).to_device(device);
        let (mut int_logits, mut fake_logits, mut actual) = (Vec::new(), Vec::new(), Vec::new());
        for batch in loader.iter().flatten() {
            let [n, t, _] = batch.frames.dims();
            let (frames, mask) = engine_frames(
                &host(batch.frames.clone()),
                &host(batch.mask.clone().float()),
                [n, t, self.dims],
                time,
            );
            int_logits.extend(engine_logits(engine, n, &[&frames, &mask])?);
            fake_logits.extend(host(net.forward(batch.frames, &batch.mask)));
            actual.extend(ints(batch.targets));
        }
        let width = self.classes.len();
        let predicted = argmax_rows(&int_logits, width);
        let parity = Parity::of_logits(&int_logits, &fake_logits, width);
        Ok((class_scores(&self.classes, &predicted, &actual), parity))
    }

    fn infer(
        artifact: &engine::Artifact,
        engine: &engine::Engine,
        input: &Path,
    ) -> Result<Vec<Prediction>, TrainerError> {
        let spec: SequenceInput =
            serde_json::from_value(artifact.meta["input"].clone()).map_err(|_| {
                TrainerError::Config {
                    origin: "artifact metadata".into(),
                    message: "`input` is missing or malformed".into(),
                }
            })?;
        let labels = artifact_labels(artifact)?;
        let file = read_ts(input)?;
        if file.dims != spec.dims {
            return Err(TrainerError::io(
                input,
                format!(
                    "has {} features per frame; the model takes {}",
                    file.dims, spec.dims
                ),
            ));
        }
        let mut predictions = Vec::with_capacity(file.sequences.len());
        for (start, chunk) in (0..).step_by(64).zip(file.sequences.chunks(64)) {
            let mut frames = vec![0f32; chunk.len() * spec.time * spec.dims];
            let mut mask = vec![0f32; chunk.len() * spec.time];
            for (i, sequence) in chunk.iter().enumerate() {
                if sequence.len > spec.time {
                    return Err(TrainerError::io(
                        input,
                        format!(
                            "sequence {} has {} frames; the model was exported for at most {}",
                            start + i + 1,
                            sequence.len,
                            spec.time
                        ),
                    ));
                }
                let at = i * spec.time * spec.dims;
                let out = &mut frames[at..at + sequence.frames.len()];
                out.copy_from_slice(&sequence.frames);
                normalize(out, &spec.normalization);
                mask[i * spec.time..i * spec.time + sequence.len].fill(1.0);
            }
            let logits = engine_logits(engine, chunk.len(), &[&frames, &mask])?;
            for (i, row) in logits.chunks_exact(labels.len().max(1)).enumerate() {
                let (best, confidence) = top_label(row);
                predictions.push(Prediction {
                    input: format!("sequence {}", start + i + 1),
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

/// How `infer` prepares raw sequences for an exported model: padded (and masked) to `time`
/// frames of `dims` features, each normalised as `(x − mean) / std`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SequenceInput {
    /// Frames the artifact takes.
    pub time: usize,
    /// Features per frame.
    pub dims: usize,
    /// Per-feature `(mean, std)` of the training frames.
    pub normalization: Vec<(f32, f32)>,
}

/// A batch's frames `[n, t, dims]` and mask `[n, t]` (row-major host copies) padded to the
/// artifact's `time` frames, as the engine's `frames` and `mask` inputs.
fn engine_frames(
    frames: &[f32],
    mask: &[f32],
    [n, t, dims]: [usize; 3],
    time: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (mut padded, mut padded_mask) = (vec![0f32; n * time * dims], vec![0f32; n * time]);
    for b in 0..n {
        padded[b * time * dims..(b * time + t) * dims]
            .copy_from_slice(&frames[b * t * dims..(b + 1) * t * dims]);
        padded_mask[b * time..b * time + t].copy_from_slice(&mask[b * t..(b + 1) * t]);
    }
    (padded, padded_mask)
}
