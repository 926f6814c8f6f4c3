//! [`QuantLstm`]: an LSTM layer quantized gate by gate, as an integer engine runs it.
//!
//! One time step, every tensor an integer engine holds on its own grid (Brevitas's `QuantLSTM`
//! places its quantizers the same way):
//!
//! ```text
//! z   = Q_gates(x_t · Q(W_x) + b + ĥ_{t-1} · Q(W_h))      [batch, 4H]: i, f, o, g
//! i, f, o = Q_sigmoid(σ(z_i, z_f, z_o))                  (one grid for the three)
//! g   = Q_tanh(tanh(z_g))
//! ĉ_t = Q_cell(f ⊙ ĉ_{t-1} + i ⊙ g)
//! ĥ_t = Q_out(o ⊙ Q_cell_tanh(tanh(ĉ_t)))                 the layer's output and next state
//! ```
//!
//! An engine computes `z` from two int32 accumulators rescaled to `z`'s grid, the sigmoid and
//! tanh as 256-entry tables of `z`'s codes, and the two products of codes rescaled to the cell's
//! and the output's grid: each step above is one integer op with one output quantizer, so the
//! fake-quant layer computes what the engine will. Sequences of different lengths are padded at
//! the end and masked: past its last frame a sequence keeps its state (`ĥ`, `ĉ` stay on their
//! grids), so its final state is the one at its last real frame.
//!
//! Gates are stored in the order `i, f, o, g` (PyTorch's `nn.LSTM` uses `i, f, g, o`), so the
//! three sigmoid gates are one slice.
//!
//! The observers see every frame of a padded batch, the padding's gate values too (computed,
//! then dropped by the mask); and a moving-average observer takes one step per frame, so a
//! calibration wants a few hundred frames for its ranges to settle.

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Initializer, LinearConfig};
use burn::tensor::activation::{sigmoid, tanh};
use burn::tensor::{Bool, Device, Tensor, s};

use super::{activation_quantizer, quantize_opt};
use crate::{FakeQuant, LayerKind, LayerQuant, QuantError, QuantLinear, QuantMapping, Quantizer};

/// Configuration of a [`QuantLstm`] (float; quantizers come from [`QuantLstm::quantized`]).
#[derive(Config, Debug)]
pub struct QuantLstmConfig {
    /// Features of each input frame.
    pub d_input: usize,
    /// Hidden state size `H`.
    pub d_hidden: usize,
}

/// A single-direction LSTM layer with gate-level fake quantization (see the module docs).
///
/// Parameter paths: `input_transform.{weight,bias}` (`[d_input, 4H]`, `[4H]`),
/// `hidden_transform.weight` (`[H, 4H]`), and the quantizers `gates_quant`, `sigmoid_quant`,
/// `tanh_quant`, `cell_quant`, `cell_tanh_quant`, `output_quant`.
#[derive(Module, Debug)]
pub struct QuantLstm {
    /// `x_t · W_x + b` for every frame at once.
    pub input_transform: QuantLinear,
    /// `ĥ_{t-1} · W_h` (no bias).
    pub hidden_transform: QuantLinear,
    /// The gates' pre-activations `z`, `[.., 4H]`.
    pub gates_quant: Option<FakeQuant>,
    /// The input, forget and output gates after the sigmoid, `[.., 3H]`.
    pub sigmoid_quant: Option<FakeQuant>,
    /// The cell candidate `g` after the tanh, `[.., H]`.
    pub tanh_quant: Option<FakeQuant>,
    /// The cell state, `[.., H]`.
    pub cell_quant: Option<FakeQuant>,
    /// `tanh` of the cell state, `[.., H]`.
    pub cell_tanh_quant: Option<FakeQuant>,
    /// The hidden state: the layer's output and the next step's recurrent input, `[.., H]`.
    pub output_quant: Option<FakeQuant>,
    /// Hidden state size `H`.
    pub d_hidden: usize,
}

/// What a [`QuantLstm`] returns for a batch of sequences.
#[derive(Debug, Clone)]
pub struct LstmOutput {
    /// The hidden state after every frame, `[batch, time, H]` (past a sequence's end: its
    /// state at its last frame).
    pub states: Tensor<3>,
    /// The hidden state at each sequence's last frame, `[batch, H]`.
    pub hidden: Tensor<2>,
}

/// The quantizer names of a [`QuantLstm`] with their widths in units of `H`, in step order.
const ACTIVATIONS: [(&str, usize); 6] = [
    ("gates_quant", 4),
    ("sigmoid_quant", 3),
    ("tanh_quant", 1),
    ("cell_quant", 1),
    ("cell_tanh_quant", 1),
    ("output_quant", 1),
];

