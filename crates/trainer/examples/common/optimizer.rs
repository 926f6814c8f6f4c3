//! The optimizer the benchmark steps update the weights with: the trainer's.
#![allow(dead_code)]

/// Whether `--burn-adamw` is on the command line: the steps then update the weights with Burn's
/// `AdamW` instead of the trainer's `FusedAdamW` (the same values bit for bit), to compare speed.
pub fn burn_adamw() -> bool {
    std::env::args().any(|a| a == "--burn-adamw")
}

/// The trainer's optimizer for the weights, `FusedAdamW` with `weight_decay`, or Burn's `AdamW`
/// with the same settings under `--burn-adamw`.
pub fn adamw(weight_decay: f32) -> burn::optim::ModuleOptimizer {
    if burn_adamw() {
        return burn::optim::AdamWConfig::new()
            .with_weight_decay(weight_decay)
            .build()
            .into();
    }
    trainer::FusedAdamWConfig::new()
        .with_weight_decay(weight_decay)
        .build()
        .expect("valid AdamW settings")
        .into()
}
