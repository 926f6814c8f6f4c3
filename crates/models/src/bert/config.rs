//! [`BertConfig`]: the shape of a BERT-architecture checkpoint (from its `config.json`) and the
//! quantizers to build it with.

use std::path::Path;

use burn::config::Config;
use quant::QuantMapping;
use serde::Deserialize;

use super::BertError;

/// Shape and regularisation of a BERT encoder, as Hugging Face's `BertConfig` has them, plus the
/// quantization mapping (empty: the float model).
#[derive(Config, Debug)]
pub struct BertConfig {
    /// Vocabulary size (rows of the word embedding table).
    pub vocab_size: usize,
    /// Width of every hidden state.
    pub hidden_size: usize,
    /// Number of encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`hidden_size` must be a multiple).
    pub num_attention_heads: usize,
    /// Width of the feed-forward block.
    pub intermediate_size: usize,
    /// Longest sequence the position table covers.
    pub max_position_embeddings: usize,
    /// Number of token types (segments).
    #[config(default = 2)]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[config(default = 1e-12)]
    pub layer_norm_eps: f64,
    /// Dropout on hidden states (embeddings, attention output, feed-forward output, heads).
    #[config(default = 0.1)]
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities.
    #[config(default = 0.1)]
    pub attention_probs_dropout_prob: f64,
    /// The quantizers, by path (empty: the float model).
    #[config(default = "QuantMapping::new()")]
    pub mapping: QuantMapping,
}

/// The fields of a Hugging Face `config.json` that this implementation reads; others are ignored.
#[derive(Deserialize)]
struct HfConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    #[serde(default = "two")]
    type_vocab_size: usize,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
    #[serde(default = "tenth")]
    hidden_dropout_prob: f64,
    #[serde(default = "tenth")]
    attention_probs_dropout_prob: f64,
    #[serde(default = "gelu")]
    hidden_act: String,
    #[serde(default = "absolute")]
    position_embedding_type: String,
    #[serde(default)]
    model_type: Option<String>,
}

fn two() -> usize {
    2
}
fn eps() -> f64 {
    1e-12
}
fn tenth() -> f64 {
    0.1
}
fn gelu() -> String {
    "gelu".into()
}
fn absolute() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reads a Hugging Face `config.json`; an error names the file and the field it cannot use.
    pub fn from_hf_file(path: impl AsRef<Path>) -> Result<Self, BertError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| BertError::file(path, e))?;
        Self::from_hf_json(&text).map_err(|e| e.in_file(path))
    }

    /// Parses the text of a Hugging Face `config.json`.
    pub fn from_hf_json(text: &str) -> Result<Self, BertError> {
        let hf: HfConfig =
            serde_json::from_str(text).map_err(|e| BertError::field("config.json", e))?;
        if let Some(kind) = hf.model_type.as_deref()
            && !matches!(kind, "bert" | "roberta")
        {
            return Err(BertError::field(
                "model_type",
                format!("`{kind}` is not a BERT-architecture model"),
            ));
        }
        if hf.hidden_act != "gelu" {
            return Err(BertError::field(
                "hidden_act",
                format!("`{}` is not supported (only `gelu`)", hf.hidden_act),
            ));
        }
        if hf.position_embedding_type != "absolute" {
            return Err(BertError::field(
                "position_embedding_type",
                format!(
                    "`{}` is not supported (only `absolute`)",
                    hf.position_embedding_type
                ),
            ));
        }
        let config = BertConfig::new(
            hf.vocab_size,
            hf.hidden_size,
            hf.num_hidden_layers,
            hf.num_attention_heads,
            hf.intermediate_size,
            hf.max_position_embeddings,
        )
        .with_type_vocab_size(hf.type_vocab_size)
        .with_layer_norm_eps(hf.layer_norm_eps)
        .with_hidden_dropout_prob(hf.hidden_dropout_prob)
        .with_attention_probs_dropout_prob(hf.attention_probs_dropout_prob);
        config.check()?;
        Ok(config)
    }

    /// Checks the shape, naming the field that is wrong.
    pub fn check(&self) -> Result<(), BertError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(BertError::field(field, "must be at least 1"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(BertError::field(
                "num_attention_heads",
                format!(
                    "{} heads do not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            ));
        }
        for (field, p) in [
            ("hidden_dropout_prob", self.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                self.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(BertError::field(field, format!("{p} is not in [0, 1)")));
            }
        }
        self.mapping
            .validate()
            .map_err(|e| BertError::field("mapping", e))
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}
