//! The trainer's commands: `train`, `ptq`, `qat`, `export`, `infer`, `eval`, `sensitivity` and `pipeline`, over a shared [`Context`].
mod artifact;
mod context;
mod evaluate;
mod export;
mod infer;
mod pipeline;
mod ptq;
mod qat;
mod sensitivity;
mod train;

pub use artifact::*;
pub use context::*;
pub use evaluate::*;
pub use export::*;
pub use infer::*;
pub use pipeline::*;
pub use ptq::*;
pub use qat::*;
pub use sensitivity::*;
pub use train::*;
