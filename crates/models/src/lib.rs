//! Models built from `quant` layers. Each model is float or QAT by its [`quant::QuantMapping`]
//! (an empty mapping gives the float model) with the same parameter paths either way, so a float
//! checkpoint loads into the QAT model.
#![deny(missing_docs)]

mod lenet;
mod resnet;

pub use lenet::*;
pub use resnet::*;
