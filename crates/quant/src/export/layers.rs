//! `export` for each layer and op: its part of the integer program.

use burn::tensor::Tensor;
use engine::ProgramBuilder;

use super::{
    activation_grid, activation_grid_within, engine_error, host, unexportable, weight_codes,
};
use crate::layers::padding_pairs;
use crate::{
    ConvBn2d, FakeQuant, QuantAdd, QuantAvgPool2d, QuantConv2d, QuantEmbedding, QuantError,
    QuantLinear, QuantLstm, QuantStub, Quantizer,
};

/// The input value as this layer reads it: through its own input quantizer when it has one.
fn layer_input(
    b: &mut ProgramBuilder,
    input_quant: &Option<FakeQuant>,
    path: &str,
    x: usize,
) -> Result<usize, QuantError> {
    match input_quant {
        Some(q) => {
            let name = format!("{path}.input_quant");
            let grid = activation_grid(q, &name)?;
            if b.quant(x).is_some() {
                return Err(unexportable(
                    &name,
                    "an input quantizer on an integer tensor quantizes it twice",
                ));
            }
            Ok(b.quantize(&name, x, grid))
        }
        None => Ok(x),
    }
}

fn output_grid(q: &Option<FakeQuant>, path: &str) -> Result<Option<engine::ActQuant>, QuantError> {
    q.as_ref()
        .map(|q| activation_grid(q, &format!("{path}.output_quant")))
        .transpose()
}

fn conv_weights(
    quant: Option<&Quantizer>,
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    path: &str,
) -> Result<engine::LayerWeights, QuantError> {
    let q = quant.ok_or_else(|| {
        unexportable(
            &format!("{path}.weight"),
            "the layer has no weight quantizer (float layers do not run on the engine)",
        )
    })?;
    let shape = weight.dims().to_vec();
    weight_codes(
        q,
        host(weight),
        shape,
        bias.map(host),
        &format!("{path}.weight"),
    )
}

impl QuantStub {
    /// Quantizes the float value `x` (the network input): one `Quantize` op.
    pub fn export(
        &self,
        b: &mut ProgramBuilder,
        path: &str,
        x: usize,
    ) -> Result<usize, QuantError> {
        let name = format!("{path}.quant");
        let q = self
            .quant
            .as_ref()
            .ok_or_else(|| unexportable(&name, "no quantizer: the input stays float"))?;
        Ok(b.quantize(&name, x, activation_grid(q, &name)?))
    }
}

/// What a convolution's export needs besides its weights.
struct ConvGeometry<'a> {
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    padding: &'a burn::nn::PaddingConfig2d,
}

/// The convolution of `x` (through `input_quant` when the layer has one) with `weights`, the
/// fused ReLU and the output grid.
#[allow(clippy::too_many_arguments)]
fn export_conv(
    b: &mut ProgramBuilder,
    path: &str,
    x: usize,
    input_quant: &Option<FakeQuant>,
    geometry: ConvGeometry,
    weights: impl FnOnce() -> Result<engine::LayerWeights, QuantError>,
    relu: bool,
    output_quant: &Option<FakeQuant>,
) -> Result<usize, QuantError> {
    let x = layer_input(b, input_quant, path, x)?;
    let g = geometry;
    let padding = conv_padding(
        path,
        b.shape(x),
        g.kernel,
        g.stride,
        g.dilation,
        g.groups,
        g.padding,
    )?;
    let weights = weights()?;
    let out = output_grid(output_quant, path)?;
    b.conv2d(path, x, weights, g.stride, padding, relu, out)
        .map_err(|e| engine_error(path, e))
}

