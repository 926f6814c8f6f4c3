//! The LSTM op ([`Op::Lstm`](crate::Op::Lstm)) in ONNX: unrolled over the program's fixed number
//! of frames, each frame the engine's step (`crate::lstm`) with every quantizer of it one
//! `QuantizeLinear` — the gates' pre-activations, `σ` of the input / forget / output gates,
//! `tanh` of the candidate, the cell state, `tanh` of the cell state, the hidden state — and a
//! padded frame (mask 0) holding both states with `Where`, as the engine does.
//!
//! ONNX's own `LSTM` operator cannot say any of this (it has no quantizers inside), which is why
//! exporters that use it lose the integer LSTM they trained. A 16-bit cell state (wider than
//! `QuantizeLinear`'s `uint8` at opset 13) is quantized in float — scale by `1/s`, clamp to its
//! codes, `Round` (half to even, as the engine), scale back — which is the same arithmetic.

use super::export::{GraphWriter, Grid, int};
use crate::lstm::LstmGrids;

impl GraphWriter<'_> {
    /// Appends LSTM layer `name`: codes `input` `[batch, time, in]`, float `mask`
    /// `[batch, time]`, the hidden state after every frame as codes `output` `[batch, time, H]`.
    pub(super) fn lstm(
        &mut self,
        name: &str,
        input: usize,
        mask: usize,
        output: usize,
        grids: &LstmGrids,
    ) -> Result<(), String> {
        let time = self.program().values[input].shape[0];
        let h = self.program().values[output].shape[1] as i64;
        let gates = self.grid_constants(&format!("{name}.gates"), grids.gates);
        let sigmoid = self.grid_constants(&format!("{name}.sigmoid"), grids.sigmoid);
        let candidate = self.grid_constants(&format!("{name}.candidate"), grids.tanh);
        let cell_tanh = self.grid_constants(&format!("{name}.cell_tanh"), grids.cell_tanh);
        let hidden = self.grid_constants(&format!("{name}.hidden_state"), self.grid(output));
        let cell = CellState::new(self, name, grids);

        // The input's part of every frame's gates at once: `x·W_xᵀ + b` for `[batch, time, 4H]`.
        let x = self.dequantize(input);
        let (wx, bias) = self.layer_weights(&format!("{name}.input"), input, 2, 1)?;
        let (wh, _) = self.layer_weights(&format!("{name}.hidden"), output, 2, 1)?;
        let product = format!("{name}.input_product");
        self.node("MatMul", name, vec![x, wx], &product, vec![]);
        let zx = match bias {
            Some(b) => {
                let zx = format!("{name}.input_gates");
                self.node("Add", name, vec![product, b], &zx, vec![]);
                zx
            }
            None => product,
        };

        // Real frames: mask ≠ 0, as the engine reads it.
        let zero = self.f32_scalar(format!("{name}.mask_zero"), 0.0);
        let padding = format!("{name}.padding");
        let mask_name = self.name(mask);
        self.node("Equal", name, vec![mask_name, zero], &padding, vec![]);
        let keep = format!("{name}.keep");
        self.node("Not", name, vec![padding], &keep, vec![]);

        let axis = self.i64_vector(format!("{name}.axis1"), &[1]);
        let split_gates = self.i64_vector(format!("{name}.split_gates"), &[3 * h, h]);
        let split_ifo = self.i64_vector(format!("{name}.split_ifo"), &[h, h, h]);
        let h0 = self.initializer(
            format!("{name}.h0"),
            super::proto::ElemType::Uint8,
            &[],
            vec![hidden.q.zero_point as u8],
        );

        // The states before the frame: `None` before the first (all real zeros).
        let mut h_prev: Option<String> = None;
        let mut c_prev: Option<(String, String)> = None; // (state as held, its real value)
        let mut states = Vec::with_capacity(time);
        for t in 0..time {
            let p = format!("{name}.t{t}");
            let at = self.i64_scalar(format!("{p}.frame"), t as i64);
            let zx_t = format!("{p}.input_gates");
            self.node(
                "Gather",
                &p,
                vec![zx.clone(), at.clone()],
                &zx_t,
                vec![int("axis", 1)],
            );
            let z = match &h_prev {
                None => zx_t,
                Some(h_codes) => {
                    let h_real = self.dequantize_codes(h_codes.clone(), &hidden);
                    let zh = format!("{p}.hidden_gates");
                    self.node("MatMul", &p, vec![h_real, wh.clone()], &zh, vec![]);
                    let z = format!("{p}.gates_real");
                    self.node("Add", &p, vec![zx_t, zh], &z, vec![]);
                    z
                }
            };
            let z = self.quantized_real(z, &gates, &format!("{p}.gates"));
            let (ifo_in, g_in) = (format!("{p}.ifo_in"), format!("{p}.g_in"));
            self.split(&p, z, &split_gates, &[&ifo_in, &g_in]);
            let ifo = format!("{p}.ifo_sigmoid");
            self.node("Sigmoid", &p, vec![ifo_in], &ifo, vec![]);
            let ifo = self.quantized_real(ifo, &sigmoid, &format!("{p}.ifo"));
            let (i, f, o) = (format!("{p}.i"), format!("{p}.f"), format!("{p}.o"));
            self.split(&p, ifo, &split_ifo, &[&i, &f, &o]);
            let g = format!("{p}.g_tanh");
            self.node("Tanh", &p, vec![g_in], &g, vec![]);
            let g = self.quantized_real(g, &candidate, &format!("{p}.g"));

            // c = f·c_prev + i·g (in this order, as the engine sums it).
            let ig = format!("{p}.i_g");
            self.node("Mul", &p, vec![i, g], &ig, vec![]);
            let c_sum = match &c_prev {
                None => ig,
                Some((_, c_real)) => {
                    let fc = format!("{p}.f_c");
                    self.node("Mul", &p, vec![f, c_real.clone()], &fc, vec![]);
                    let sum = format!("{p}.cell_real");
                    self.node("Add", &p, vec![fc, ig], &sum, vec![]);
                    sum
                }
            };
            let (c_new, c_new_real) = cell.quantize(self, c_sum, &format!("{p}.cell"));
            let ct = format!("{p}.cell_tanh_real");
            self.node("Tanh", &p, vec![c_new_real], &ct, vec![]);
            let ct = self.quantized_real(ct, &cell_tanh, &format!("{p}.cell_tanh"));
            let hr = format!("{p}.hidden_real");
            self.node("Mul", &p, vec![o, ct], &hr, vec![]);
            let h_new = format!("{p}.hidden_new");
            self.quantize_onto(hr, &hidden, &h_new, false);

            // A padded frame keeps the states as they were.
            let keep_t = format!("{p}.keep");
            self.node(
                "Gather",
                &p,
                vec![keep.clone(), at],
                &keep_t,
                vec![int("axis", 1)],
            );
            let keep_column = format!("{p}.keep_column");
            self.node(
                "Unsqueeze",
                &p,
                vec![keep_t, axis.clone()],
                &keep_column,
                vec![],
            );
            let h_t = format!("{p}.hidden");
            let h_old = h_prev.clone().unwrap_or_else(|| h0.clone());
            self.node(
                "Where",
                &p,
                vec![keep_column.clone(), h_new, h_old],
                &h_t,
                vec![],
            );
            let c_t = format!("{p}.cell_state");
            let c_old = c_prev
                .clone()
                .map_or_else(|| cell.initial.clone(), |(c, _)| c);
            self.node("Where", &p, vec![keep_column, c_new, c_old], &c_t, vec![]);
            let c_t_real = cell.real(self, c_t.clone());
            c_prev = Some((c_t, c_t_real));

            let row = format!("{p}.hidden_row");
            self.node(
                "Unsqueeze",
                &p,
                vec![h_t.clone(), axis.clone()],
                &row,
                vec![],
            );
            states.push(row);
            h_prev = Some(h_t);
        }
        let y = self.name(output);
        self.node("Concat", name, states, &y, vec![int("axis", 1)]);
        Ok(())
    }

    /// Float `x` onto `grid` as codes named `y`, and those codes' real values.
    fn quantized_real(&mut self, x: String, grid: &Grid, y: &str) -> String {
        self.quantize_onto(x, grid, y, false);
        self.dequantize_codes(y.to_string(), grid)
    }

    /// `Split` of `x` along axis 1 into `parts` of `sizes`.
    fn split(&mut self, source: &str, x: String, sizes: &str, parts: &[&str]) {
        self.node_with_outputs(
            "Split",
            source,
            vec![x, sizes.to_string()],
            parts.iter().map(|p| p.to_string()).collect(),
            vec![int("axis", 1)],
        );
    }
}

