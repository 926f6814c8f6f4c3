//! [`TokenTask`]: a tag per word (named-entity recognition) with BERT and a token-classification
//! head. Each word's label sits on its first sub-token; the other sub-tokens, the special tokens
//! and padding are ignored by the loss and the metrics. Entity-level F1 (seqeval strict) is the
//! headline, beside the per-type table and the token-level report.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::data::dataloader::DataLoader;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, ExecutionError, Int, Tensor};
use burn::train::SupervisedTraining;
use burn::train::metric::{Adaptor, ItemLazy, LossInput};
use data::{Holdout, IGNORED, TaggedSentence, TokenBatch, TokenItem, read_conll};
use models::BertForTokenClassification;
use quant::QuantMapping;

use super::{
    EntityF1Metric, Evaluation, Parity, Part, Prediction, TagsInput, Task, TaskNet, TextSetup,
    argmax_rows, artifact_labels, artifact_tokenizer, bert_input, engine_logits, engine_sequences,
    engine_tokens, host, label_names, part_of, scored_tags, split_sizes, top_label,
};
use crate::report::{ClassificationReport, EntityReport, TagScheme, detect_scheme};
use crate::{ModelConfig, RunConfig, TaskKind, Trainee, TrainerError};

/// Token classification on CoNLL files.
pub struct TokenTask {
    setup: TextSetup,
    parts: Holdout<TokenItem>,
    /// The sentences word by word, in the order of `parts`' items (what entities are scored
    /// against).
    sentences: Holdout<TaggedSentence>,
    tags: Vec<String>,
    scheme: TagScheme,
}

/// One step of a token classifier: the loss and what the metrics read.
#[derive(Debug, Clone)]
pub struct TokenOutput {
    /// Mean cross-entropy over scored tokens.
    pub loss: Tensor<1>,
    /// `[batch, seq, tags]`.
    pub logits: Tensor<3>,
    /// `[batch, seq]` true tags, [`IGNORED`] where not scored.
    pub labels: Tensor<2, Int>,
}

impl ItemLazy for TokenOutput {
    fn sync(self) -> Result<Self, ExecutionError> {
        self.loss.device().flush()?;
        Ok(TokenOutput {
            loss: self.loss.without_autodiff(),
            logits: self.logits.without_autodiff(),
            labels: self.labels.without_autodiff(),
        })
    }
}

impl Adaptor<LossInput> for TokenOutput {
    fn adapt(&self) -> LossInput {
        LossInput::new(self.loss.clone())
    }
}

impl Adaptor<TagsInput> for TokenOutput {
    fn adapt(&self) -> TagsInput {
        TagsInput {
            predicted: self.logits.clone().argmax(2).squeeze_dim::<2>(2),
            labels: self.labels.clone(),
        }
    }
}

/// `[batch · seq]`: 1 where a token is scored (a word's first sub-token), 0 where it is not
/// ([`IGNORED`]: later sub-tokens, special tokens, padding) — what the loss, and distillation's
/// soft-target term, average over.
fn scored_tokens(labels: Tensor<2, Int>) -> Tensor<1> {
    let [batch, seq] = labels.dims();
    labels.reshape([batch * seq]).greater_equal_elem(0).float()
}

/// Mean cross-entropy of `logits` `[batch, seq, tags]` over the tokens whose label is not
/// [`IGNORED`].
pub fn token_loss(logits: Tensor<3>, labels: Tensor<2, Int>) -> Tensor<1> {
    let [batch, seq, tags] = logits.dims();
    let n = batch * seq;
    let log_p = log_softmax(logits.reshape([n, tags]), 1);
    let scored = scored_tokens(labels.clone());
    let labels = labels.reshape([n]);
    let picked = log_p
        .gather(1, labels.clamp_min(0).reshape([n, 1]))
        .reshape([n]);
    let count = scored.clone().sum().clamp_min(1.0);
    (picked * scored).sum().neg().div(count)
}

impl TaskNet for BertForTokenClassification {
    type Batch = TokenBatch;
    type Output = TokenOutput;

