//! Random integer programs for the engine's tests: every op, odd sizes, reproducible data.
#![allow(dead_code)]

use engine::{ActQuant, Artifact, LayerWeights, ProgramBuilder};

/// SplitMix64 numbers in `[0, 1)`.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub fn grid(rng: &mut Rng, bits: u32) -> ActQuant {
    let qmax = (1 << bits) - 1;
    ActQuant {
        scale: rng.range(0.01, 0.1),
        zero_point: rng.below(qmax as usize / 2 + 1) as i32,
        qmin: 0,
        qmax,
    }
}

pub fn weights(rng: &mut Rng, shape: &[usize], bits: u32, bias: bool) -> LayerWeights {
    let n: usize = shape.iter().product();
    let limit: usize = (1 << (bits - 1)) - 1;
    let out = shape[0];
    LayerWeights {
        codes: (0..n)
            .map(|_| (rng.below(2 * limit + 1) as i32 - limit as i32) as i8)
            .collect(),
        shape: shape.to_vec(),
        bits,
        scales: (0..out).map(|_| rng.range(0.001, 0.02)).collect(),
        bias: bias.then(|| (0..out).map(|_| rng.range(-0.5, 0.5)).collect()),
    }
}

/// A CNN-shaped program: quantize → conv (relu) → conv (stride 2, uneven padding) → max-pool,
/// a 1×1 shortcut and an add, global average pool, flatten, linear (relu) → linear (float
/// logits). Every integer value is also an output, so tests compare all of them.
pub fn cnn(seed: u64, bits: u32, act_bits: u32) -> Artifact {
    let mut rng = Rng::new(seed);
    let mut b = ProgramBuilder::new();
    let x = b.input("image", &[3, 13, 11]);
    let g = grid(&mut rng, act_bits);
    let x = b.quantize("input_quant", x, g);
    let g = grid(&mut rng, act_bits);
    let c1 = b
        .conv2d(
            "conv1",
            x,
            weights(&mut rng, &[5, 3, 3, 3], bits, true),
            [1, 1],
            [1, 1, 1, 1],
            true,
            Some(g),
        )
        .unwrap();
    let g = grid(&mut rng, act_bits);
    let c2 = b
        .conv2d(
            "conv2",
            c1,
            weights(&mut rng, &[8, 5, 3, 2], bits, false),
            [2, 2],
            [1, 0, 1, 1],
            false,
            Some(g),
        )
        .unwrap();
    let g = grid(&mut rng, act_bits);
    let sc = b
        .conv2d(
            "shortcut",
            c1,
            weights(&mut rng, &[8, 5, 1, 1], bits, true),
            [2, 2],
            [0, 0, 0, 1],
            false,
            Some(g),
        )
        .unwrap();
    assert_eq!(b.shape(sc), b.shape(c2), "test program shapes line up");
    let g = grid(&mut rng, act_bits);
    let s = b.add("add", c2, sc, true, g);
    let p = b.max_pool2d(s, [2, 2], [2, 2]);
    let g = grid(&mut rng, act_bits);
    let a = b.global_avg_pool("pool", s, g);
    let f = b.flatten(p);
    let g = grid(&mut rng, act_bits);
    let n = b.shape(f)[0];
    let h = b
        .linear(
            "fc1",
            f,
            weights(&mut rng, &[17, n], bits, true),
            true,
            Some(g),
        )
        .unwrap();
    let logits = b
        .linear(
            "fc2",
            h,
            weights(&mut rng, &[3, 17], bits, true),
            false,
            None,
        )
        .unwrap();
    let fa = b.flatten(a);
    let logits2 = b
        .linear(
            "fc_pool",
            fa,
            weights(&mut rng, &[4, 8], bits, true),
            false,
            None,
        )
        .unwrap();
    for v in [x, c1, c2, sc, s, p, a, h, logits, logits2] {
        b.output(v);
    }
    b.finish(serde_json::json!({"test": "cnn"})).unwrap()
}

