//! The command line: `trainer [--backend B] [--config F] [--set k=v]… [--no-tui] [--resume|--fresh] [COMMAND]`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Quantization-aware training on Burn: train a float CNN, post-training quantize it, fine-tune
/// it with QAT, evaluate and report, on any Burn backend.
#[derive(Debug, Parser)]
#[command(name = "trainer", version)]
pub struct Cli {
    /// Burn backend: flex, ndarray, wgpu, vulkan, metal or cuda (those compiled in).
    #[arg(long, global = true, default_value = "flex")]
    pub backend: String,
    /// Run config (TOML); default: the built-in tiny run on the embedded Fashion-MNIST subset.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Override a config value, e.g. `--set train.epochs=3` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Plain progress lines instead of the TUI dashboard.
    #[arg(long, global = true)]
    pub no_tui: bool,
    /// Continue interrupted stages from their last checkpoint (and reuse finished ones).
    #[arg(long, global = true, conflicts_with = "fresh")]
    pub resume: bool,
    /// Delete earlier outputs of the stages this command runs and start them over.
    #[arg(long, global = true)]
    pub fresh: bool,
    /// What to do (default: pipeline).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The workflow's steps.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Train the float model.
    Train,
    /// Post-training quantize the float model with each scheme (calibrate, quantize, evaluate).
    Ptq,
    /// Quantization-aware fine-tuning of the float model with each scheme.
    Qat,
    /// Evaluate a checkpoint (or every finished stage of the run): classification report.
    Eval {
        /// A stage folder, its `model.bpk`, or an epoch checkpoint `checkpoint/model-N.bpk`.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Export each scheme's QAT (else PTQ) model as an integer artifact `int-<scheme>/model.qat`,
    /// run it with the integer engine on the test set and check it against the fake-quant model.
    Export,
    /// Predictions of an exported integer model for a file of inputs (an IDX images file for the
    /// image models); no config or dataset needed.
    Infer {
        /// The artifact (`runs/<name>/int-<scheme>/model.qat`).
        #[arg(long)]
        artifact: PathBuf,
        /// The inputs.
        #[arg(long)]
        input: PathBuf,
        /// Also write the predictions as JSON here.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Which layers lose the accuracy: each quantized layer (or op) of each scheme left in float
    /// in turn, calibrated as PTQ and scored against the float and fully quantized models; then
    /// the most sensitive left out together, a mixed-precision plan with its size and mapping
    /// rules. Writes `sensitivity-<scheme>/report.{md,json}`; needs the float model (`train`).
    Sensitivity(crate::stages::SensitivityOptions),
    /// train → ptq → qat → export → report (the default).
    Pipeline,
}
