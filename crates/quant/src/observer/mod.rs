//! Observers: running statistics of a tensor's range, from which fixed scales are computed.
//!
//! An [`Observer`] keeps per-parameter `min` and `max` in `RunningState`s, so they are saved in
//! module records and updated from `forward(&self)`. Per batch, a range estimator
//! ([`ObserverKind`]) reduces the tensor to one `(min, max)` per parameter; the observer then
//! accumulates it (running extremes, or an exponential moving average). Estimators: min-max,
//! percentile, MSE search (`range.rs`), entropy / KL (`entropy.rs`).
mod entropy;
mod kind;
mod observer;
mod range;

pub use entropy::*;
pub use kind::*;
pub use observer::*;
pub use range::*;
