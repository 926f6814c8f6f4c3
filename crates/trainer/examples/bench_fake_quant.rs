//! Benchmark: one training step (forward, backward, Adam) of a 3-layer 512-wide MLP at batch 256,
//! float vs W8A8 (per-channel observed weights, moving-average activations) vs LSQ W4A4, plus
//! `float_dx` (float with an input gradient: the one extra matmul LSQ's learned first-layer input
//! step size requires, so LSQ's own overhead can be read off).
//!
//! Run through `cargo xtask bench fake-quant [--rounds N] [--steps K] [--only NAME]`. Variants
//! run in alternating rounds, their order rotated each round; each round's ratio to float compares
//! steps timed seconds apart, and the median over rounds is reported with its quartiles. Prints a
//! table and, as its last line, one JSON object.

/// The allocator the trainer uses, set up as the trainer sets it (`keep_freed_memory` in
/// `main`; see `crates/trainer/src/main.rs` for why), so the bench measures what training runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use quant::{QuantLinear, QuantLinearConfig, QuantMapping};

const WIDTH: usize = 512;
const BATCH: usize = 256;

#[derive(Module, Debug)]
struct Mlp {
    l1: QuantLinear,
    l2: QuantLinear,
    l3: QuantLinear,
}

impl Mlp {
    fn new(mapping: &QuantMapping, device: &Device) -> Self {
        // The integer program: the input quantized once (by l1), each hidden output quantized
        // where it is produced (after the fused ReLU), the last layer's output float.
        let layer = |input: bool, output: bool| {
            QuantLinearConfig::new(WIDTH, WIDTH)
                .with_weight(mapping.weight.clone())
                .with_input(mapping.activation.clone().filter(|_| input))
                .with_output(mapping.activation.clone().filter(|_| output))
                .with_relu(output)
                .init(device)
        };
        Mlp {
            l1: layer(true, true),
            l2: layer(false, true),
            l3: layer(false, false),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.l3.forward(self.l2.forward(self.l1.forward(x)))
    }
}

struct Variant {
    name: &'static str,
    /// Whether the input batch needs a gradient (see `float_dx`).
    input_grad: bool,
    model: Option<Mlp>,
    optim: burn::optim::ModuleOptimizer,
    samples_ms: Vec<f64>,
}

fn step(variant: &mut Variant, x: &Tensor<2>, target: &Tensor<2>) {
    let model = variant.model.take().unwrap();
    let x = if variant.input_grad {
        x.clone().require_grad()
    } else {
        x.clone()
    };
    let loss = (model.forward(x) - target.clone()).square().mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    variant.model = Some(variant.optim.step(1e-4, model, grads));
}

/// The `q`-quantile (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number, got `{v}`"))
        })
        .unwrap_or(default)
}

fn main() {
    trainer::allocator::keep_freed_memory();
    // On a pool thread, as the trainer runs (see `trainer::on_compute_pool`).
    trainer::on_compute_pool(bench);
}

fn bench() {
    let rounds = arg("--rounds", 15);
    let steps = arg("--steps", 4);
    // `--only NAME`: float and one variant (for profiling that variant).
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let device = Device::flex().autodiff();
    device.seed(1);
    let x = Tensor::<2>::random([BATCH, WIDTH], Distribution::Normal(0.0, 1.0), &device);
    let target = Tensor::<2>::random([BATCH, WIDTH], Distribution::Normal(0.0, 1.0), &device);
    // `float_dx`: the float MLP with a gradient for its input batch. Learning the first layer's
    // input step size (LSQ) needs `∂L/∂x̂` of that input, one more matmul per step than float
    // training computes; this variant measures that floor on its own.
    let mut variants: Vec<Variant> = [
        ("float", QuantMapping::new(), false),
        ("w8a8", QuantMapping::w8a8(), false),
        ("lsq_w4a4", QuantMapping::w4a4(), false),
        ("float_dx", QuantMapping::new(), true),
    ]
    .into_iter()
    .filter(|(name, _, _)| {
        only.as_deref()
            .is_none_or(|o| *name == "float" || o == *name)
    })
    .map(|(name, mapping, input_grad)| Variant {
        name,
        input_grad,
        model: Some(Mlp::new(&mapping, &device)),
        optim: AdamConfig::new().init(),
        samples_ms: Vec::new(),
    })
    .collect();
    eprintln!("warming up ({} variants)…", variants.len());
    for v in variants.iter_mut() {
        for _ in 0..3 {
            step(v, &x, &target);
        }
    }
    for round in 0..rounds {
        // Rotate the order each round so no variant always runs first (or after the same one).
        let n = variants.len();
        for k in 0..n {
            let v = &mut variants[(round + k) % n];
            device.sync().ok();
            let start = Instant::now();
            for _ in 0..steps {
                step(v, &x, &target);
            }
            device.sync().ok();
            v.samples_ms
                .push(start.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    // Each round's ratio compares steps timed a moment apart, so slow drifts of a shared machine
    // cancel; the median over rounds is the result, the quartiles its spread.
    let float = variants[0].samples_ms.clone();
    let ratios: Vec<Vec<f64>> = variants
        .iter()
        .map(|v| {
            v.samples_ms
                .iter()
                .zip(&float)
                .map(|(q, f)| q / f)
                .collect()
        })
        .collect();
    let medians: Vec<f64> = variants
        .iter()
        .map(|v| quantile(&v.samples_ms, 0.5))
        .collect();
    let ratio_medians: Vec<f64> = ratios.iter().map(|r| quantile(r, 0.5)).collect();
    println!(
        "fake-quant training step, 3×Linear({WIDTH}→{WIDTH}) MLP, batch {BATCH}, flex, Adam; {rounds} rounds × {steps} steps, variants alternating"
    );
    println!("| variant | step (ms, median) | vs float (median of per-round ratios) | quartiles |");
    println!("|---|---|---|---|");
    for ((v, m), r) in variants.iter().zip(&medians).zip(&ratios) {
        println!(
            "| {} | {:.2} | {:.3}× | {:.3}–{:.3} |",
            v.name,
            m,
            quantile(r, 0.5),
            quantile(r, 0.25),
            quantile(r, 0.75)
        );
    }
    if medians.len() < 4 {
        return; // `--only`: no JSON summary
    }
    // LSQ's cost beyond the extra input-gradient matmul: its step over `float_dx`'s, per round.
    let lsq_over_dx: Vec<f64> = variants[2]
        .samples_ms
        .iter()
        .zip(&variants[3].samples_ms)
        .map(|(l, d)| l / d)
        .collect();
    println!(
        "LSQ W4A4 over float_dx (the float step plus the input-gradient matmul LSQ's first layer needs): {:.3}× (quartiles {:.3}–{:.3})",
        quantile(&lsq_over_dx, 0.5),
        quantile(&lsq_over_dx, 0.25),
        quantile(&lsq_over_dx, 0.75)
    );
    println!(
        "{{\"bench\":\"fake-quant\",\"device\":\"flex\",\"rounds\":{rounds},\"steps\":{steps},\"float_ms\":{:.3},\"w8a8_ms\":{:.3},\"lsq_w4a4_ms\":{:.3},\"float_dx_ms\":{:.3},\"w8a8_ratio\":{:.3},\"lsq_ratio\":{:.3},\"float_dx_ratio\":{:.3},\"lsq_over_float_dx\":{:.3}}}",
        medians[0],
        medians[1],
        medians[2],
        medians[3],
        ratio_medians[1],
        ratio_medians[2],
        ratio_medians[3],
        quantile(&lsq_over_dx, 0.5)
    );
}
