//! The QAT workflow as one command, on burn-train's `Learner`:
//! `train` (float) → `ptq` (calibrate + quantize) → `qat` (fine-tune with fake quantization) →
//! `eval` (classification reports) → `runs/<name>/report.{json,md}` and `curves.svg`.
//!
//! The binary (`cargo run -p trainer -- --backend wgpu`) is a thin shell over [`run`]; each
//! command is also a function of [`stages`] for programs that drive the workflow themselves.
#![deny(missing_docs)]

pub mod allocator;
mod backend;
pub mod checkpoint;
mod cli;
mod compute_pool;
mod config;
mod dataset;
pub mod denormals;
mod error;
mod fit;
mod fused_adamw;
mod gpu_memory;
pub use gpu_memory::{GPU_MEMORY_VAR, GpuMemory};
pub mod integrity;
mod interrupt;
mod net;
mod progress;
pub mod report;
mod run;
pub mod stages;
mod stop_watch;
pub mod task;
mod trainee;

pub use backend::*;
pub use cli::*;
pub use compute_pool::*;
pub use config::*;
pub use dataset::*;
pub use error::*;
pub use fit::*;
pub use fused_adamw::{AdamWKernels, AdamWScalars, FusedAdamW, FusedAdamWConfig};
pub use interrupt::*;
pub use net::*;
pub use progress::*;
pub use run::*;
pub use stop_watch::*;
pub use trainee::*;
