//! [`SentenceTask`]: sentences to classes (sentiment) with BERT and a sequence-classification
//! head; accuracy headline, with precision, recall and F1.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::Device;
use burn::train::ClassificationOutput;
use data::{Holdout, SentenceItem, TextBatch, read_sentences};
use models::BertForSequenceClassification;
use quant::QuantMapping;

use super::{
    Evaluation, Parity, Part, Prediction, Task, TaskNet, TextSetup, argmax_rows, artifact_labels,
    artifact_tokenizer, bert_input, classification_evaluation, classification_output,
    engine_logits, engine_sequences, engine_tokens, host, ints, label_names, part_of, predictions,
    split_sizes, text_lines, top_label,
};
use crate::report::ClassificationReport;
use crate::{ModelConfig, RunConfig, TaskKind, TrainerError};

/// Sentence classification on a CSV/TSV file.
pub struct SentenceTask {
    setup: TextSetup,
    parts: Holdout<SentenceItem>,
    classes: Vec<String>,
}

impl SentenceTask {
    /// Reads, tokenizes and splits the labelled sentences of `config.data`.
    pub fn load(config: &RunConfig) -> Result<Self, TrainerError> {
        let setup = TextSetup::new(config)?;
        let format = config
            .data
            .format
            .as_ref()
            .expect("validated: sentence tasks have data.format");
        let sentences = read_sentences(setup.file(), format)?;
        let test = match &config.data.test_file {
            Some(path) => Some(read_sentences(path, format)?),
            None => None,
        };
        let classes = label_names(sentences.iter().map(|s| s.label.as_str()));
        let encode = |list: Vec<data::LabeledSentence>, file: &std::path::Path| {
            list.into_iter()
                .map(|s| {
                    let label = classes.iter().position(|c| *c == s.label).ok_or_else(|| {
                        TrainerError::io(
                            file,
                            format!(
                                "label `{}` never appears in the training file (labels there: {})",
                                s.label,
                                classes.join(", ")
                            ),
                        )
                    })?;
                    Ok(SentenceItem {
                        ids: setup.tokenizer.encode(&s.text)?.ids,
                        label,
                    })
                })
                .collect::<Result<Vec<_>, TrainerError>>()
        };
        let items = encode(sentences, setup.file())?;
        let test = match (test, &config.data.test_file) {
            (Some(list), Some(path)) => Some(encode(list, path)?),
            _ => None,
        };
        let parts = setup.split(items, test, config.seed);
        Ok(SentenceTask {
            setup,
            parts,
            classes,
        })
    }

    fn items(&self, part: Part) -> &[SentenceItem] {
        part_of(&self.parts, part)
    }
}

impl TaskNet for BertForSequenceClassification {
    type Batch = TextBatch;
    type Output = ClassificationOutput;

    super::classifier_outputs!();

    fn step(&self, batch: TextBatch) -> ClassificationOutput {
        let logits = self.forward(bert_input(batch.tokens));
        classification_output(logits, batch.targets)
    }

    fn calibration_step(&self, batch: TextBatch) {
        let mask = batch.tokens.attention_mask.clone();
        quant::qat::counting_positions(&mask, || {
            let _ = self.step(batch);
        });
    }

    fn without_autodiff(batch: TextBatch) -> TextBatch {
        TextBatch {
            tokens: batch.tokens.without_autodiff(),
            targets: batch.targets.without_autodiff(),
        }
    }

    fn quantized(self, mapping: &QuantMapping) -> Result<Self, TrainerError> {
        Ok(BertForSequenceClassification::quantized(self, mapping)?)
    }
}

impl Task for SentenceTask {
    type Net = BertForSequenceClassification;

    fn kind(&self) -> TaskKind {
        TaskKind::SentenceClassification
    }

    fn describe(&self) -> String {
        format!(
            "{}, classes {}",
            split_sizes(&self.parts, "sentences"),
            self.classes.join(", ")
        )
    }

    fn labels(&self) -> &[String] {
        &self.classes
    }

    fn len(&self, part: Part) -> usize {
        self.items(part).len()
    }

    fn loader(&self, part: Part, shuffle: Option<u64>) -> Arc<dyn DataLoader<TextBatch>> {
        self.setup.loader(self.items(part), shuffle)
    }