    fn step(&self, batch: TokenBatch) -> TokenOutput {
        let logits = self.forward(bert_input(batch.tokens));
        TokenOutput {
            loss: token_loss(logits.clone(), batch.labels.clone()),
            logits,
            labels: batch.labels,
        }
    }

    fn calibration_step(&self, batch: TokenBatch) {
        let mask = batch.tokens.attention_mask.clone();
        quant::qat::counting_positions(&mask, || {
            let _ = self.step(batch);
        });
    }

    fn loss(output: &TokenOutput) -> Tensor<1> {
        output.loss.clone()
    }

    fn with_loss(output: TokenOutput, loss: Tensor<1>) -> TokenOutput {
        TokenOutput { loss, ..output }
    }

    fn scored_logits(output: &TokenOutput) -> (Tensor<2>, Option<Tensor<1>>) {
        let [batch, seq, tags] = output.logits.dims();
        (
            output.logits.clone().reshape([batch * seq, tags]),
            Some(scored_tokens(output.labels.clone())),
        )
    }

    fn without_autodiff(batch: TokenBatch) -> TokenBatch {
        TokenBatch {
            tokens: batch.tokens.without_autodiff(),
            labels: batch.labels.without_autodiff(),
        }
    }

    fn quantized(self, mapping: &QuantMapping) -> Result<Self, TrainerError> {
        Ok(BertForTokenClassification::quantized(self, mapping)?)
    }

    fn metrics(
        training: SupervisedTraining<Trainee<Self>>,
        labels: &[String],
    ) -> SupervisedTraining<Trainee<Self>> {
        let scheme = detect_scheme(labels);
        training
            .metric_train_numeric(EntityF1Metric::new(labels, scheme))
            .metric_valid_numeric(EntityF1Metric::new(labels, scheme))
    }
}

impl TokenTask {
    /// Reads, tokenizes and splits the CoNLL sentences of `config.data`.
    pub fn load(config: &RunConfig) -> Result<Self, TrainerError> {
        let setup = TextSetup::new(config)?;
        let sentences = read_conll(setup.file())?;
        let tags = label_names(
            sentences
                .iter()
                .flat_map(|s| s.tags.iter().map(String::as_str)),
        );
        let test = match &config.data.test_file {
            Some(path) => {
                let test = read_conll(path)?;
                for (i, sentence) in test.iter().enumerate() {
                    if let Some(tag) = sentence.tags.iter().find(|t| !tags.contains(t)) {
                        return Err(TrainerError::io(
                            path,
                            format!(
                                "sentence {} has tag `{tag}`, which never appears in the training file {} (tags there: {})",
                                i + 1,
                                setup.file().display(),
                                tags.join(", ")
                            ),
                        ));
                    }
                }
                Some(test)
            }
            None => None,
        };
        let encode =
            |sentence: TaggedSentence| -> Result<(TokenItem, TaggedSentence), TrainerError> {
                let encoded = setup.tokenizer.encode_words(&sentence.tokens)?;
                let labels = encoded
                    .word_starts
                    .iter()
                    .map(|w| match w {
                        Some(w) => tags
                            .iter()
                            .position(|t| *t == sentence.tags[*w])
                            .unwrap_or(0) as i64,
                        None => IGNORED,
                    })
                    .collect();
                let item = TokenItem {
                    ids: encoded.ids,
                    labels,
                    words: sentence.tokens.len(),
                };
                Ok((item, sentence))
            };
        let pairs = sentences
            .into_iter()
            .map(encode)
            .collect::<Result<Vec<_>, _>>()?;
        let test = test
            .map(|t| t.into_iter().map(encode).collect::<Result<Vec<_>, _>>())
            .transpose()?;
        let parts = setup.split(pairs, test, config.seed);
        let (train, train_sentences) = parts.train.into_iter().unzip();
        let (valid, valid_sentences) = parts.valid.into_iter().unzip();
        let (test, test_sentences) = parts.test.into_iter().unzip();
        Ok(TokenTask {
            scheme: detect_scheme(&tags),
            parts: Holdout { train, valid, test },
            sentences: Holdout {
                train: train_sentences,
                valid: valid_sentences,
                test: test_sentences,
            },
            tags,
            setup,
        })
    }

