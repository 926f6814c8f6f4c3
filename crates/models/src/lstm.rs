//! [`LstmClassifier`]: stacked LSTM layers over frames of features, a class per sequence.
//!
//! `input_quant` (the frames) → `lstm.0` → … → `lstm.{n-1}` → the last layer's hidden state at
//! each sequence's last real frame → `head` (Linear), whose logits are the dequantized int32
//! accumulators. Every LSTM layer is a [`quant::QuantLstm`], quantized gate by gate; each reads
//! the previous layer's `output_quant` grid.

use burn::config::Config;
use burn::module::Module;
use burn::tensor::{Bool, Device, Tensor};
use quant::{
    LayerKind, QuantError, QuantLinear, QuantLinearConfig, QuantLstm, QuantLstmConfig,
    QuantMapping, QuantStub, QuantStubConfig, Quantizer,
};

/// Configuration of an [`LstmClassifier`].
#[derive(Config, Debug)]
pub struct LstmClassifierConfig {
    /// Features per frame.
    pub d_input: usize,
    /// Hidden state size of every layer.
    #[config(default = 64)]
    pub d_hidden: usize,
    /// Stacked LSTM layers.
    #[config(default = 1)]
    pub layers: usize,
    /// Number of classes.
    pub num_classes: usize,
    /// The quantizers, by path (empty: the float model).
    #[config(default = "QuantMapping::new()")]
    pub mapping: QuantMapping,
}

/// Stacked LSTMs and a linear classifier; inputs `[batch, time, d_input]` with a `[batch, time]`
/// mask of the real frames, outputs logits `[batch, num_classes]`.
#[derive(Module, Debug)]
pub struct LstmClassifier {
    /// Quantizer of the input frames.
    pub input_quant: QuantStub,
    /// The LSTM layers, first to last.
    pub lstm: Vec<QuantLstm>,
    /// Classifier over the last layer's final hidden state.
    pub head: QuantLinear,
}

impl LstmClassifierConfig {
    /// Builds the model with the quantizers of its mapping, naming an invalid one by path.
    pub fn try_init(&self, device: &Device) -> Result<LstmClassifier, QuantError> {
        if self.layers == 0 || self.d_hidden == 0 {
            return Err(QuantError::field(
                if self.layers == 0 {
                    "layers"
                } else {
                    "d_hidden"
                },
                "must be at least 1",
            ));
        }
        let float = LstmClassifier {
            input_quant: QuantStubConfig::new(self.d_input).init(device),
            lstm: (0..self.layers)
                .map(|i| {
                    let d_input = if i == 0 { self.d_input } else { self.d_hidden };
                    QuantLstmConfig::new(d_input, self.d_hidden).init(device)
                })
                .collect(),
            head: QuantLinearConfig::new(self.d_hidden, self.num_classes).init(device),
        };
        float.quantized(&self.mapping)
    }

    /// Builds the model.
    ///
    /// # Panics
    /// If the mapping is invalid for this model (see [`Self::try_init`]).
    pub fn init(&self, device: &Device) -> LstmClassifier {
        self.try_init(device)
            .unwrap_or_else(|e| panic!("LstmClassifierConfig: {e}"))
    }
}