/// How the cell state is held: as `uint8` codes on an 8-bit grid (`QuantizeLinear`), or as the
/// real values of its codes on a wider grid (quantized in float).
struct CellState {
    grid: Option<Grid>,
    /// The state before the first frame (real zero).
    initial: String,
    /// `1/s`, and the lowest and highest code relative to the zero point, for the wide grid.
    wide_constants: Option<[String; 4]>,
}

impl CellState {
    fn new(w: &mut GraphWriter<'_>, name: &str, grids: &LstmGrids) -> Self {
        let q = grids.cell;
        if q.qmax <= 255 {
            let grid = w.grid_constants(&format!("{name}.cell"), q);
            let initial = w.initializer(
                format!("{name}.c0"),
                super::proto::ElemType::Uint8,
                &[],
                vec![q.zero_point as u8],
            );
            return CellState {
                grid: Some(grid),
                initial,
                wide_constants: None,
            };
        }
        let initial = w.f32_scalar(format!("{name}.c0"), 0.0);
        let constants = [
            w.f32_scalar(
                format!("{name}.cell.inverse_scale"),
                crate::requant::inverse(q.scale),
            ),
            w.f32_scalar(
                format!("{name}.cell.lowest"),
                (q.qmin - q.zero_point) as f32,
            ),
            w.f32_scalar(
                format!("{name}.cell.highest"),
                (q.qmax - q.zero_point) as f32,
            ),
            w.f32_scalar(format!("{name}.cell.scale"), q.scale),
        ];
        CellState {
            grid: None,
            initial,
            wide_constants: Some(constants),
        }
    }

    /// Float `x` onto the cell's grid: the state as held (`y`), and its real value.
    fn quantize(&self, w: &mut GraphWriter<'_>, x: String, y: &str) -> (String, String) {
        if let Some(grid) = &self.grid {
            let real = w.quantized_real(x, grid, y);
            return (y.to_string(), real);
        }
        let [inverse, lowest, highest, scale] = self.wide_constants.clone().expect("wide grid");
        let scaled = format!("{y}.scaled");
        w.node("Mul", y, vec![x, inverse], &scaled, vec![]);
        let clamped = format!("{y}.clamped");
        w.node("Clip", y, vec![scaled, lowest, highest], &clamped, vec![]);
        let codes = format!("{y}.centred_codes");
        w.node("Round", y, vec![clamped], &codes, vec![]);
        w.node("Mul", y, vec![codes, scale], y, vec![]);
        (y.to_string(), y.to_string())
    }

    /// The real value of a held state `c`.
    fn real(&self, w: &mut GraphWriter<'_>, c: String) -> String {
        match &self.grid {
            Some(grid) => w.dequantize_codes(c, grid),
            None => c,
        }
    }
}