    fn items(&self, part: Part) -> &[TokenItem] {
        part_of(&self.parts, part)
    }

    /// The predicted tag of every word of `part`: the prediction on its first sub-token, `O` for
    /// words cut off by truncation; and the logits of every scored token, in order.
    fn predicted_tags(
        &self,
        net: &BertForTokenClassification,
        part: Part,
        device: &Device,
    ) -> (Vec<Vec<usize>>, Vec<f32>) {
        self.tags_by(part, device, |batch| {
            Ok(host(net.forward(bert_input(batch.tokens.clone()))))
        })
        .expect("the fake-quant model always predicts")
    }

    /// Predicted tags of every sentence of `part` (one per word), with `logits` giving a batch's
    /// `[batch, len, tags]` logits; also the logits of every scored token, in order.
    fn tags_by(
        &self,
        part: Part,
        device: &Device,
        mut logits: impl FnMut(&TokenBatch) -> Result<Vec<f32>, TrainerError>,
    ) -> Result<(Vec<Vec<usize>>, Vec<f32>), TrainerError> {
        let outside = self.tags.iter().position(|t| t == "O").unwrap_or(0);
        let loader = self.loader(part, None).to_device(device);
        let width = self.tags.len();
        let (mut out, mut scored) = (Vec::new(), Vec::new());
        for batch in loader.iter().flatten() {
            let [_, seq] = batch.labels.dims();
            let labels = batch
                .labels
                .clone()
                .into_data()
                .convert::<i64>()
                .try_into_vec::<i64>()
                .expect("int labels");
            let values = logits(&batch)?;
            let predicted: Vec<i64> = argmax_rows(&values, width)
                .into_iter()
                .map(|t| t as i64)
                .collect();
            for (token, &label) in labels.iter().enumerate() {
                if label != IGNORED {
                    scored.extend_from_slice(&values[token * width..(token + 1) * width]);
                }
            }
            for (_, words) in scored_tags(&labels, &predicted, seq) {
                out.push(words);
            }
        }
        let tags = out
            .into_iter()
            .zip(part_of(&self.sentences, part))
            .map(|(mut words, sentence)| {
                words.resize(sentence.tokens.len(), outside);
                words
            })
            .collect();
        Ok((tags, scored))
    }

    /// The entity-level evaluation of `predicted` tags against `part`'s sentences'.
    fn scores(&self, part: Part, predicted: &[Vec<usize>]) -> Evaluation {
        let truth: Vec<Vec<usize>> = part_of(&self.sentences, part)
            .iter()
            .map(|s| {
                s.tags
                    .iter()
                    .map(|t| self.tags.iter().position(|x| x == t).unwrap_or(0))
                    .collect()
            })
            .collect();
        let names = |seqs: &[Vec<usize>]| -> Vec<Vec<&str>> {
            seqs.iter()
                .map(|s| s.iter().map(|&t| self.tags[t].as_str()).collect())
                .collect()
        };
        let entities = EntityReport::new(&names(&truth), &names(predicted), self.scheme);
        let tag_names: Vec<&str> = self.tags.iter().map(String::as_str).collect();
        let tokens = ClassificationReport::new(&predicted.concat(), &truth.concat(), &tag_names);
        let metrics = BTreeMap::from([
            ("entity_precision".to_string(), entities.micro.precision),
            ("entity_recall".to_string(), entities.micro.recall),
            ("token_accuracy".to_string(), tokens.accuracy),
        ]);
        Evaluation {
            metric: "entity_f1",
            value: entities.micro.f1,
            metrics,
            text: format!(
                "entities ({:?}, strict):\n{}\ntokens (words):\n{}",
                self.scheme,
                entities.to_text(),
                tokens.to_text()
            ),
            json: serde_json::json!({ "entities": entities, "tokens": tokens }),
        }
    }
}

impl Task for TokenTask {
    type Net = BertForTokenClassification;