impl ConvBn2d {
    /// The convolution with batch norm folded in (the weights and bias the model computes with
    /// once BN is frozen), fused ReLU and output grid.
    pub fn export(
        &self,
        b: &mut ProgramBuilder,
        path: &str,
        x: usize,
    ) -> Result<usize, QuantError> {
        let c = &self.conv;
        let geometry = ConvGeometry {
            kernel: c.kernel_size,
            stride: c.stride,
            dilation: c.dilation,
            groups: c.groups,
            padding: &c.padding,
        };
        let weights = || {
            let folded = self.quantized_folded_weight();
            conv_weights(
                self.weight_quant.as_ref(),
                folded,
                Some(self.folded_bias()),
                path,
            )
        };
        export_conv(
            b,
            path,
            x,
            &self.input_quant,
            geometry,
            weights,
            self.relu,
            &self.output_quant,
        )
    }
}

impl QuantConv2d {
    /// The convolution, fused ReLU and output grid.
    pub fn export(
        &self,
        b: &mut ProgramBuilder,
        path: &str,
        x: usize,
    ) -> Result<usize, QuantError> {
        let geometry = ConvGeometry {
            kernel: self.kernel_size,
            stride: self.stride,
            dilation: self.dilation,
            groups: self.groups,
            padding: &self.padding,
        };
        let weights = || {
            let q = self.weight.reparameterization::<Quantizer>();
            conv_weights(
                q,
                self.weight.val(),
                self.bias.as_ref().map(|b| b.val()),
                path,
            )
        };
        export_conv(
            b,
            path,
            x,
            &self.input_quant,
            geometry,
            weights,
            self.relu,
            &self.output_quant,
        )
    }
}

impl QuantLinear {
    /// The fully connected layer (weights transposed to `[out, in]`), fused ReLU and output
    /// grid; a float input is quantized per row at run time.
    pub fn export(
        &self,
        b: &mut ProgramBuilder,
        path: &str,
        x: usize,
    ) -> Result<usize, QuantError> {
        let x = layer_input(b, &self.input_quant, path, x)?;
        let q = self
            .weight
            .reparameterization::<Quantizer>()
            .ok_or_else(|| {
                unexportable(
                    &format!("{path}.weight"),
                    "the layer has no weight quantizer (float layers do not run on the engine)",
                )
            })?;
        let w = self.weight.val().transpose();
        let shape = w.dims().to_vec();
        let weights = weight_codes(
            q,
            host(w),
            shape,
            self.bias.as_ref().map(|b| host(b.val())),
            &format!("{path}.weight"),
        )?;
        let out = output_grid(&self.output_quant, path)?;
        if b.quant(x).is_none() && (out.is_some() || self.relu) {
            return Err(unexportable(
                path,
                "a float input is quantized per row at run time, which gives float outputs: drop the output quantizer or quantize the input",
            ));
        }
        b.linear(path, x, weights, self.relu, out)
            .map_err(|e| engine_error(path, e))
    }
}

impl QuantAdd {
    /// `relu?(a + b)` requantized.
    pub fn export(
        &self,
        b: &mut ProgramBuilder,
        path: &str,
        lhs: usize,
        rhs: usize,
    ) -> Result<usize, QuantError> {
        let out = output_grid(&self.output_quant, path)?.ok_or_else(|| {
            unexportable(
                path,
                "the add has no output quantizer (a float add between integer tensors)",
            )
        })?;
        if b.quant(lhs).is_none() || b.quant(rhs).is_none() {
            return Err(unexportable(
                path,
                "both operands of an integer add must be integer tensors",
            ));
        }
        Ok(b.add(path, lhs, rhs, self.relu, out))
    }
}

impl QuantAvgPool2d {
    /// Global average pooling requantized (`output_size = [1, 1]` only).
    pub fn export(
        &self,
        b: &mut ProgramBuilder,
        path: &str,
        x: usize,
    ) -> Result<usize, QuantError> {
        if self.pool.output_size != [1, 1] {
            return Err(unexportable(
                path,
                format!(
                    "adaptive pooling to {:?}; the engine pools globally",
                    self.pool.output_size
                ),
            ));
        }
        let out = output_grid(&self.output_quant, path)?
            .ok_or_else(|| unexportable(path, "the pool has no output quantizer"))?;
        if b.quant(x).is_none() {
            return Err(unexportable(path, "the pooled tensor must be integer"));
        }
        Ok(b.global_avg_pool(path, x, out))
    }
}

