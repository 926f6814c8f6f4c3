//! Moving data between Burn tensors, the engine and an artifact's metadata, for every task.

use burn::tensor::{Int, Tensor};

use crate::TrainerError;

/// A host copy of a float tensor.
pub fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 after conversion")
}

/// A host copy of an int tensor, as indices.
pub fn ints<const D: usize>(t: Tensor<D, Int>) -> Vec<usize> {
    t.into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("an int tensor")
        .into_iter()
        .map(|v| v as usize)
        .collect()
}

/// The engine's logits for `n` items (its first output, float).
pub fn engine_logits(
    engine: &engine::Engine,
    n: usize,
    inputs: &[&[f32]],
) -> Result<Vec<f32>, TrainerError> {
    match engine.run(n, inputs)?.into_iter().next() {
        Some(engine::Value::Float(logits)) => Ok(logits),
        _ => Err(TrainerError::Unsupported(
            "the artifact's first output is not float logits".into(),
        )),
    }
}

/// The index of each row's largest value.
pub fn argmax_rows(values: &[f32], width: usize) -> Vec<usize> {
    values
        .chunks_exact(width)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        })
        .collect()
}

/// The label names an artifact's metadata lists.
pub fn artifact_labels(artifact: &engine::Artifact) -> Result<Vec<String>, TrainerError> {
    serde_json::from_value(artifact.meta["labels"].clone())
        .ok()
        .filter(|l: &Vec<String>| !l.is_empty())
        .ok_or_else(|| TrainerError::Config {
            origin: "artifact metadata".into(),
            message: "`labels` is missing or malformed".into(),
        })
}
