//! The deployed integer model.
//!
//! - [`Artifact`]: the exported file — a versioned, checksummed container of the integer
//!   [`Program`] (values with their grids, ops in order) and its tensors (sub-byte weight codes
//!   packed, per-channel scales, int32 biases); loading validates everything.
//! - [`Interpreter`]: the reference executor (plain loops), the oracle for everything else.
//! - [`Engine`]: the fast executor — int8 GEMM with run-time SIMD dispatch ([`gemm`]), im2col
//!   convolutions, requantization fused into the GEMM, threads over tiles.
//! - [`ProgramBuilder`]: what exporters (the `quant` crate's layers, the models) write through.
//!
//! No Burn here: a deployed model needs only this crate.

pub mod approx;
pub mod artifact;
mod attention;
pub mod builder;
pub mod engine;
pub mod error;
pub mod float_ops;
pub mod gemm;
pub mod interpreter;
pub mod lstm;
pub mod onnx;
pub mod program;
pub mod requant;
mod simd;

pub use artifact::{Artifact, DType, FORMAT_VERSION, StoredTensor, TensorData};
pub use builder::{LayerWeights, ProgramBuilder};
pub use engine::Engine;
pub use error::EngineError;
pub use gemm::Isa;
pub use interpreter::{Interpreter, Value};
pub use lstm::{LstmGrids, LstmLayer};
pub use program::{ActQuant, EmbedIndex, Op, Program, ValueInfo};