impl QuantLstmConfig {
    /// Builds the float layer: weights uniform in `±1/√H` (PyTorch's `nn.LSTM`), the forget
    /// gate's bias 1 (Jozefowicz et al. 2015: the state is kept until the data says otherwise).
    pub fn init(&self, device: &Device) -> QuantLstm {
        let h = self.d_hidden;
        let bound = 1.0 / (h as f64).sqrt();
        let uniform = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let linear = |d_in, bias| {
            LinearConfig::new(d_in, 4 * h)
                .with_bias(bias)
                .with_initializer(uniform.clone())
                .init(device)
        };
        let mut input = linear(self.d_input, true);
        let bias = input.bias.take().expect("built with a bias");
        let forget = Tensor::<1>::ones([h], device);
        // A leaf again (on an autodiff device `slice_assign` returns a tracked result, which a
        // parameter must not be: its graph would be consumed by the first backward pass).
        let bias = bias.map(|b| {
            let b = b.slice_assign(s![h..2 * h], forget).detach();
            if b.device().is_autodiff() {
                b.require_grad()
            } else {
                b
            }
        });
        input.bias = Some(bias);
        let float = LayerQuant::float();
        QuantLstm {
            input_transform: QuantLinear::from_linear(input, &float).expect("float layer"),
            hidden_transform: QuantLinear::from_linear(linear(h, false), &float)
                .expect("float layer"),
            gates_quant: None,
            sigmoid_quant: None,
            tanh_quant: None,
            cell_quant: None,
            cell_tanh_quant: None,
            output_quant: None,
            d_hidden: h,
        }
    }
}

