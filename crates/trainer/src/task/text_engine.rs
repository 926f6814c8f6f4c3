//! What the text tasks share on the integer engine: their metadata (sequence length and
//! tokenizer), token batches as engine inputs (padded to the artifact's sequence length), and
//! the tokenizer an artifact names for `infer`.

use std::path::{Path, PathBuf};

use data::{TextTokenizer, TokenIds};
use models::BertArtifact;

use super::TextSetup;
use crate::TrainerError;

/// How `infer` prepares text for an artifact.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TextInput {
    /// Tokens per sequence the program was exported for (shorter ones are padded).
    pub seq: usize,
    /// The checkpoint folder holding the tokenizer (`tokenizer.json` or `vocab.txt`).
    pub tokenizer: PathBuf,
    /// Id of the padding token.
    pub pad_id: u32,
}

impl TextSetup {
    /// The artifact metadata of a text task: `input` says how to tokenize.
    pub fn engine_meta(
        &self,
        mut meta: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Value {
        let input = TextInput {
            seq: self.batcher.max_length,
            tokenizer: self.checkpoint.dir.clone(),
            pad_id: self.batcher.pad_id,
        };
        meta.insert(
            "input".into(),
            serde_json::to_value(input).expect("serializes"),
        );
        serde_json::Value::Object(meta)
    }

    /// Tokens per sequence of the exported program, and the checkpoint's LayerNorm epsilon.
    pub fn export_shape(&self) -> (usize, f64) {
        (
            self.batcher.max_length,
            self.checkpoint.config.layer_norm_eps,
        )
    }

    /// The artifact of a text task's network, for sequences of `data.max_length` tokens.
    pub fn export(
        &self,
        net: &impl BertArtifact,
        meta: serde_json::Map<String, serde_json::Value>,
    ) -> Result<engine::Artifact, TrainerError> {
        let (seq, eps) = self.export_shape();
        Ok(net.to_artifact(seq, eps, self.engine_meta(meta))?)
    }
}

/// A batch's ids and mask as the engine takes them (`[batch, seq]`, padded from the batch's
/// own length), with `(batch, len)`.
pub fn engine_tokens(tokens: &TokenIds, seq: usize) -> (Vec<f32>, Vec<f32>, usize, usize) {
    let [batch, len] = tokens.input_ids.dims();
    let ids: Vec<i64> = tokens
        .input_ids
        .clone()
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .expect("int ids");
    // Booleans are stored differently per backend (u32 on wgpu): read them as integers.
    let mask: Vec<i64> = tokens
        .attention_mask
        .clone()
        .int()
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .expect("int mask");
    let (mut eids, mut emask) = (vec![0f32; batch * seq], vec![0f32; batch * seq]);
    for b in 0..batch {
        for t in 0..len.min(seq) {
            eids[b * seq + t] = ids[b * len + t] as f32;
            emask[b * seq + t] = mask[b * len + t] as f32;
        }
    }
    (eids, emask, batch, len)
}

/// Token sequences padded to `seq` as engine inputs.
pub fn engine_sequences(sequences: &[Vec<u32>], seq: usize, pad_id: u32) -> (Vec<f32>, Vec<f32>) {
    let mut ids = vec![pad_id as f32; sequences.len() * seq];
    let mut mask = vec![0f32; sequences.len() * seq];
    for (b, s) in sequences.iter().enumerate() {
        for (t, &id) in s.iter().take(seq).enumerate() {
            ids[b * seq + t] = id as f32;
            mask[b * seq + t] = 1.0;
        }
    }
    (ids, mask)
}

/// The artifact's text input description and its tokenizer.
pub fn artifact_tokenizer(
    artifact: &engine::Artifact,
) -> Result<(TextInput, TextTokenizer), TrainerError> {
    let input: TextInput = serde_json::from_value(artifact.meta["input"].clone()).map_err(|e| {
        TrainerError::Config {
            origin: "artifact metadata".into(),
            message: format!("`input` is not a text input: {e}"),
        }
    })?;
    let tokenizer = TextTokenizer::from_dir(&input.tokenizer, input.seq).map_err(|e| {
        TrainerError::io(
            &input.tokenizer,
            format!("the artifact's tokenizer cannot be read ({e}); the artifact names its checkpoint folder"),
        )
    })?;
    Ok((input, tokenizer))
}

/// The lines of a text file that hold something.
pub fn text_lines(path: &Path) -> Result<Vec<String>, TrainerError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainerError::io(path, e))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        return Err(TrainerError::io(path, "holds no text"));
    }
    Ok(lines)
}
