//! What the text tasks share: the checkpoint and its tokenizer, the batcher, the seed-fixed
//! split of a labelled file, and the BERT built from the checkpoint.

use std::path::Path;
use std::sync::Arc;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::data::dataset::InMemDataset;
use burn::module::Module;
use data::{Holdout, TextBatcher, TextTokenizer, TokenIds, holdout_split};
use models::{BertConfig, BertHeadConfig, BertInput, HfCheckpoint, Target};
use quant::QuantMapping;

use super::Part;
use crate::{DataConfig, ModelConfig, RunConfig, TrainerError};

/// A text task's checkpoint, tokenizer and batching.
#[derive(Debug, Clone)]
pub struct TextSetup {
    /// The pretrained checkpoint (its `config.json` shapes the model).
    pub checkpoint: HfCheckpoint,
    /// Its tokenizer, truncating at `data.max_length`.
    pub tokenizer: TextTokenizer,
    /// Pads batches.
    pub batcher: TextBatcher,
    /// The run's data section.
    pub data: DataConfig,
    /// Dropout before the classifier.
    pub classifier_dropout: Option<f64>,
    /// The run's model section.
    pub model: ModelConfig,
}

impl TextSetup {
    /// Opens the checkpoint of `config.model` and its tokenizer.
    pub fn new(config: &RunConfig) -> Result<Self, TrainerError> {
        let ModelConfig::Bert {
            checkpoint,
            classifier_dropout,
        } = &config.model
        else {
            return Err(TrainerError::Config {
                origin: "config".into(),
                message: "`model.kind`: text tasks need `bert`".into(),
            });
        };
        let checkpoint = HfCheckpoint::open(checkpoint)?;
        let tokenizer = TextTokenizer::from_dir(&checkpoint.dir, config.data.max_length)?;
        if tokenizer.vocab_size() > checkpoint.config.vocab_size {
            return Err(TrainerError::io(
                &tokenizer.source,
                format!(
                    "has {} tokens but the checkpoint's embedding table has {} rows",
                    tokenizer.vocab_size(),
                    checkpoint.config.vocab_size
                ),
            ));
        }
        let max_positions = checkpoint.config.max_position_embeddings;
        if config.data.max_length > max_positions {
            return Err(TrainerError::Config {
                origin: "config".into(),
                message: format!(
                    "`data.max_length`: {} is longer than the checkpoint's {max_positions} positions",
                    config.data.max_length
                ),
            });
        }
        Ok(TextSetup {
            batcher: TextBatcher {
                pad_id: tokenizer.pad_id,
                padding: config.data.padding,
                max_length: config.data.max_length,
            },
            tokenizer,
            checkpoint,
            data: config.data.clone(),
            classifier_dropout: *classifier_dropout,
            model: config.model.clone(),
        })
    }

    /// The labelled file.
    pub fn file(&self) -> &Path {
        self.data
            .file
            .as_deref()
            .expect("validated: text tasks have data.file")
    }

    /// Splits the items of the labelled file (and a separate test file's, if any) with `seed`.
    pub fn split<T>(&self, items: Vec<T>, test: Option<Vec<T>>, seed: u64) -> Holdout<T> {
        split_items(&self.data, items, test, seed)
    }

    /// A loader over `items`: shuffled with `shuffle`'s seed, else in order (one worker).
    pub fn loader<I, B>(&self, items: &[I], shuffle: Option<u64>) -> Arc<dyn DataLoader<B>>
    where
        I: Clone + Send + Sync + std::fmt::Debug + 'static,
        B: Clone + Send + std::fmt::Debug + 'static,
        TextBatcher: Batcher<I, B>,
    {
        items_loader(self.batcher.clone(), items, &self.data, shuffle)
    }

    /// The checkpoint's BERT shape with `mapping`'s quantizers.
    pub fn bert(&self, mapping: &QuantMapping) -> BertConfig {
        self.checkpoint.config.clone().with_mapping(mapping.clone())
    }

    /// Loads the pretrained checkpoint into a freshly built head model (float training's start).
    pub fn load_pretrained<M: Module>(&self, net: &mut M) -> Result<(), TrainerError> {
        let report = self.checkpoint.load_into(net, Target::Head)?;
        if report.new_head {
            println!(
                "[float] {}: pretrained encoder loaded ({} tensors); the classifier starts fresh",
                self.checkpoint.dir.display(),
                report.loaded
            );
        }
        Ok(())
    }

    /// The head for `num_labels` labels.
    pub fn head(&self, num_labels: usize) -> BertHeadConfig {
        BertHeadConfig::new(num_labels).with_classifier_dropout(self.classifier_dropout)
    }
}

/// Splits the items of a labelled file with `seed` as `data` says: with a separate test file's
/// `test` items, into train and `data.valid_fraction` validation only; otherwise also
/// `data.test_fraction` for testing.
pub fn split_items<T>(
    data: &DataConfig,
    items: Vec<T>,
    test: Option<Vec<T>>,
    seed: u64,
) -> Holdout<T> {
    match test {
        Some(test) => {
            let parts = holdout_split(items, 0.0, data.valid_fraction, seed);
            Holdout { test, ..parts }
        }
        None => holdout_split(items, data.test_fraction, data.valid_fraction, seed),
    }
}

/// A loader over in-memory `items` batched by `batcher` (`data.batch_size` a batch): shuffled
/// with `shuffle`'s seed on `data.num_workers` threads, else in order on one (several deliver
/// batches as they finish, and evaluation pairs predictions with items by position).
pub fn items_loader<I, B, T>(
    batcher: T,
    items: &[I],
    data: &DataConfig,
    shuffle: Option<u64>,
) -> Arc<dyn DataLoader<B>>
where
    I: Clone + Send + Sync + std::fmt::Debug + 'static,
    B: Clone + Send + std::fmt::Debug + 'static,
    T: Batcher<I, B> + 'static,
{
    let mut builder = DataLoaderBuilder::new(batcher)
        .batch_size(data.batch_size)
        .num_workers(1);
    if let Some(seed) = shuffle {
        builder = builder.shuffle(seed).num_workers(data.num_workers);
    }
    builder.build(InMemDataset::new(items.to_vec()))
}

/// The encoder's input for a batch's tokens.
pub fn bert_input(tokens: TokenIds) -> BertInput {
    BertInput {
        input_ids: tokens.input_ids,
        attention_mask: tokens.attention_mask,
        token_type_ids: None,
    }
}

/// Label names in a stable order: sorted, so the same data always gives the same indices.
pub fn label_names<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let set: std::collections::BTreeSet<&str> = labels.collect();
    set.into_iter().map(str::to_string).collect()
}

/// The items of one split.
pub fn part_of<T>(parts: &Holdout<T>, part: Part) -> &[T] {
    match part {
        Part::Train => &parts.train,
        Part::Valid => &parts.valid,
        Part::Test => &parts.test,
    }
}

/// `"{train} train / {valid} valid / {test} test {what}"`.
pub fn split_sizes<T>(parts: &Holdout<T>, what: &str) -> String {
    format!(
        "{} train / {} valid / {} test {what}",
        parts.train.len(),
        parts.valid.len(),
        parts.test.len()
    )
}
