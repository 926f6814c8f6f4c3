//! Dataset readers for QAT on real data.
//!
//! Every reader returns a [`DataError`] that names the file and, where it applies, the line or
//! byte offset of the problem, so a malformed file is a one-line diagnosis rather than a panic.
#![deny(missing_docs)]

mod augment;
mod batcher;
mod conll;
mod digits;
mod error;
mod idx;
mod image;
mod metadata;
mod sentences;
mod sequences;
mod split;
mod text_batch;
mod tokenizer;

pub use augment::*;
pub use batcher::*;
pub use conll::*;
pub use digits::*;
pub use error::*;
pub use idx::*;
pub use image::*;
pub use metadata::*;
pub use sentences::*;
pub use sequences::*;
pub use split::*;
pub use text_batch::*;
pub use tokenizer::*;