/// One quantized convolution `[c, h, w]` → `out` channels (window, stride, padding
/// `[top, left, bottom, right]`), with the input's codes and the output's as outputs: a layer
/// shape of its own, for the convolution's patch copies.
pub fn conv(
    seed: u64,
    [c, h, w]: [usize; 3],
    out: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
) -> Artifact {
    let mut rng = Rng::new(seed);
    let mut b = ProgramBuilder::new();
    let x = b.input("image", &[c, h, w]);
    let g = grid(&mut rng, 8);
    let x = b.quantize("input_quant", x, g);
    let g = grid(&mut rng, 8);
    let y = b
        .conv2d(
            "conv",
            x,
            weights(&mut rng, &[out, c, kernel[0], kernel[1]], 8, true),
            stride,
            padding,
            true,
            Some(g),
        )
        .unwrap();
    b.output(x);
    b.output(y);
    b.finish(serde_json::json!({"test": "conv"})).unwrap()
}

/// A program with a dynamically quantized (float input) linear layer on `[rows, 19]`.
pub fn dynamic(seed: u64) -> Artifact {
    let mut rng = Rng::new(seed);
    let mut b = ProgramBuilder::new();
    let x = b.input("tokens", &[5, 19]);
    let y = b
        .linear(
            "dense",
            x,
            weights(&mut rng, &[33, 19], 8, true),
            false,
            None,
        )
        .unwrap();
    b.output(y);
    b.finish(serde_json::json!({})).unwrap()
}

pub fn inputs(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.range(-2.0, 3.0)).collect()
}

/// A BERT-shaped program over `s` tokens: word + position + type embeddings, LayerNorm,
/// quantize; one encoder layer (Q/K/V, attention with `heads` heads, output dense + residual +
/// LayerNorm, GELU intermediate, output dense + residual + LayerNorm); the pooler (first row,
/// dense, tanh) and a classifier; also the token logits. Inputs: ids `[s]`, mask `[s]`.
pub fn transformer(seed: u64, s: usize, hidden: usize, heads: usize, vocab: usize) -> Artifact {
    use engine::EmbedIndex;
    let mut rng = Rng::new(seed);
    let mut b = ProgramBuilder::new();
    let ids = b.input("input_ids", &[s]);
    let mask = b.input("attention_mask", &[s]);
    let w = b
        .embed(
            "word",
            weights(&mut rng, &[vocab, hidden], 8, false),
            EmbedIndex::Ids { input: ids },
            s,
        )
        .unwrap();
    let p = b
        .embed(
            "position",
            weights(&mut rng, &[s + 3, hidden], 8, false),
            EmbedIndex::Positions,
            s,
        )
        .unwrap();
    let t = b
        .embed(
            "type",
            weights(&mut rng, &[2, hidden], 8, false),
            EmbedIndex::First,
            s,
        )
        .unwrap();
    let wp = b.add_float("wp", w, p);
    let x = b.add_float("embeddings", wp, t);
    let norm = |rng: &mut Rng| -> (Vec<f32>, Vec<f32>) {
        (
            (0..hidden).map(|_| rng.range(0.5, 1.5)).collect(),
            (0..hidden).map(|_| rng.range(-0.2, 0.2)).collect(),
        )
    };
    let (g0, b0) = norm(&mut rng);
    let x = b
        .layer_norm("embeddings.layer_norm", x, g0, b0, 1e-12)
        .unwrap();
    let xq = b.quantize("embeddings.output_quant", x, grid(&mut rng, 8));
    let mut qkv = [0; 3];
    for (slot, name) in qkv.iter_mut().zip(["query", "key", "value"]) {
        let g = grid(&mut rng, 8);
        *slot = b
            .linear(
                name,
                xq,
                weights(&mut rng, &[hidden, hidden], 8, true),
                false,
                Some(g),
            )
            .unwrap();
    }
    let probs = engine::ActQuant {
        scale: 1.0 / 255.0,
        zero_point: 0,
        qmin: 0,
        qmax: 255,
    };
    let ctx = b.attention("attention", qkv, mask, heads, probs, grid(&mut rng, 8));
    let dense = b
        .linear(
            "attention.output.dense",
            ctx,
            weights(&mut rng, &[hidden, hidden], 8, true),
            false,
            None,
        )
        .unwrap();
    let h = b.add_float("attention.residual", dense, x);
    let (g1, b1) = norm(&mut rng);
    let h = b
        .layer_norm("attention.output.layer_norm", h, g1, b1, 1e-12)
        .unwrap();
    let hq = b.quantize("attention.output.output_quant", h, grid(&mut rng, 8));
    let inner = b
        .linear(
            "intermediate.dense",
            hq,
            weights(&mut rng, &[2 * hidden, hidden], 4, true),
            false,
            None,
        )
        .unwrap();
    let inner = b.gelu("intermediate.gelu", inner);
    let inner = b.quantize("intermediate.output_quant", inner, grid(&mut rng, 8));
    let out = b
        .linear(
            "output.dense",
            inner,
            weights(&mut rng, &[hidden, 2 * hidden], 4, true),
            false,
            None,
        )
        .unwrap();
    let y = b.add_float("output.residual", out, h);
    let (g2, b2) = norm(&mut rng);
    let y = b.layer_norm("output.layer_norm", y, g2, b2, 1e-12).unwrap();
    let yq = b.quantize("output.output_quant", y, grid(&mut rng, 8));
    let first = b.select_row("pooler.first", yq, 0);
    let pooled = b
        .linear(
            "pooler.dense",
            first,
            weights(&mut rng, &[hidden, hidden], 8, true),
            false,
            None,
        )
        .unwrap();
    let pooled = b.tanh("pooler.tanh", pooled);
    let pooled = b.quantize("pooler.output_quant", pooled, grid(&mut rng, 8));
    let logits = b
        .linear(
            "classifier",
            pooled,
            weights(&mut rng, &[3, hidden], 8, true),
            false,
            None,
        )
        .unwrap();
    let tokens = b
        .linear(
            "token_classifier",
            yq,
            weights(&mut rng, &[5, hidden], 8, true),
            false,
            None,
        )
        .unwrap();
    for v in [logits, tokens, qkv[0], ctx, hq, inner, yq] {
        b.output(v);
    }
    b.finish(serde_json::json!({"test": "transformer"}))
        .unwrap()
}

