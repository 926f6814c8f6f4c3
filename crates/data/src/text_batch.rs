//! Batches of tokenized text: sentences with a class ([`TextBatch`]) and sentences with a label
//! per token ([`TokenBatch`]), padded as the run says.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::Padding;

/// A tokenized sentence and its class.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceItem {
    /// Token ids (`[CLS] … [SEP]`).
    pub ids: Vec<u32>,
    /// Class index.
    pub label: usize,
}

/// Label of a token that is not scored: a word's later sub-tokens and the special tokens.
pub const IGNORED: i64 = -1;

/// A tokenized sentence with a label per token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenItem {
    /// Token ids (`[CLS] … [SEP]`).
    pub ids: Vec<u32>,
    /// Per token: the tag index on a word's first sub-token, [`IGNORED`] elsewhere.
    pub labels: Vec<i64>,
    /// Words of the sentence (words cut by truncation have no labelled token).
    pub words: usize,
}

/// Token ids and padding mask of a batch.
#[derive(Clone, Debug)]
pub struct TokenIds {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]`: `true` on real tokens, `false` on padding.
    pub attention_mask: Tensor<2, Bool>,
}

impl TokenIds {
    /// The same ids and mask on their device's inner backend (a frozen teacher's input).
    pub fn without_autodiff(self) -> Self {
        TokenIds {
            input_ids: self.input_ids.without_autodiff(),
            attention_mask: self.attention_mask.without_autodiff(),
        }
    }
}

/// A batch of sentences and their classes.
#[derive(Clone, Debug)]
pub struct TextBatch {
    /// The tokens.
    pub tokens: TokenIds,
    /// `[batch]` class indices.
    pub targets: Tensor<1, Int>,
}

/// A batch of sentences with a label per token.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    /// The tokens.
    pub tokens: TokenIds,
    /// `[batch, seq]` tag indices, [`IGNORED`] where a token is not scored (and on padding).
    pub labels: Tensor<2, Int>,
}

/// Pads token sequences into batches.
#[derive(Clone, Debug)]
pub struct TextBatcher {
    /// Id of the padding token.
    pub pad_id: u32,
    /// Pad to the batch's longest sequence or to `max_length`.
    pub padding: Padding,
    /// Longest sequence (the tokenizer truncates to it).
    pub max_length: usize,
}

impl TextBatcher {
    fn width(&self, lengths: impl Iterator<Item = usize>) -> usize {
        match self.padding {
            Padding::Fixed => self.max_length,
            Padding::Longest => lengths.max().unwrap_or(1).max(1),
        }
    }

    /// Pads `rows` (each at most `width` long) with `fill` into a row-major `[rows, width]` vector.
    fn pad<T: Copy>(rows: &[&[T]], width: usize, fill: T) -> Vec<T> {
        let mut out = Vec::with_capacity(rows.len() * width);
        for row in rows {
            let row = &row[..row.len().min(width)];
            out.extend_from_slice(row);
            out.extend(std::iter::repeat_n(fill, width - row.len()));
        }
        out
    }

    fn ids(&self, rows: &[&[u32]], width: usize, device: &Device) -> TokenIds {
        let batch = rows.len();
        let ids: Vec<i64> = Self::pad(rows, width, self.pad_id)
            .into_iter()
            .map(i64::from)
            .collect();
        let mask: Vec<bool> = rows
            .iter()
            .flat_map(|r| (0..width).map(move |i| i < r.len()))
            .collect();
        TokenIds {
            input_ids: Tensor::from_data(TensorData::new(ids, [batch, width]), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, [batch, width]), device),
        }
    }
}

impl Batcher<SentenceItem, TextBatch> for TextBatcher {
    fn batch(&self, items: Vec<SentenceItem>, device: &Device) -> TextBatch {
        let rows: Vec<&[u32]> = items.iter().map(|i| i.ids.as_slice()).collect();
        let width = self.width(rows.iter().map(|r| r.len()));
        let targets: Vec<i64> = items.iter().map(|i| i.label as i64).collect();
        TextBatch {
            tokens: self.ids(&rows, width, device),
            targets: Tensor::from_data(TensorData::new(targets, [items.len()]), device),
        }
    }
}

impl Batcher<TokenItem, TokenBatch> for TextBatcher {
    fn batch(&self, items: Vec<TokenItem>, device: &Device) -> TokenBatch {
        let rows: Vec<&[u32]> = items.iter().map(|i| i.ids.as_slice()).collect();
        let width = self.width(rows.iter().map(|r| r.len()));
        let labels: Vec<&[i64]> = items.iter().map(|i| i.labels.as_slice()).collect();
        let labels = Self::pad(&labels, width, IGNORED);
        TokenBatch {
            tokens: self.ids(&rows, width, device),
            labels: Tensor::from_data(TensorData::new(labels, [items.len(), width]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_pad_to_the_longest_or_to_max_length() {
        let device = Device::flex();
        let items = vec![
            TokenItem {
                ids: vec![2, 5, 3],
                labels: vec![IGNORED, 1, IGNORED],
                words: 1,
            },
            TokenItem {
                ids: vec![2, 5, 6, 7, 3],
                labels: vec![IGNORED, 0, 2, IGNORED, IGNORED],
                words: 2,
            },
        ];
        let mut batcher = TextBatcher {
            pad_id: 0,
            padding: Padding::Longest,
            max_length: 8,
        };
        let batch: TokenBatch = batcher.batch(items.clone(), &device);
        assert_eq!(batch.tokens.input_ids.dims(), [2, 5]);
        let ids = batch
            .tokens
            .input_ids
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap();
        assert_eq!(ids, vec![2, 5, 3, 0, 0, 2, 5, 6, 7, 3]);
        let mask = batch
            .tokens
            .attention_mask
            .into_data()
            .try_into_vec::<bool>()
            .unwrap();
        assert_eq!(&mask[..5], &[true, true, true, false, false]);
        let labels = batch
            .labels
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap();
        assert_eq!(&labels[..5], &[IGNORED, 1, IGNORED, IGNORED, IGNORED]);
        batcher.padding = Padding::Fixed;
        let batch: TokenBatch = batcher.batch(items, &device);
        assert_eq!(batch.tokens.input_ids.dims(), [2, 8]);
    }
}
