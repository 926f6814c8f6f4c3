//! [`EntityF1Metric`]: entity-level F1 (seqeval strict) of token classification, live in
//! burn-train's dashboard and logs, from the tags of each sentence's scored tokens.

use std::sync::Arc;

use burn::tensor::{Int, Tensor, TensorReadError};
use burn::train::metric::{
    Metric, MetricAttributes, MetricMetadata, MetricName, Numeric, NumericAttributes, NumericEntry,
    SerializedEntry,
};
use data::IGNORED;

use crate::report::{EntityReport, TagScheme};

/// Predicted and true tags of a batch (what the metric reads).
pub struct TagsInput {
    /// `[batch, seq]` predicted tag indices.
    pub predicted: Tensor<2, Int>,
    /// `[batch, seq]` true tag indices, [`IGNORED`] where a token is not scored.
    pub labels: Tensor<2, Int>,
}

/// Entity-level F1 over the sentences of the current epoch (running value on every batch,
/// the epoch's value at its end), in percent.
#[derive(Clone)]
pub struct EntityF1Metric {
    name: MetricName,
    tags: Arc<Vec<String>>,
    scheme: TagScheme,
    truth: Vec<Vec<usize>>,
    predicted: Vec<Vec<usize>>,
    last: f64,
}

impl EntityF1Metric {
    /// A metric for tags `tags` (index order) in `scheme`.
    pub fn new(tags: &[String], scheme: TagScheme) -> Self {
        EntityF1Metric {
            name: Arc::new("Entity F1".to_string()),
            tags: Arc::new(tags.to_vec()),
            scheme,
            truth: Vec::new(),
            predicted: Vec::new(),
            last: 0.0,
        }
    }

    fn f1(&self) -> f64 {
        let names = |seqs: &[Vec<usize>]| -> Vec<Vec<&str>> {
            seqs.iter()
                .map(|s| s.iter().map(|&t| self.tags[t].as_str()).collect())
                .collect()
        };
        let report = EntityReport::new(&names(&self.truth), &names(&self.predicted), self.scheme);
        100.0 * report.micro.f1
    }
}

/// Per sentence, the (true, predicted) tags of its scored tokens.
pub fn scored_tags(labels: &[i64], predicted: &[i64], seq: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    labels
        .chunks(seq)
        .zip(predicted.chunks(seq))
        .map(|(l, p)| {
            l.iter()
                .zip(p)
                .filter(|(l, _)| **l != IGNORED)
                .map(|(&l, &p)| (l as usize, p as usize))
                .unzip()
        })
        .collect()
}

impl Metric for EntityF1Metric {
    type Input = TagsInput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes {
            unit: Some("%".into()),
            higher_is_better: true,
        }
        .into()
    }

    fn update(
        &mut self,
        item: &TagsInput,
        _metadata: &MetricMetadata,
    ) -> Result<SerializedEntry, TensorReadError> {
        let [_, seq] = item.labels.dims();
        let labels = item
            .labels
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()?;
        let predicted = item
            .predicted
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()?;
        for (truth, predicted) in scored_tags(&labels, &predicted, seq) {
            self.truth.push(truth);
            self.predicted.push(predicted);
        }
        self.last = self.f1();
        Ok(SerializedEntry::new(
            format!("{:.2} %", self.last),
            NumericEntry::Value(self.last).serialize(),
        ))
    }

    fn compute(&mut self) -> Result<SerializedEntry, TensorReadError> {
        self.last = self.f1();
        Ok(SerializedEntry::new(
            format!("epoch {:.2} %", self.last),
            NumericEntry::Final(self.last).serialize(),
        ))
    }

    fn clear(&mut self) {
        self.truth.clear();
        self.predicted.clear();
    }
}

impl Numeric for EntityF1Metric {
    fn value(&self) -> Option<NumericEntry> {
        Some(NumericEntry::Value(self.last))
    }

    fn running_value(&self) -> Option<NumericEntry> {
        Some(NumericEntry::Value(self.last))
    }

    fn final_value(&self) -> NumericEntry {
        NumericEntry::Final(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scored_tags_skip_ignored_tokens_sentence_by_sentence() {
        let labels = [IGNORED, 1, 2, IGNORED, IGNORED, 0, IGNORED, IGNORED];
        let predicted = [0, 1, 0, 2, 0, 0, 1, 1];
        let rows = scored_tags(&labels, &predicted, 4);
        assert_eq!(rows, vec![(vec![1, 2], vec![1, 0]), (vec![0], vec![0])]);
    }
}