/// Ids below `vocab` and a mask with the last `pad` tokens of each sequence padded.
pub fn token_inputs(
    seed: u64,
    batch: usize,
    s: usize,
    vocab: usize,
    pad: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let ids = (0..batch * s).map(|_| rng.below(vocab) as f32).collect();
    let mask = (0..batch * s)
        .map(|i| if i % s < s - pad.min(s - 1) { 1.0 } else { 0.0 })
        .collect();
    (ids, mask)
}

/// An LSTM program over `time` frames of 3 features: quantize → LSTM (H = 4, gates of `bits`
/// weights, every inner grid random at `act_bits`, the cell state at `cell_bits` ≤ 16) → its
/// states `[time, 4]` as the output. Inputs: frames `[time, 3]`, mask `[time]`.
pub fn lstm(seed: u64, time: usize, bits: u32, act_bits: u32, cell_bits: u32) -> Artifact {
    lstm_sized(seed, [time, 3, 4], bits, act_bits, cell_bits)
}

/// [`lstm`] with `[time, in, H]` chosen: frames `[time, in]`, states `[time, H]`.
pub fn lstm_sized(
    seed: u64,
    [time, d_in, h]: [usize; 3],
    bits: u32,
    act_bits: u32,
    cell_bits: u32,
) -> Artifact {
    let mut rng = Rng::new(seed);
    let mut b = ProgramBuilder::new();
    let frames = b.input("frames", &[time, d_in]);
    let mask = b.input("mask", &[time]);
    let g = grid(&mut rng, act_bits);
    let x = b.quantize("input_quant", frames, g);
    let mut cell = grid(&mut rng, cell_bits);
    cell.scale /= (1 << (cell_bits - act_bits.min(cell_bits))) as f32;
    let grids = engine::LstmGrids {
        gates: grid(&mut rng, act_bits),
        sigmoid: ActQuant {
            scale: 1.0 / ((1 << act_bits) - 1) as f32,
            zero_point: 0,
            qmin: 0,
            qmax: (1 << act_bits) - 1,
        },
        tanh: grid(&mut rng, act_bits),
        cell,
        cell_tanh: grid(&mut rng, act_bits),
    };
    let hidden = grid(&mut rng, act_bits);
    let y = b
        .lstm(
            "lstm",
            x,
            mask,
            [
                weights(&mut rng, &[4 * h, d_in], bits, true),
                weights(&mut rng, &[4 * h, h], bits, false),
            ],
            grids,
            hidden,
        )
        .unwrap();
    b.output(y);
    b.finish(serde_json::json!({"test": "lstm"})).unwrap()
}
