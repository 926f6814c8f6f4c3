//! What a model costs once deployed as integers.
mod storage_size;

pub use storage_size::*;
