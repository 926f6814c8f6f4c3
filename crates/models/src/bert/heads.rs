//! Task heads on a [`Bert`]: sentence classification (on the pooled `[CLS]` state) and token
//! classification (on every token's state), named as Hugging Face's
//! `BertForSequenceClassification` / `BertForTokenClassification` so fine-tuned checkpoints load.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor};
use quant::{QuantError, QuantLinear, QuantMapping};

use crate::kernels;

use super::attention::{linear, quantized_linear};
use super::{Bert, BertConfig, BertError, BertInput};

/// Which head, and how many labels it predicts.
#[derive(Config, Debug, PartialEq)]
pub struct BertHeadConfig {
    /// Number of labels (classes, or tags).
    pub num_labels: usize,
    /// Dropout before the classifier (`None`: the encoder's `hidden_dropout_prob`).
    pub classifier_dropout: Option<f64>,
}

/// A BERT with a linear classifier on the pooled `[CLS]` state: logits `[batch, num_labels]`.
///
/// Parameter paths: `bert.*`, `classifier.{weight,bias}`. The classifier reads the pooler's
/// quantized output; its logits are dequantized accumulators (no output quantizer).
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    /// The encoder, with its pooler.
    pub bert: Bert,
    /// `hidden → num_labels`.
    pub classifier: QuantLinear,
    dropout: Dropout,
}

/// A BERT with a linear classifier on every token: logits `[batch, seq, num_labels]`.
///
/// Parameter paths: `bert.*` (no pooler), `classifier.{weight,bias}`. The classifier reads the
/// last layer's quantized output.
#[derive(Module, Debug)]
pub struct BertForTokenClassification {
    /// The encoder, without a pooler.
    pub bert: Bert,
    /// `hidden → num_labels`.
    pub classifier: QuantLinear,
    dropout: Dropout,
}

fn check_labels(head: &BertHeadConfig) -> Result<(), BertError> {
    if head.num_labels == 0 {
        return Err(BertError::field("num_labels", "must be at least 1"));
    }
    if let Some(p) = head.classifier_dropout
        && !(0.0..1.0).contains(&p)
    {
        return Err(BertError::field(
            "classifier_dropout",
            format!("{p} is not in [0, 1)"),
        ));
    }
    Ok(())
}

/// The float encoder of `config` (with a pooler if `pooler`) and the head's float classifier.
fn float_parts(
    config: &BertConfig,
    head: &BertHeadConfig,
    pooler: bool,
    device: &Device,
) -> Result<(Bert, QuantLinear, Dropout), BertError> {
    check_labels(head)?;
    let bert = BertConfig {
        mapping: QuantMapping::new(),
        ..config.clone()
    }
    .try_init(pooler, device)?;
    let classifier = linear(config.hidden_size, head.num_labels, device);
    Ok((bert, classifier, dropout(config, head)))
}

fn dropout(config: &BertConfig, head: &BertHeadConfig) -> Dropout {
    DropoutConfig::new(
        head.classifier_dropout
            .unwrap_or(config.hidden_dropout_prob),
    )
    .init()
}

/// The classifier with `mapping`'s weight quantizer (`classifier.weight`), without an output
/// quantizer: logits are read as accumulators.
fn quantized_classifier(
    layer: QuantLinear,
    mapping: &QuantMapping,
) -> Result<QuantLinear, QuantError> {
    quantized_linear(layer, mapping, "classifier", false)
}

impl BertHeadConfig {
    /// Builds a sentence classifier on `config` (its mapping quantizes encoder and head).
    pub fn init_sequence(
        &self,
        config: &BertConfig,
        device: &Device,
    ) -> Result<BertForSequenceClassification, BertError> {
        let (bert, classifier, dropout) = float_parts(config, self, true, device)?;
        let float = BertForSequenceClassification {
            bert,
            classifier,
            dropout,
        };
        Ok(float.quantized(&config.mapping)?)
    }

    /// Builds a token classifier on `config` (its mapping quantizes encoder and head).
    pub fn init_token(
        &self,
        config: &BertConfig,
        device: &Device,
    ) -> Result<BertForTokenClassification, BertError> {
        let (bert, classifier, dropout) = float_parts(config, self, false, device)?;
        let float = BertForTokenClassification {
            bert,
            classifier,
            dropout,
        };
        Ok(float.quantized(&config.mapping)?)
    }
}

impl BertForSequenceClassification {
    /// The model with `mapping`'s quantizers (replacing any it had), weights kept.
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        Ok(BertForSequenceClassification {
            bert: self.bert.quantized(mapping, "bert")?,
            classifier: quantized_classifier(self.classifier, mapping)?,
            dropout: self.dropout,
        })
    }

    /// Logits `[batch, num_labels]`.
    pub fn forward(&self, input: BertInput) -> Tensor<2> {
        let pooled = self
            .bert
            .forward(input)
            .pooled
            .expect("a sequence classifier's encoder has a pooler");
        let producer = self
            .bert
            .pooler
            .as_ref()
            .and_then(|p| p.output_quant.quant.as_ref());
        self.classifier
            .forward_from(kernels::dropout(&self.dropout, pooled), producer)
    }
}