impl LstmClassifier {
    /// Gives the model `mapping`'s quantizers (replacing any it had), weights kept.
    pub fn quantized(self, mapping: &QuantMapping) -> Result<Self, QuantError> {
        mapping.validate()?;
        let d_input = self.lstm[0].input_transform.weight.lazy_shape().dims::<2>()[0];
        let input = mapping
            .activation_for("input_quant.quant", LayerKind::Activation, 3)
            .cloned();
        let device = self.head.weight.lazy_device();
        let lstm = self
            .lstm
            .into_iter()
            .enumerate()
            .map(|(i, layer)| {
                let path = format!("lstm.{i}");
                layer.quantized(mapping, &path).map_err(|e| e.within(&path))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LstmClassifier {
            input_quant: QuantStubConfig::new(d_input)
                .with_quant(input)
                .try_init(&device)
                .map_err(|e| e.within("input_quant"))?,
            lstm,
            // The logits are read as dequantized accumulators: no output quantizer.
            head: self
                .head
                .with_quantizers(
                    &mapping
                        .layer("head", LayerKind::Linear, 2, 2)
                        .without_output(),
                )
                .map_err(|e| e.within("head"))?,
        })
    }

    /// The integer program of this (calibrated or QAT-trained) model for sequences of up to
    /// `time` frames, as an engine artifact carrying `meta`. Inputs: `frames` `[time, d_input]`
    /// (floats, padded with anything) and `mask` `[time]` (1 for a frame, 0 for padding); the
    /// ops of [`Self::forward`] one for one: the input quantizer, each LSTM layer (`Op::Lstm`),
    /// the last layer's state at the last position (past a sequence's end its state is held),
    /// and the head's logits as dequantized accumulators.
    pub fn to_artifact(
        &self,
        time: usize,
        meta: serde_json::Value,
    ) -> Result<engine::Artifact, QuantError> {
        if time == 0 {
            return Err(QuantError::field("time", "must be at least 1"));
        }
        let d_input = self.lstm[0].input_transform.weight.dims()[0];
        let mut b = engine::ProgramBuilder::new();
        let frames = b.input("frames", &[time, d_input]);
        let mask = b.input("mask", &[time]);
        let mut x = self.input_quant.export(&mut b, "input_quant", frames)?;
        for (i, layer) in self.lstm.iter().enumerate() {
            x = layer.export(&mut b, &format!("lstm.{i}"), x, mask)?;
        }
        let last = b.select_row("last", x, time - 1);
        let logits = self.head.export(&mut b, "head", last)?;
        b.output(logits);
        crate::export::finish(b, meta)
    }

    /// Logits for `frames` `[batch, time, d_input]`, each sequence ending where `mask`
    /// (`[batch, time]`, `true` on real frames) does.
    pub fn forward(&self, frames: Tensor<3>, mask: &Tensor<2, Bool>) -> Tensor<2> {
        let mut x = self.input_quant.forward(frames);
        let mut producer: Option<&Quantizer> = self.input_quant.quant.as_ref();
        let mut hidden = None;
        for layer in &self.lstm {
            let out = layer.forward_from(x, Some(mask), producer);
            x = out.states;
            hidden = Some(out.hidden);
            producer = layer.output_quant.as_ref();
        }
        self.head
            .forward_from(hidden.expect("at least one layer"), producer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::mean_relative_gap;
    use burn::tensor::{Distribution, TensorData};

    fn small() -> LstmClassifierConfig {
        LstmClassifierConfig::new(12, 9)
            .with_d_hidden(16)
            .with_layers(2)
    }

    fn batch(device: &Device) -> (Tensor<3>, Tensor<2, Bool>) {
        let frames = Tensor::<3>::random([4, 6, 12], Distribution::Normal(0.0, 1.0), device);
        let lengths = [6, 3, 5, 1];
        let mask = lengths
            .iter()
            .flat_map(|&l| (0..6).map(move |t| t < l))
            .collect::<Vec<_>>();
        (
            frames,
            Tensor::from_data(TensorData::new(mask, [4, 6]), device),
        )
    }

    /// A float checkpoint loads into the QAT model (same paths), which with its quantizers
    /// bypassed is the float model; calibrated, its logits stay close to the float model's, and
    /// closer at 8 bits than at 4. Gaps are medians over nine random models: Flex's generator is
    /// global and shared with the tests running beside this one, so a seed cannot pin one model,
    /// and a tiny untrained LSTM's logits (about 0.3) make one model's relative gap noisy (one
    /// W8A8 model: 0.02–0.08; medians over six runs 0.027–0.040 at W8A8, 0.068–0.090 at W4A4:
    /// six quantizers a frame, whose rounding the recurrence carries along).
    #[test]
    fn float_checkpoint_loads_into_the_qat_model_and_stays_close_calibrated() {
        let device = Device::flex();
        let median_gap = |mapping: QuantMapping| {
            let mut gaps: Vec<f32> = (0..9)
                .map(|_| {
                    let float = small().init(&device);
                    let (frames, mask) = batch(&device);
                    let float_logits = float.forward(frames.clone(), &mask);
                    assert_eq!(float_logits.dims(), [4, 9]);
                    let qat = small()
                        .init(&device)
                        .load_record(float.clone().into_record())
                        .quantized(&mapping)
                        .unwrap();
                    let bypassed = quant::control::set_fake_quant(qat.clone(), false);
                    float_logits.clone().into_data().assert_approx_eq::<f32>(
                        &bypassed.forward(frames.clone(), &mask).into_data(),
                        burn::tensor::Tolerance::absolute(1e-5),
                    );
                    // Each frame is one observation of a moving-average observer (c = 0.01):
                    // calibrate over enough of them for the ranges to settle, as a calibration
                    // over batches does.
                    let batches = std::iter::repeat_n((frames.clone(), mask.clone()), 40);
                    let qat = quant::qat::calibrate(qat, batches, |m, (f, k)| {
                        m.forward(f, &k);
                    });
                    mean_relative_gap(float_logits, qat.forward(frames, &mask))
                })
                .collect();
            gaps.sort_by(f32::total_cmp);
            gaps[4]
        };
        let (w8, w4) = (
            median_gap(QuantMapping::w8a8()),
            median_gap(QuantMapping::w4a4()),
        );
        assert!(w8 < 0.15, "8-bit logits differ from float by {w8}");
        assert!(
            w8 < w4,
            "8 bits ({w8}) are not closer to float than 4 bits ({w4})"
        );
    }

    /// Every quantizer the mapping names exists, by path: a rule for one LSTM tensor reaches it.
    #[test]
    fn mapping_rules_reach_the_lstm_tensors_by_path() {
        let device = Device::flex();
        let mut cell16 = QuantMapping::w8a8().activation.unwrap();
        cell16.spec.bits = 16;
        let mapping = QuantMapping::w8a8().with_rules(vec![quant::QuantRule {
            pattern: Some(r"lstm\.1\.cell_quant".into()),
            layer: None,
            rank: None,
            weight: None,
            activation: Some(cell16),
            float: false,
        }]);
        let model = small().with_mapping(mapping).init(&device);
        let bits = |q: &Option<quant::FakeQuant>| q.as_ref().map(|q| q.config.spec.bits);
        assert_eq!(bits(&model.lstm[1].cell_quant), Some(16));
        assert_eq!(bits(&model.lstm[0].cell_quant), Some(8));
        assert_eq!(bits(&model.lstm[1].gates_quant), Some(8));
        assert!(model.head.output_quant.is_none());
    }
}
