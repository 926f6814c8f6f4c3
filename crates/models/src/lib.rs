//! Models built from `quant` layers. Each model's `Config` carries a [`quant::QuantMapping`]
//! (an empty mapping gives the float model) from which every quantizer, weight and activation,
//! is looked up by its path; parameter paths are the same either way, so a float checkpoint loads
//! into the QAT model. Each model's `forward` is an integer program: one quantizer per integer
//! tensor, where it is produced (see the `quant` crate and `ARCHITECTURE.md`).
#![deny(missing_docs)]

mod bert;
mod export;
pub mod kernels;
mod lenet;
mod lstm;
mod resnet;
#[cfg(test)]
mod testing;

pub use bert::*;
pub use lenet::*;
pub use lstm::*;
pub use resnet::*;
