//! Quantizer modules: the state (observer, learned parameters, switches) behind one fake-quantized
//! tensor, used as the activation quantizer ([`FakeQuant`]) and as the weight reparameterization.
mod config;
mod learned;
mod quantizer;

pub use config::*;
pub use learned::*;
pub use quantizer::*;