    fn kind(&self) -> TaskKind {
        TaskKind::TokenClassification
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} tags ({:?})",
            split_sizes(&self.parts, "sentences"),
            self.tags.len(),
            self.scheme
        )
    }

    fn labels(&self) -> &[String] {
        &self.tags
    }

    fn len(&self, part: Part) -> usize {
        self.items(part).len()
    }

    fn loader(&self, part: Part, shuffle: Option<u64>) -> Arc<dyn DataLoader<TokenBatch>> {
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
            .init_token(&self.setup.bert(mapping), device)?)
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
        let (tags, logits) = self.predicted_tags(net, part, device);
        (self.scores(part, &tags), logits)
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
        let (seq, _) = self.setup.export_shape();
        let width = self.tags.len();
        let (int_tags, int_scored) = self.tags_by(Part::Test, device, |batch| {
            let (ids, mask, n, len) = engine_tokens(&batch.tokens, seq);
            let logits = engine_logits(engine, n, &[&ids, &mask])?;
            // [batch, seq, tags] → the batch's own [batch, len, tags].
            Ok(logits
                .chunks(seq * width)
                .flat_map(|row| row[..len * width].to_vec())
                .collect())
        })?;
        let (_, fake_scored) = self.tags_by(Part::Test, device, |batch| {
            Ok(host(net.forward(bert_input(batch.tokens.clone()))))
        })?;
        let parity = Parity::of_logits(&int_scored, &fake_scored, width);
        Ok((self.scores(Part::Test, &int_tags), parity))
    }

    fn infer(
        artifact: &engine::Artifact,
        engine: &engine::Engine,
        input: &std::path::Path,
    ) -> Result<Vec<Prediction>, TrainerError> {
        let (spec, tokenizer) = artifact_tokenizer(artifact)?;
        let labels = artifact_labels(artifact)?;
        let sentences = conll_words(input)?;
        let mut predictions = Vec::new();
        for chunk in sentences.chunks(32) {
            let encoded = chunk
                .iter()
                .map(|words| tokenizer.encode_words(words))
                .collect::<Result<Vec<_>, _>>()?;
            let ids: Vec<Vec<u32>> = encoded.iter().map(|e| e.ids.clone()).collect();
            let (x, mask) = engine_sequences(&ids, spec.seq, spec.pad_id);
            let logits = engine_logits(engine, chunk.len(), &[&x, &mask])?;
            let width = labels.len();
            for (b, (words, e)) in chunk.iter().zip(&encoded).enumerate() {
                let mut tags = vec![None; words.len()];
                for (t, start) in e.word_starts.iter().enumerate() {
                    if let Some(w) = start {
                        tags[*w] = Some(top_label(&logits[(b * spec.seq + t) * width..][..width]));
                    }
                }
                for (word, tag) in words.iter().zip(tags) {
                    // Words cut off by truncation get no prediction: say so.
                    let (label, confidence) = match tag {
                        Some((best, confidence)) => (labels[best].clone(), confidence),
                        None => ("(truncated)".to_string(), 0.0),
                    };
                    predictions.push(Prediction {
                        input: word.clone(),
                        label,
                        confidence,
                    });
                }
            }
        }
        Ok(predictions)
    }
}

/// The words of a CoNLL-style file (first column; blank lines end sentences; `-DOCSTART-`
/// lines skipped), tags or not.
fn conll_words(path: &std::path::Path) -> Result<Vec<Vec<String>>, TrainerError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainerError::io(path, e))?;
    let mut sentences = vec![Vec::new()];
    for line in text.lines() {
        match line.split_whitespace().next() {
            None => sentences.push(Vec::new()),
            Some(word) if word.starts_with("-DOCSTART-") => {}
            Some(word) => sentences
                .last_mut()
                .expect("non-empty")
                .push(word.to_string()),
        }
    }
    sentences.retain(|s| !s.is_empty());
    if sentences.is_empty() {
        return Err(TrainerError::io(path, "holds no words"));
    }
    Ok(sentences)
}