fn conv_padding(
    path: &str,
    input: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    padding: &burn::nn::PaddingConfig2d,
) -> Result<[usize; 4], QuantError> {
    if dilation != [1, 1] || groups != 1 {
        return Err(unexportable(
            path,
            format!(
                "dilation {dilation:?} / groups {groups}: the engine runs dense, undilated convolutions"
            ),
        ));
    }
    let [_, h, w] = input[..] else {
        return Err(unexportable(
            path,
            format!("input shape {input:?} is not [c, h, w]"),
        ));
    };
    Ok(padding_pairs(padding, [h, w], kernel, stride))
}

impl QuantEmbedding {
    /// The table as the engine's `Embed` reads it: codes `[rows, d]` with one scale per row (a
    /// per-tensor scale is repeated).
    pub fn export_table(&self, path: &str) -> Result<engine::LayerWeights, QuantError> {
        let name = format!("{path}.weight");
        let q = self
            .weight
            .reparameterization::<Quantizer>()
            .ok_or_else(|| {
                unexportable(
                    &name,
                    "the table has no weight quantizer (float tables do not run on the engine)",
                )
            })?;
        let table = self.weight.val();
        let shape = table.dims().to_vec();
        weight_codes(q, host(table), shape, None, &name)
    }
}

impl QuantLstm {
    /// The integer LSTM layer (`engine::Op::Lstm`) over the integer frames `x` with the float
    /// program input `mask`: both weights as codes `[4H, …]` (the bias stored as int32 at the
    /// input product's accumulator scale, as the layer rounds it), and the grids of all six of
    /// its quantizers, each required (the engine's step quantizes every tensor it holds).
    pub fn export(
        &self,
        b: &mut ProgramBuilder,
        path: &str,
        x: usize,
        mask: usize,
    ) -> Result<usize, QuantError> {
        if b.quant(x).is_none() {
            return Err(unexportable(
                path,
                "the engine's LSTM reads integer frames: quantize its input",
            ));
        }
        let weights = |layer: &QuantLinear, field: &str| {
            let at = format!("{path}.{field}.weight");
            let q = layer
                .weight
                .reparameterization::<Quantizer>()
                .ok_or_else(|| unexportable(&at, "the weight has no quantizer"))?;
            let w = layer.weight.val().transpose();
            let shape = w.dims().to_vec();
            let bias = layer.bias.as_ref().map(|b| host(b.val()));
            weight_codes(q, host(w), shape, bias, &at)
        };
        // Up to `bits` wide: the cell state never leaves the op, and may be 16-bit.
        let grid = |q: &Option<FakeQuant>, field: &str, bits: u32| {
            let at = format!("{path}.{field}");
            let q = q.as_ref().ok_or_else(|| {
                unexportable(
                    &at,
                    "no quantizer: the engine's LSTM holds every tensor of its step as integers",
                )
            })?;
            activation_grid_within(q, &at, bits)
        };
        let grids = engine::LstmGrids {
            gates: grid(&self.gates_quant, "gates_quant", 8)?,
            sigmoid: grid(&self.sigmoid_quant, "sigmoid_quant", 8)?,
            tanh: grid(&self.tanh_quant, "tanh_quant", 8)?,
            cell: grid(&self.cell_quant, "cell_quant", 16)?,
            cell_tanh: grid(&self.cell_tanh_quant, "cell_tanh_quant", 8)?,
        };
        let hidden = grid(&self.output_quant, "output_quant", 8)?;
        let input = weights(&self.input_transform, "input_transform")?;
        let recurrent = weights(&self.hidden_transform, "hidden_transform")?;
        b.lstm(path, x, mask, [input, recurrent], grids, hidden)
            .map_err(|e| engine_error(path, e))
    }
}