    fn build(
        &self,
        _model: &ModelConfig,
        num_labels: usize,
        mapping: &QuantMapping,
        device: &Device,
    ) -> Result<Self::Net, TrainerError> {
        Ok(self
            .setup
            .head(num_labels)
            .init_sequence(&self.setup.bert(mapping), device)?)
    }

    fn initial(&self, device: &Device) -> Result<Self::Net, TrainerError> {
        let labels = self.labels().len();
        let mut net = self.build(&self.setup.model, labels, &QuantMapping::new(), device)?;
        self.setup.load_pretrained(&mut net)?;
        Ok(net)
    }

    fn evaluate_with_logits(
        &self,
        net: &Self::Net,
        part: Part,
        device: &Device,
    ) -> (Evaluation, Vec<f32>) {
        let loader = self.loader(part, None).to_device(device);
        let (predicted, actual, logits) = predictions(loader, |batch| {
            (net.forward(bert_input(batch.tokens)), batch.targets)
        });
        (self.scores(&predicted, &actual), logits)
    }

    fn export(
        &self,
        net: &Self::Net,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<engine::Artifact, TrainerError> {
        self.setup.export(net, meta)
    }

    fn evaluate_engine(
        &self,
        engine: &engine::Engine,
        net: &Self::Net,
        device: &Device,
    ) -> Result<(Evaluation, Parity), TrainerError> {
        let loader = self.loader(Part::Test, None).to_device(device);
        let (seq, _) = self.setup.export_shape();
        let (mut int_logits, mut fake_logits, mut actual) = (Vec::new(), Vec::new(), Vec::new());
        for batch in loader.iter().flatten() {
            let (ids, mask, n, _) = engine_tokens(&batch.tokens, seq);
            int_logits.extend(engine_logits(engine, n, &[&ids, &mask])?);
            fake_logits.extend(host(net.forward(bert_input(batch.tokens))));
            actual.extend(ints(batch.targets));
        }
        let width = self.classes.len();
        let predicted = argmax_rows(&int_logits, width);
        let parity = Parity::of_logits(&int_logits, &fake_logits, width);
        Ok((self.scores(&predicted, &actual), parity))
    }

    fn infer(
        artifact: &engine::Artifact,
        engine: &engine::Engine,
        input: &std::path::Path,
    ) -> Result<Vec<Prediction>, TrainerError> {
        let (spec, tokenizer) = artifact_tokenizer(artifact)?;
        let labels = artifact_labels(artifact)?;
        let lines = text_lines(input)?;
        let mut predictions = Vec::with_capacity(lines.len());
        for chunk in lines.chunks(32) {
            let sequences = chunk
                .iter()
                .map(|l| tokenizer.encode(l).map(|e| e.ids))
                .collect::<Result<Vec<_>, _>>()?;
            let (ids, mask) = engine_sequences(&sequences, spec.seq, spec.pad_id);
            let logits = engine_logits(engine, chunk.len(), &[&ids, &mask])?;
            for (line, row) in chunk.iter().zip(logits.chunks_exact(labels.len().max(1))) {
                let (best, confidence) = top_label(row);
                predictions.push(Prediction {
                    input: line.clone(),
                    label: labels[best].clone(),
                    confidence,
                });
            }
        }
        Ok(predictions)
    }
}

impl SentenceTask {
    /// The report of `predicted` against `actual` classes (see [`class_scores`]).
    fn scores(&self, predicted: &[usize], actual: &[usize]) -> Evaluation {
        class_scores(&self.classes, predicted, actual)
    }
}

/// The report of `predicted` against `actual` classes named `classes`: accuracy as headline, and
/// precision, recall and F1 — of the `positive` class in binary sentiment, the macro averages
/// otherwise.
pub fn class_scores(classes: &[String], predicted: &[usize], actual: &[usize]) -> Evaluation {
    let names: Vec<&str> = classes.iter().map(String::as_str).collect();
    let report = ClassificationReport::new(predicted, actual, &names);
    let scores = report
        .classes
        .iter()
        .find(|c| c.label == "positive" && report.classes.len() == 2)
        .unwrap_or(&report.macro_avg)
        .clone();
    let extra = BTreeMap::from([
        ("precision".to_string(), scores.precision),
        ("recall".to_string(), scores.recall),
        ("f1".to_string(), scores.f1),
    ]);
    classification_evaluation(report, extra)
}
