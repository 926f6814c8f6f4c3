//! BERT for any BERT-architecture checkpoint, float or fake-quantized at every matmul.
//!
//! Integer program of one encoder layer (each quantizer from the config's mapping, by path):
//! the layer input's codes (the previous LayerNorm's `output_quant`) → `query` / `key` / `value`
//! (per-channel weights, each output quantized) → `QKᵀ` on codes → scale, mask, softmax (float) →
//! `probs_quant` → `probs·V` on codes → `context_quant` → `attention.output.dense` → residual add
//! and LayerNorm (float) → `attention.output.output_quant` → `intermediate.dense` → GELU (float)
//! → `intermediate.output_quant` → `output.dense` → residual add and LayerNorm (float) →
//! `output.output_quant`. Embedding tables are quantized per row. LayerNorm, softmax, GELU and
//! the residual adds stay float.
mod attention;
mod checkpoint;
mod config;
mod embeddings;
mod error;
mod export;
mod heads;
mod layer;
mod model;

pub use attention::*;
pub use checkpoint::*;
pub use config::*;
pub use embeddings::*;
pub use error::*;
pub use export::BertArtifact;
pub use heads::*;
pub use layer::*;
pub use model::*;