impl QuantLstm {
    /// The same layer (weights kept) with the quantizers `mapping` chooses for the layer at
    /// `path`: `<path>.input_transform.weight` and `<path>.hidden_transform.weight` as Linear
    /// weights, and each of `<path>.gates_quant`, `sigmoid_quant`, `tanh_quant`, `cell_quant`,
    /// `cell_tanh_quant`, `output_quant` as an activation (so a rule can, e.g., keep the cell
    /// state at 16 bits as TFLite's integer LSTM does).
    pub fn quantized(self, mapping: &QuantMapping, path: &str) -> Result<Self, QuantError> {
        let join = |field: &str| {
            if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            }
        };
        let weights_only = |field: &str| {
            mapping
                .layer(&join(field), LayerKind::Linear, 2, 2)
                .without_output()
        };
        let device = self.input_transform.weight.lazy_device();
        let h = self.d_hidden;
        let mut quantizers = ACTIVATIONS.iter().map(|&(field, width)| {
            let config = mapping
                .activation_for(&join(field), LayerKind::Activation, 2)
                .cloned();
            activation_quantizer(
                &config,
                LayerKind::Activation,
                &[1, width * h],
                &device,
                field,
            )
        });
        let mut next = || quantizers.next().expect("six quantizers");
        Ok(QuantLstm {
            gates_quant: next()?,
            sigmoid_quant: next()?,
            tanh_quant: next()?,
            cell_quant: next()?,
            cell_tanh_quant: next()?,
            output_quant: next()?,
            input_transform: self
                .input_transform
                .with_quantizers(&weights_only("input_transform"))
                .map_err(|e| e.within("input_transform"))?,
            hidden_transform: self
                .hidden_transform
                .with_quantizers(&weights_only("hidden_transform"))
                .map_err(|e| e.within("hidden_transform"))?,
            d_hidden: h,
        })
    }

    /// Runs the layer over `frames` (`[batch, time, d_input]`, produced by the quantizer
    /// `producer`, or float), `mask` (`[batch, time]`, `true` on real frames; `None`: all real)
    /// saying where each sequence ends.
    pub fn forward_from(
        &self,
        frames: Tensor<3>,
        mask: Option<&Tensor<2, Bool>>,
        producer: Option<&Quantizer>,
    ) -> LstmOutput {
        let [batch, time, _] = frames.dims();
        let h = self.d_hidden;
        let device = frames.device();
        // Every frame's input product at once; the recurrent weight quantized once per pass.
        let inputs = self.input_transform.forward_from(frames, producer);
        let recurrent = self.hidden_transform.weight.val();
        let keep = mask.map(|m| m.clone().float());
        let mut hidden = Tensor::<2>::zeros([batch, h], &device);
        let mut cell = Tensor::<2>::zeros([batch, h], &device);
        let mut states = Vec::with_capacity(time);
        for t in 0..time {
            let x_t = inputs
                .clone()
                .slice([0..batch, t..t + 1, 0..4 * h])
                .reshape([batch, 4 * h]);
            let z = if t == 0 {
                x_t
            } else {
                crate::program::record_integer_input("QuantLstm", &hidden);
                x_t + hidden.clone().matmul(recurrent.clone())
            };
            let z = quantize_opt(&self.gates_quant, z);
            let gates = quantize_opt(
                &self.sigmoid_quant,
                sigmoid(z.clone().slice([0..batch, 0..3 * h])),
            );
            let candidate = quantize_opt(&self.tanh_quant, tanh(z.slice([0..batch, 3 * h..4 * h])));
            let gate = |k: usize| gates.clone().slice([0..batch, k * h..(k + 1) * h]);
            crate::program::record_integer_input("QuantLstm", &gates);
            crate::program::record_integer_input("QuantLstm", &candidate);
            let new_cell = quantize_opt(
                &self.cell_quant,
                gate(1) * cell.clone() + gate(0) * candidate,
            );
            let cell_tanh = quantize_opt(&self.cell_tanh_quant, tanh(new_cell.clone()));
            crate::program::record_integer_input("QuantLstm", &cell_tanh);
            let new_hidden = quantize_opt(&self.output_quant, gate(2) * cell_tanh);
            (hidden, cell) = match &keep {
                // 0/1 weights: each row is exactly its new or its old state, on its grid.
                Some(keep) => {
                    let now = keep.clone().slice([0..batch, t..t + 1]);
                    let before = now.clone().neg().add_scalar(1.0);
                    (
                        new_hidden * now.clone() + hidden * before.clone(),
                        new_cell * now + cell * before,
                    )
                }
                None => (new_hidden, new_cell),
            };
            states.push(hidden.clone().unsqueeze_dim::<3>(1));
        }
        LstmOutput {
            states: Tensor::cat(states, 1),
            hidden,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::{Module, Param};
    use burn::nn::{LstmConfig, LstmState};
    use burn::tensor::{Distribution, Tensor, TensorData};

    use super::*;
    use crate::testing::{assert_close, kernel_devices, values};

    /// Burn's own `nn::Lstm` with this layer's weights (gates reordered to Burn's i, f, g, o).
    fn burn_lstm(layer: &QuantLstm, d_input: usize, device: &Device) -> burn::nn::Lstm {
        let h = layer.d_hidden;
        let mut lstm = LstmConfig::new(d_input, h, true).init(device);
        let gate = |w: Tensor<2>, k: usize| {
            let rows = w.dims()[0];
            w.slice([0..rows, k * h..(k + 1) * h]).detach()
        };
        let bias_gate = |b: Tensor<1>, k: usize| b.slice(s![k * h..(k + 1) * h]).detach();
        let wx = layer.input_transform.weight.val();
        let wh = layer.hidden_transform.weight.val();
        let b = layer.input_transform.bias.as_ref().unwrap().val();
        // Ours: i, f, o, g at 0, 1, 2, 3.
        for (controller, k) in [
            (&mut lstm.input_gate, 0),
            (lstm.forget_gate.as_mut().expect("a forget gate"), 1),
            (&mut lstm.output_gate, 2),
            (&mut lstm.cell_gate, 3),
        ] {
            controller.input_transform.weight = Param::from_tensor(gate(wx.clone(), k));
            controller.input_transform.bias = Some(Param::from_tensor(bias_gate(b.clone(), k)));
            controller.hidden_transform.weight = Param::from_tensor(gate(wh.clone(), k));
            controller.hidden_transform.bias = Some(Param::from_tensor(Tensor::zeros([h], device)));
        }
        lstm
    }

    /// The float layer is an LSTM: its states equal Burn's `nn::Lstm`'s with the same weights.
    #[test]
    fn float_layer_equals_burns_lstm() {
        for device in kernel_devices() {
            let layer = QuantLstmConfig::new(5, 8).init(&device);
            let x = Tensor::<3>::random([3, 7, 5], Distribution::Normal(0.0, 1.0), &device);
            let ours = layer.forward_from(x.clone(), None, None);
            let (states, LstmState { hidden, .. }) = burn_lstm(&layer, 5, &device).forward(x, None);
            let name = format!("{device:?}");
            assert_close(&name, &values(ours.states), &values(states));
            assert_close(&name, &values(ours.hidden), &values(hidden));
        }
    }

    /// A masked sequence ends where its mask does: its final state is the one an unpadded run
    /// of its real frames reaches, and padding does not change it.
    #[test]
    fn padded_frames_leave_the_state_unchanged() {
        let device = Device::flex();
        let layer = QuantLstmConfig::new(4, 6)
            .init(&device)
            .quantized(&QuantMapping::w8a8(), "lstm")
            .unwrap();
        let short = Tensor::<3>::random([1, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let padded = Tensor::cat(vec![short.clone(), Tensor::zeros([1, 2, 4], &device)], 1);
        let mask = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![true, true, true, false, false], [1, 5]),
            &device,
        );
        let layer = crate::control::set_observers(layer, false);
        // Observers initialised once on the short run, then frozen: both passes use one grid.
        let layer_observed = crate::control::set_observers(layer.clone(), true);
        let _ = layer_observed.forward_from(short.clone(), None, None);
        let layer = crate::control::set_observers(layer_observed, false);
        let alone = layer.forward_from(short, None, None).hidden;
        let masked = layer.forward_from(padded, Some(&mask), None);
        assert_eq!(values(masked.hidden), values(alone));
        let states = values(masked.states);
        assert_eq!(
            states[2 * 6..3 * 6],
            states[4 * 6..5 * 6],
            "held after the end"
        );
    }

    /// The quantized layer trains: gradients reach both weights, the bias and the input, and
    /// its record round-trips with every quantizer's state.
    #[test]
    fn quantized_layer_has_gradients_and_its_record_round_trips() {
        for device in kernel_devices() {
            let ad = device.clone().autodiff();
            let layer = QuantLstmConfig::new(4, 6)
                .init(&ad)
                .quantized(&QuantMapping::w4a8(), "")
                .unwrap();
            assert!(layer.gates_quant.is_some() && layer.output_quant.is_some());
            let x =
                Tensor::<3>::random([2, 5, 4], Distribution::Normal(0.0, 1.0), &ad).require_grad();
            let out = layer.forward_from(x.clone(), None, None);
            let grads = out.hidden.sum().backward();
            let name = format!("{device:?}");
            for (what, grad) in [
                ("input", x.grad(&grads).map(values)),
                (
                    "W_x",
                    layer.input_transform.weight.base().grad(&grads).map(values),
                ),
                (
                    "W_h",
                    layer
                        .hidden_transform
                        .weight
                        .base()
                        .grad(&grads)
                        .map(values),
                ),
            ] {
                let grad = grad.unwrap_or_else(|| panic!("{name}: no {what} gradient"));
                assert!(
                    grad.iter().any(|g| *g != 0.0),
                    "{name}: {what} gradient is zero"
                );
            }
            let record = layer.clone().into_record();
            let fresh = QuantLstmConfig::new(4, 6)
                .init(&ad)
                .quantized(&QuantMapping::w4a8(), "")
                .unwrap()
                .load_record(record);
            let fresh = crate::control::set_observers(fresh, false);
            let layer = crate::control::set_observers(layer, false);
            let x = x.detach();
            assert_eq!(
                values(fresh.forward_from(x.clone(), None, None).hidden),
                values(layer.forward_from(x, None, None).hidden),
                "{name}: reloaded"
            );
        }
    }

    /// Built on an autodiff device, the layer trains step after step: its parameters are leaves
    /// (a forget-gate bias left as a tracked `slice_assign` result broke the second backward).
    #[test]
    fn layer_built_on_an_autodiff_device_takes_two_backward_passes() {
        let device = Device::flex().autodiff();
        let layer = QuantLstmConfig::new(3, 4).init(&device);
        let x = Tensor::<3>::random([2, 3, 3], Distribution::Default, &device);
        for _ in 0..2 {
            let grads = layer
                .forward_from(x.clone(), None, None)
                .hidden
                .sum()
                .backward();
            let bias = layer.input_transform.bias.as_ref().unwrap().val();
            assert!(
                bias.grad(&grads).is_some(),
                "the bias is a parameter with a gradient"
            );
        }
    }

    /// Every tensor the layer multiplies is on a quantizer's grid, and none is quantized twice.
    #[test]
    fn calibrated_layer_is_an_integer_program() {
        let device = Device::flex();
        let input = QuantMapping::w8a8()
            .activation
            .unwrap()
            .init(LayerKind::Activation, &[1, 4], &device)
            .unwrap();
        let layer = QuantLstmConfig::new(4, 6)
            .init(&device)
            .quantized(&QuantMapping::w8a8(), "")
            .unwrap();
        let x = input.forward(Tensor::<3>::random(
            [2, 5, 4],
            Distribution::Default,
            &device,
        ));
        let _ = layer.forward_from(x.clone(), None, Some(&input));
        let layer = crate::control::set_observers(layer, false);
        let (_, report) =
            crate::program::trace(|| layer.forward_from(input.forward(x), None, Some(&input)));
        assert!(report.is_integer_program(), "{:?}", report.violations);
        assert!(report.integer_ops >= 4 * 5, "{report:?}");
    }
}
