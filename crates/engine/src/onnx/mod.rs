//! ONNX export of an integer artifact: the program in QDQ form ([`export`]; the LSTM unrolled
//! frame by frame in `lstm.rs`) written with the ONNX protobuf schema's messages ([`proto`]).

pub mod export;
mod lstm;
pub mod proto;

pub use export::{BATCH_AXIS, ONNX_OPS, ONNX_OPSET, OnnxWeights};
