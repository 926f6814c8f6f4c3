//! Values between the engine's layout (`[c, h, w]` channels-last) and the program's
//! (row-major), and out as the [`Value`]s a run returns.

use super::buffers::{Act, Buf};
use crate::interpreter::Value;
use crate::program::ValueInfo;

/// The value's data in the program's row-major (NCHW) order.
pub(super) fn row_major(act: &Act, info: &ValueInfo, batch: usize) -> Buf {
    if !act.nhwc || info.shape.len() != 3 {
        return act.buf.clone();
    }
    match &act.buf {
        Buf::Codes(c) => Buf::Codes(from_nhwc(c, batch, &info.shape)),
        Buf::Float(f) => Buf::Float(from_nhwc(f, batch, &info.shape)),
    }
}

pub(super) fn to_nhwc<T: Copy + Default>(x: &[T], batch: usize, shape: &[usize]) -> Vec<T> {
    let [c, h, w] = shape[..] else { unreachable!() };
    let mut y = vec![T::default(); x.len()];
    for n in 0..batch {
        for ci in 0..c {
            for p in 0..h * w {
                y[(n * h * w + p) * c + ci] = x[(n * c + ci) * h * w + p];
            }
        }
    }
    y
}

pub(super) fn from_nhwc<T: Copy + Default>(x: &[T], batch: usize, shape: &[usize]) -> Vec<T> {
    let [c, h, w] = shape[..] else { unreachable!() };
    let mut y = vec![T::default(); x.len()];
    for n in 0..batch {
        for ci in 0..c {
            for p in 0..h * w {
                y[(n * c + ci) * h * w + p] = x[(n * h * w + p) * c + ci];
            }
        }
    }
    y
}

pub(super) fn to_value(act: &Act, info: &ValueInfo, batch: usize) -> Value {
    match row_major(act, info, batch) {
        Buf::Codes(c) => Value::Codes(c.into_iter().map(i32::from).collect()),
        Buf::Float(f) => Value::Float(f),
    }
}
