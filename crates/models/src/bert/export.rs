//! BERT lowered to the engine's integer program, op for op as [`Bert::forward`] computes it:
//! embeddings (int8 rows → floats, summed, LayerNorm, quantized), each layer (Q/K/V with their
//! output grids, the int8 attention, the output projection's float accumulators plus the float
//! residual, LayerNorm, quantized; the GELU intermediate quantized; the second residual block),
//! then the pooler (first token, dense, tanh, quantized) or the token head. Sequences are padded
//! to the `seq` the artifact is exported for; the mask keeps padding out of every real token.

use burn::nn::LayerNorm;
use engine::{EmbedIndex, ProgramBuilder};
use quant::QuantError;

use super::{Bert, BertForSequenceClassification, BertForTokenClassification};
use crate::export::finish;

fn host(t: burn::tensor::Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

fn layer_norm(
    b: &mut ProgramBuilder,
    name: &str,
    x: usize,
    norm: &LayerNorm,
    eps: f64,
) -> Result<usize, QuantError> {
    let gamma = host(norm.gamma.val());
    let beta = match &norm.beta {
        Some(beta) => host(beta.val()),
        None => vec![0.0; gamma.len()],
    };
    b.layer_norm(name, x, gamma, beta, eps as f32)
        .map_err(|e| QuantError::field(name, format!("cannot export: {e}")))
}

fn engine_error(path: &str) -> impl Fn(engine::EngineError) -> QuantError + '_ {
    move |e| QuantError::field(path, format!("cannot export: {e}"))
}

impl Bert {
    /// Writes the encoder for `seq` tokens into `b` (inputs `input_ids` and `attention_mask`,
    /// `[seq]` each); returns the last layer's output codes and the pooler's output codes.
    fn export_encoder(
        &self,
        b: &mut ProgramBuilder,
        prefix: &str,
        seq: usize,
        eps: f64,
    ) -> Result<(usize, Option<usize>), QuantError> {
        let ids = b.input("input_ids", &[seq]);
        let mask = b.input("attention_mask", &[seq]);
        let e = &self.embeddings;
        let p = |rest: &str| format!("{prefix}.{rest}");
        let mut table = |name: &str, table: &quant::QuantEmbedding, index| {
            let path = p(&format!("embeddings.{name}"));
            let weights = table.export_table(&path)?;
            b.embed(&path, weights, index, seq)
                .map_err(engine_error(&path))
        };
        let word = table(
            "word_embeddings",
            &e.word_embeddings,
            EmbedIndex::Ids { input: ids },
        )?;
        let position = table(
            "position_embeddings",
            &e.position_embeddings,
            EmbedIndex::Positions,
        )?;
        let token_type = table(
            "token_type_embeddings",
            &e.token_type_embeddings,
            EmbedIndex::First,
        )?;
        let x = b.add_float(&p("embeddings.sum"), word, position);
        let x = b.add_float(&p("embeddings.sum"), x, token_type);
        let mut x = layer_norm(b, &p("embeddings.layer_norm"), x, &e.layer_norm, eps)?;
        let mut xq = e.output_quant.export(b, &p("embeddings.output_quant"), x)?;
        for (i, layer) in self.encoder.layer.iter().enumerate() {
            let path = p(&format!("encoder.layer.{i}"));
            let at = |rest: &str| format!("{path}.{rest}");
            let sa = &layer.attention.self_attention;
            let q = sa
                .query
                .export(b, &at("attention.self_attention.query"), xq)?;
            let k = sa.key.export(b, &at("attention.self_attention.key"), xq)?;
            let v = sa
                .value
                .export(b, &at("attention.self_attention.value"), xq)?;
            let grid = |stub: &quant::QuantStub, name: &str| {
                let name = at(name);
                let q = stub.quant.as_ref().ok_or_else(|| {
                    QuantError::field(
                        &name,
                        "cannot export: no quantizer (the engine's attention is integer)",
                    )
                })?;
                quant::export::activation_grid(q, &name)
            };
            let probs = grid(
                &sa.probs_quant,
                "attention.self_attention.probs_quant.quant",
            )?;
            let context = grid(
                &sa.context_quant,
                "attention.self_attention.context_quant.quant",
            )?;
            let ctx = b.attention(
                &at("attention.self_attention"),
                [q, k, v],
                mask,
                sa.heads(),
                probs,
                context,
            );
            let out = &layer.attention.output;
            let y = out.dense.export(b, &at("attention.output.dense"), ctx)?;
            let h = b.add_float(&at("attention.output.residual"), y, x);
            let h = layer_norm(
                b,
                &at("attention.output.layer_norm"),
                h,
                &out.layer_norm,
                eps,
            )?;
            let hq = out
                .output_quant
                .export(b, &at("attention.output.output_quant"), h)?;
            let inner = layer
                .intermediate
                .dense
                .export(b, &at("intermediate.dense"), hq)?;
            let inner = b.gelu(&at("intermediate.gelu"), inner);
            let inner = layer.intermediate.output_quant.export(
                b,
                &at("intermediate.output_quant"),
                inner,
            )?;
            let y = layer.output.dense.export(b, &at("output.dense"), inner)?;
            let y = b.add_float(&at("output.residual"), y, h);
            x = layer_norm(
                b,
                &at("output.layer_norm"),
                y,
                &layer.output.layer_norm,
                eps,
            )?;
            xq = layer
                .output
                .output_quant
                .export(b, &at("output.output_quant"), x)?;
        }
        let pooled = match &self.pooler {
            None => None,
            Some(pooler) => {
                let first = b.select_row(&p("pooler.first"), xq, 0);
                let y = pooler.dense.export(b, &p("pooler.dense"), first)?;
                let y = b.tanh(&p("pooler.tanh"), y);
                Some(
                    pooler
                        .output_quant
                        .export(b, &p("pooler.output_quant"), y)?,
                )
            }
        };
        Ok((xq, pooled))
    }
}

/// A BERT model with a head that lowers itself to the engine's program: what the trainer's
/// text tasks export through, whichever head they train.
pub trait BertArtifact {
    /// The integer program for sequences of `seq` tokens (inputs `input_ids`,
    /// `attention_mask`), with the checkpoint's LayerNorm `eps`, carrying `meta`.
    fn to_artifact(
        &self,
        seq: usize,
        eps: f64,
        meta: serde_json::Value,
    ) -> Result<engine::Artifact, QuantError>;
}

impl BertArtifact for BertForSequenceClassification {
    fn to_artifact(
        &self,
        seq: usize,
        eps: f64,
        meta: serde_json::Value,
    ) -> Result<engine::Artifact, QuantError> {
        let mut b = ProgramBuilder::new();
        let (_, pooled) = self.bert.export_encoder(&mut b, "bert", seq, eps)?;
        let pooled = pooled.ok_or_else(|| {
            QuantError::field(
                "bert.pooler",
                "cannot export: a sequence classifier needs its pooler",
            )
        })?;
        let logits = self.classifier.export(&mut b, "classifier", pooled)?;
        b.output(logits);
        finish(b, meta)
    }
}

impl BertArtifact for BertForTokenClassification {
    fn to_artifact(
        &self,
        seq: usize,
        eps: f64,
        meta: serde_json::Value,
    ) -> Result<engine::Artifact, QuantError> {
        let mut b = ProgramBuilder::new();
        let (hidden, _) = self.bert.export_encoder(&mut b, "bert", seq, eps)?;
        let logits = self.classifier.export(&mut b, "classifier", hidden)?;
        b.output(logits);
        finish(b, meta)
    }
}