impl BertForTokenClassification {
    /// The model with `mapping`'s quantizers (replacing any it had), weights kept.
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        Ok(BertForTokenClassification {
            bert: self.bert.quantized(mapping, "bert")?,
            classifier: quantized_classifier(self.classifier, mapping)?,
            dropout: self.dropout,
        })
    }

    /// Logits `[batch, seq, num_labels]`.
    pub fn forward(&self, input: BertInput) -> Tensor<3> {
        let hidden = self.bert.forward(input).hidden_quantized;
        self.classifier.forward_from(
            kernels::dropout(&self.dropout, hidden),
            self.bert.last_quantizer(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{calibrated, calibrated_trace, mean_relative_gap};
    use burn::tensor::{Bool, Distribution, Int, TensorData};

    fn tiny(mapping: QuantMapping) -> BertConfig {
        BertConfig::new(50, 32, 2, 4, 64, 16).with_mapping(mapping)
    }

    fn batch(device: &Device) -> BertInput {
        let ids = Tensor::<2, Int>::random([3, 9], Distribution::Uniform(1.0, 49.0), device);
        // The last sequence is padded after 5 tokens.
        let mask: Vec<bool> = (0..27).map(|i| i < 22 || i % 9 < 5).collect();
        BertInput {
            input_ids: ids,
            attention_mask: Tensor::<2, Bool>::from_data(TensorData::new(mask, [3, 9]), device),
            token_type_ids: None,
        }
    }

    /// A bypassed quantizer is the identity, exactly; calibrated W8A8 stays within 5% of the
    /// float logits. The tiny models are random (Flex's generator is shared by the tests running
    /// beside this one, so a seed would not pin them): the gap is the median over five models,
    /// since one draw in about thirty has logits so small that the relative gap passes 5%
    /// (0.003–0.03 typically; 0.065 once in CI).
    #[test]
    fn bypassed_quantizers_give_the_float_model_and_w8a8_stays_close_to_it() {
        let device = Device::flex();
        let input = batch(&device);
        let mut gaps: Vec<f32> = (0..5)
            .map(|_| {
                let float = BertHeadConfig::new(3)
                    .init_sequence(&tiny(QuantMapping::new()), &device)
                    .unwrap();
                let expected = float.forward(input.clone());
                let qat = float.clone().quantized(&QuantMapping::w8a8()).unwrap();
                let bypassed = quant::control::set_fake_quant(qat.clone(), false);
                assert_eq!(
                    bypassed.forward(input.clone()).into_data(),
                    expected.clone().into_data()
                );
                let qat = calibrated(qat, &input, |m, x| {
                    m.forward(x);
                });
                let logits = qat.forward(input.clone());
                let values = logits.clone().into_data().try_to_vec::<f32>().unwrap();
                assert!(values.iter().all(|v| v.is_finite()));
                mean_relative_gap(expected, logits)
            })
            .collect();
        gaps.sort_by(f32::total_cmp);
        assert!(
            gaps[2] < 0.05,
            "W8A8 logits differ from float by a median {:.3} ({gaps:?})",
            gaps[2]
        );
    }

    #[test]
    fn padding_does_not_change_the_real_tokens() {
        let device = Device::flex();
        let model = BertHeadConfig::new(4)
            .init_token(&tiny(QuantMapping::new()), &device)
            .unwrap();
        let input = batch(&device);
        let full = model.forward(input.clone());
        // The padded sequence alone, cut to its 5 real tokens.
        let short = BertInput {
            input_ids: input.input_ids.narrow(0, 2, 1).narrow(1, 0, 5),
            attention_mask: input.attention_mask.narrow(0, 2, 1).narrow(1, 0, 5),
            token_type_ids: None,
        };
        let alone = model.forward(short);
        full.narrow(0, 2, 1)
            .narrow(1, 0, 5)
            .into_data()
            .assert_approx_eq::<f32>(&alone.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn every_matmul_reads_integer_codes() {
        let device = Device::flex();
        for mapping in [QuantMapping::w8a8(), QuantMapping::w4a8()] {
            let model = BertHeadConfig::new(3)
                .init_sequence(&tiny(mapping), &device)
                .unwrap();
            let report = calibrated_trace(model, &batch(&device), |m, x| m.forward(x));
            assert!(report.is_integer_program(), "{:#?}", report.violations);
            // Per layer: Q, K, V, probs, context, attention output, GELU output, layer output;
            // plus the embeddings' output and the pooler's.
            assert_eq!(report.quantizers, 2 * 8 + 2);
            // Per layer: 6 Linear layers and 4 matmul operands; pooler and classifier.
            assert_eq!(report.integer_ops, 2 * 10 + 2);
        }
    }
}
