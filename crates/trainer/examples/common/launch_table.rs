//! Kernel launches per training step on CubeCL devices (wgpu, CUDA), printed beside the step
//! times: a figure that does not depend on the machine (see `quant::launches`).
#![allow(dead_code)]

use quant::launches::LaunchCount;

/// One variant's launches in one training step, and the quantizers its model has.
pub struct StepLaunches {
    pub name: &'static str,
    pub count: LaunchCount,
    pub weight_quantizers: usize,
    pub activation_quantizers: usize,
}

impl StepLaunches {
    /// The most launches the quantizers may add over the float step: 3 per weight quantizer and
    /// 4 per activation quantizer with its observer (forward + backward).
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
    println!(
        "\nkernel launches per step: {:<10} {:>9} {:>7} {:>14} {:>12} {:>8}",
        "variant", "launches", "added", "quantizers", "budget 3w+4a", "ours"
    );
    let mut json = String::from(",\"launches\":{");
    for (k, row) in rows.iter().enumerate() {
        let added = row.count.total as i64 - float.count.total as i64;
        let fused = row.count.ours;
        let biases = row.count.matching("round_to_step_product");
        println!(
            "                          {:<10} {:>9} {:>7} {:>14} {:>12} {:>8}",
            row.name,
            row.count.total,
            if k == 0 {
                "-".into()
            } else {
                format!("{added:+}")
            },
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
            "\"{}\":{{\"total\":{},\"added\":{added},\"budget\":{},\"fused_kernels\":{fused},\"weight_quantizers\":{},\"activation_quantizers\":{},\"integer_biases\":{biases}}}",
            row.name,
            row.count.total,
            row.budget(),
            row.weight_quantizers,
            row.activation_quantizers
        ));
    }
    json.push('}');
    if std::env::var("QAT_LAUNCHES_BY_KERNEL").is_ok_and(|v| v == "1") {
        for row in rows {
            println!("{}:", row.name);
            for (kernel, n) in &row.count.by_kernel {
                println!("  {n:>5} × {kernel}");
            }
        }
    }
    json
}
