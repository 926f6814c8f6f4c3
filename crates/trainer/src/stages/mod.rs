//! The trainer's commands: `train`, `ptq`, `qat`, `eval` and `pipeline`, over a shared [`Context`].
mod artifact;
mod context;
mod evaluate;
mod pipeline;
mod ptq;
mod qat;
mod train;

pub use artifact::*;
pub use context::*;
pub use evaluate::*;
pub use pipeline::*;
pub use ptq::*;
pub use qat::*;
pub use train::*;
