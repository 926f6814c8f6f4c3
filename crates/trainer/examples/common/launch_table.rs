//! Kernel launches per training step on CubeCL devices (wgpu, CUDA), printed beside the step
//! times: a figure that does not depend on the machine (see `quant::launches`). A step's launches
//! are counted in two parts, forward + backward (what the budget per quantizer covers) and the
//! optimizer's update (where learned scales cost their own launches).
#![allow(dead_code)]

use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use burn::train::TrainStep;
use quant::launches::{LaunchCount, count_step};
use trainer::Trainee;
use trainer::task::TaskNet;

/// One step's launches, in its two parts.
pub struct StepCount {
    /// The trainer's `TrainStep`: forward, loss and backward.
    pub forward_backward: LaunchCount,
    /// The optimizer's update of every parameter.
    pub optimizer: LaunchCount,
}

/// Runs one training step of variant `name`'s `model` on `batch` (the trainer's `TrainStep`, then
/// `optim`'s update at `lr`) and, on a CubeCL device, returns its row of the table, the launches
/// of the two parts counted apart (`None` on other devices). The device is synced between the
/// parts, which burn-fusion's chains then cannot span: measured on 2026-12-06, MiniLM's parts add
/// up to its step counted whole in every variant, LeNet-BN's float step to 117 against 118
/// (`tests/step_launches.rs` counts the step whole).
pub fn counted_step<N: TaskNet>(
    device: &Device,
    name: &'static str,
    model: &mut Option<Trainee<N>>,
    optim: &mut ModuleOptimizer,
    lr: f64,
    batch: N::Batch,
) -> Option<StepLaunches> {
    let trainee = model.take().expect("the variant has its model");
    let mut output = None;
    let forward_backward = count_step(device, || {
        output = Some(TrainStep::step(&trainee, batch));
    });
    let grads = output.expect("the step ran").grads;
    let optimizer = count_step(device, || {
        *model = Some(trainee.optimize(optim, lr.into(), grads));
    });
    let net = &model.as_ref().expect("the update ran").net;
    let (forward_backward, optimizer) = forward_backward.zip(optimizer)?;
    Some(StepLaunches::new(
        name,
        StepCount {
            forward_backward,
            optimizer,
        },
        net,
    ))
}

/// One variant's launches in one training step, and the quantizers its model has.
pub struct StepLaunches {
    pub name: &'static str,
    pub count: StepCount,
    pub weight_quantizers: usize,
    pub activation_quantizers: usize,
}

impl StepLaunches {
    /// The row of variant `name`, whose model `net` has the quantizers.
    pub fn new(name: &'static str, count: StepCount, net: &impl burn::module::Module) -> Self {
        let (weights, activations) = quant::qat::quantizer_paths(net);
        StepLaunches {
            name,
            count,
            weight_quantizers: weights.len(),
            activation_quantizers: activations.len(),
        }
    }

    /// The whole step's launches.
    pub fn total(&self) -> LaunchCount {
        self.count.forward_backward.clone() + self.count.optimizer.clone()
    }

    /// The most launches the quantizers may add to forward + backward over the float step: 3 per
    /// weight quantizer and 4 per activation quantizer with its observer.
    pub fn budget(&self) -> usize {
        3 * self.weight_quantizers + 4 * self.activation_quantizers
    }
}

/// Prints the launch table (the first row is the float step) and returns the JSON fields to
/// append to the bench's JSON object (starting with a comma), or nothing without rows. The
/// layers' integer biases (`b`, one launch of the bias kernel each) are listed beside the
/// quantizers but not in the budget; `ours` counts every launch of our kernels, theirs included.
pub fn report(rows: &[StepLaunches]) -> String {
    let Some(float) = rows.first() else {
        return String::new();
    };
    let float_parts = [&float.count.forward_backward, &float.count.optimizer].map(|c| c.total);
    println!(
        "\nkernel launches per step: {:<10} {:>9} {:>7} {:>12} {:>9} {:>14} {:>12} {:>8}",
        "variant",
        "launches",
        "added",
        "fwd+bwd add",
        "optim add",
        "quantizers",
        "budget 3w+4a",
        "ours"
    );
    let mut json = String::from(",\"launches\":{");
    for (k, row) in rows.iter().enumerate() {
        let total = row.total();
        let added = total.total as i64 - (float_parts[0] + float_parts[1]) as i64;
        let added_fb = row.count.forward_backward.total as i64 - float_parts[0] as i64;
        let added_optim = row.count.optimizer.total as i64 - float_parts[1] as i64;
        let fused = total.ours;
        let biases = total.matching("round_to_step_product");
        let shown = |n: i64| if k == 0 { "-".into() } else { format!("{n:+}") };
        println!(
            "                          {:<10} {:>9} {:>7} {:>12} {:>9} {:>14} {:>12} {:>8}",
            row.name,
            total.total,
            shown(added),
            shown(added_fb),
            shown(added_optim),
            format!(
                "{}w+{}a+{biases}b",
                row.weight_quantizers, row.activation_quantizers
            ),
            if k == 0 {
                "-".into()
            } else {
                row.budget().to_string()
            },
            fused
        );
        if k > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            "\"{}\":{{\"total\":{},\"added\":{added},\"added_forward_backward\":{added_fb},\"added_optimizer\":{added_optim},\"budget\":{},\"fused_kernels\":{fused},\"weight_quantizers\":{},\"activation_quantizers\":{},\"integer_biases\":{biases}}}",
            row.name,
            total.total,
            row.budget(),
            row.weight_quantizers,
            row.activation_quantizers
        ));
    }
    json.push('}');
    if std::env::var("QAT_LAUNCHES_BY_KERNEL").is_ok_and(|v| v == "1") {
        for row in rows {
            println!("{}:", row.name);
            for (kernel, n) in &row.total().by_kernel {
                println!("  {n:>5} × {kernel}");
            }
        }
    }
    json
}
