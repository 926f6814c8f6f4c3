//! BERT against an independent NumPy reference on the committed fixture checkpoint, and Hugging
//! Face checkpoint loading: prefixed and unprefixed names, a head checkpoint, and every error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData, Tolerance};
use models::{
    Bert, BertConfig, BertError, BertForSequenceClassification, BertHeadConfig, BertInput,
    HfCheckpoint, Target,
};
use quant::QuantMapping;
use safetensors::SafeTensors;
use safetensors::tensor::TensorView;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> PathBuf {
    root().join("models/fixtures/minilm-l1")
}

struct Reference {
    input_ids: Vec<Vec<i64>>,
    mask: Vec<Vec<i64>>,
    hidden: Vec<f32>,
    pooled: Vec<f32>,
    logits: Vec<f32>,
    num_labels: usize,
}

fn flat(value: &serde_json::Value) -> Vec<f32> {
    match value {
        serde_json::Value::Array(items) => items.iter().flat_map(flat).collect(),
        v => vec![v.as_f64().expect("a number") as f32],
    }
}

fn reference() -> Reference {
    let path = root().join("crates/models/tests/reference/bert_reference.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ints = |key: &str| -> Vec<Vec<i64>> {
        serde_json::from_value(json[key].clone()).expect("int rows")
    };
    Reference {
        input_ids: ints("input_ids"),
        mask: ints("attention_mask"),
        hidden: flat(&json["last_hidden_state"]),
        pooled: flat(&json["pooled"]),
        logits: flat(&json["logits"]),
        num_labels: json["num_labels"].as_u64().unwrap() as usize,
    }
}

fn input(reference: &Reference, device: &Device) -> BertInput {
    let [batch, seq] = [reference.input_ids.len(), reference.input_ids[0].len()];
    let ids: Vec<i64> = reference.input_ids.concat();
    let mask: Vec<bool> = reference.mask.concat().iter().map(|&m| m == 1).collect();
    BertInput {
        input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids, [batch, seq]), device),
        attention_mask: Tensor::<2, Bool>::from_data(TensorData::new(mask, [batch, seq]), device),
        token_type_ids: None,
    }
}

fn close(actual: Tensor<2>, expected: &[f32], what: &str) {
    let shape = actual.dims();
    actual.into_data().assert_approx_eq::<f32>(
        &TensorData::new(expected.to_vec(), shape),
        Tolerance::absolute(1e-4),
    );
    eprintln!("{what}: within 1e-4 of the reference");
}

/// The sentence head of the reference script: `W[r, c] = sin(0.37·r·(c+1))/10`, `b[c] = c/10`.
fn formula_head(
    model: BertForSequenceClassification,
    num_labels: usize,
) -> BertForSequenceClassification {
    let device = Device::flex();
    let hidden = model.classifier.weight.lazy_shape().dims::<2>()[0];
    let w: Vec<f32> = (0..hidden)
        .flat_map(|r| {
            (0..num_labels).map(move |c| ((0.37 * r as f64 * (c + 1) as f64).sin() / 10.0) as f32)
        })
        .collect();
    let b: Vec<f32> = (0..num_labels).map(|c| 0.1 * c as f32).collect();
    let mut model = model;
    model.classifier.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w, [hidden, num_labels]),
        &device,
    ));
    model.classifier.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b, [num_labels]),
        &device,
    )));
    model
}

#[test]
fn float_bert_matches_the_numpy_reference() {
    let device = Device::flex();
    let reference = reference();
    let checkpoint = HfCheckpoint::open(fixture()).unwrap();
    let mut bert = checkpoint.config.try_init(true, &device).unwrap();
    let report = checkpoint.load_into(&mut bert, Target::Encoder).unwrap();
    assert!(!report.new_head);
    assert_eq!(report.ignored, vec!["embeddings.position_ids".to_string()]);
    let bert = bert.valid();
    let out = bert.forward(input(&reference, &device));
    let [b, s, h] = out.hidden.dims();
    close(
        out.hidden.reshape([b * s, h]),
        &reference.hidden,
        "last hidden state",
    );
    close(out.pooled.unwrap(), &reference.pooled, "pooled");

    let mut head = BertHeadConfig::new(reference.num_labels)
        .init_sequence(&checkpoint.config, &device)
        .unwrap();
    let report = checkpoint.load_into(&mut head, Target::Head).unwrap();
    assert!(
        report.new_head,
        "MiniLM has no classifier: the head starts fresh"
    );
    let head = formula_head(head, reference.num_labels).valid();
    close(
        head.forward(input(&reference, &device)),
        &reference.logits,
        "logits",
    );
}

#[test]
fn the_checkpoint_loads_into_the_quantized_model_with_quantizers_bypassed_equal_to_float() {
    let device = Device::flex();
    let reference = reference();
    let checkpoint = HfCheckpoint::open(fixture()).unwrap();
    let config = checkpoint.config.clone().with_mapping(QuantMapping::w8a8());
    let mut bert = config.try_init(true, &device).unwrap();
    checkpoint.load_into(&mut bert, Target::Encoder).unwrap();
    // Weight quantizers were set up from the initial weights: start them from the loaded ones.
    let bert = bert.quantized(&config.mapping, "").unwrap();
    // (No `valid()`: it would re-enable fake quantization. Dropout is off on a plain device.)
    let bert = quant::control::set_fake_quant(bert, false);
    let out = bert.forward(input(&reference, &device));
    let [b, s, h] = out.hidden.dims();
    close(
        out.hidden.reshape([b * s, h]),
        &reference.hidden,
        "bypassed W8A8 hidden state",
    );
}

/// Writes the fixture's tensors, renamed / changed by `edit`, as `dir/model.safetensors` with
/// the fixture's config.
fn variant(dir: &Path, edit: impl Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>)) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut items: Vec<_> = tensors
        .names()
        .into_iter()
        .map(|name| {
            let view = tensors.tensor(name).unwrap();
            (
                name.to_string(),
                view.dtype(),
                view.shape().to_vec(),
                view.data().to_vec(),
            )
        })
        .collect();
    edit(&mut items);
    let views: Vec<(String, TensorView)> = items
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let data = safetensors::serialize(views, None::<HashMap<String, String>>).unwrap();
    std::fs::write(dir.join("model.safetensors"), data).unwrap();
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bert-checkpoint-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn f16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| half_bits(*v).to_le_bytes())
        .collect()
}

/// f32 → IEEE half bits for small exact values (0, ±0.5, ±1): enough for the head tensors here.
fn half_bits(v: f32) -> u16 {
    match v {
        0.0 => 0,
        0.5 => 0x3800,
        -0.5 => 0xB800,
        1.0 => 0x3C00,
        -1.0 => 0xBC00,
        _ => panic!("no exact half for {v}"),
    }
}

fn load_head(
    dir: &Path,
    labels: usize,
) -> Result<(BertForSequenceClassification, models::LoadReport), BertError> {
    let checkpoint = HfCheckpoint::open(dir)?;
    let mut head =
        BertHeadConfig::new(labels).init_sequence(&checkpoint.config, &Device::flex())?;
    let report = checkpoint.load_into(&mut head, Target::Head)?;
    Ok((head, report))
}

#[test]
fn a_fine_tuned_head_checkpoint_with_the_bert_prefix_loads_with_its_classifier() {
    let dir = temp("head");
    variant(&dir, |items| {
        for item in items.iter_mut() {
            item.0 = format!("bert.{}", item.0);
        }
        let hidden = 384;
        let w: Vec<f32> = (0..2 * hidden)
            .map(|i| [0.5, -0.5, 1.0, 0.0][i % 4])
            .collect();
        items.push((
            "classifier.weight".into(),
            safetensors::Dtype::F16,
            vec![2, hidden],
            f16_bytes(&w),
        ));
        items.push((
            "classifier.bias".into(),
            safetensors::Dtype::F16,
            vec![2],
            f16_bytes(&[1.0, -1.0]),
        ));
    });
    let (head, report) = load_head(&dir, 2).unwrap();
    assert!(!report.new_head);
    // Hugging Face's [out, in] weight arrives transposed to Burn's [in, out].
    let w = head
        .classifier
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(&w[..4], &[0.5, 0.5, -0.5, -0.5]);
    let b = head
        .classifier
        .bias
        .unwrap()
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(b, vec![1.0, -1.0]);
    // The same checkpoint also loads into a bare encoder, its classifier ignored.
    let checkpoint = HfCheckpoint::open(&dir).unwrap();
    let mut bert: Bert = checkpoint.config.try_init(true, &Device::flex()).unwrap();
    let report = checkpoint.load_into(&mut bert, Target::Encoder).unwrap();
    assert!(
        report.ignored.contains(&"classifier.weight".to_string()),
        "{report:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

fn load_error(
    name: &str,
    edit: impl Fn(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) -> String {
    let dir = temp(name);
    variant(&dir, edit);
    let err = load_head(&dir, 2)
        .err()
        .expect("the load must fail")
        .to_string();
    std::fs::remove_dir_all(dir).unwrap();
    eprintln!("{name}: {err}");
    err
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_one_error_naming_them() {
    let err = load_error("missing", |items| {
        items.retain(|i| i.0 != "encoder.layer.0.attention.self.key.bias");
    });
    assert!(
        err.contains("model.safetensors") && err.contains("1 missing"),
        "{err}"
    );
    assert!(
        err.contains("bert.encoder.layer.0.attention.self_attention.key.bias"),
        "{err}"
    );

    let err = load_error("unexpected", |items| {
        items.push((
            "encoder.layer.0.extra.weight".into(),
            safetensors::Dtype::F16,
            vec![2],
            f16_bytes(&[0.0, 1.0]),
        ));
    });
    assert!(
        err.contains("1 unexpected") && err.contains("extra.weight"),
        "{err}"
    );

    let err = load_error("misshaped", |items| {
        let item = items
            .iter_mut()
            .find(|i| i.0 == "embeddings.LayerNorm.bias")
            .unwrap();
        item.2 = vec![item.2[0] / 2];
        item.3.truncate(item.3.len() / 2);
    });
    assert!(
        err.contains("not loadable") && err.contains("layer_norm.beta"),
        "{err}"
    );
}

#[test]
fn a_folder_without_config_json_or_weights_is_a_clear_error() {
    let dir = temp("no-config");
    std::fs::create_dir_all(&dir).unwrap();
    let err = HfCheckpoint::open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("not found"),
        "{err}"
    );
    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).unwrap();
    let err = HfCheckpoint::open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("neither model.safetensors nor pytorch_model.bin"),
        "{err}"
    );
    std::fs::write(dir.join("config.json"), r#"{"hidden_size": 10}"#).unwrap();
    let err = HfCheckpoint::open(&dir).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("missing field"),
        "{err}"
    );
    let err = HfCheckpoint::open(dir.join("absent"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a folder"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_json_fields_this_model_cannot_run_are_named() {
    let base = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let with = |key: &str, value: &str| {
        let mut json: serde_json::Value = serde_json::from_str(&base).unwrap();
        json[key] = serde_json::from_str(value).unwrap();
        BertConfig::from_hf_json(&json.to_string())
            .unwrap_err()
            .to_string()
    };
    assert!(with("hidden_act", "\"relu\"").contains("`hidden_act`"));
    assert!(with("num_attention_heads", "5").contains("`num_attention_heads`"));
    assert!(
        with("position_embedding_type", "\"relative_key\"").contains("`position_embedding_type`")
    );
    assert!(with("model_type", "\"gpt2\"").contains("`model_type`"));
}

/// A tiny random `BertForSequenceClassification` written by transformers as `pytorch_model.bin`
/// and as `model.safetensors` (`tests/reference/tiny_bert.py`): both load with their head and
/// give the logits transformers computed.
#[test]
fn pytorch_bin_and_safetensors_heads_give_the_transformers_logits() {
    let device = Device::flex();
    let dir = root().join("crates/models/tests/reference");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tiny_bert.json")).unwrap())
            .unwrap();
    let ints = |key: &str| -> Vec<Vec<i64>> { serde_json::from_value(json[key].clone()).unwrap() };
    let reference = Reference {
        input_ids: ints("input_ids"),
        mask: ints("attention_mask"),
        hidden: Vec::new(),
        pooled: Vec::new(),
        logits: flat(&json["logits"]),
        num_labels: json["num_labels"].as_u64().unwrap() as usize,
    };
    for format in ["bin", "safetensors"] {
        let checkpoint = HfCheckpoint::open(dir.join(format!("tiny-bert-{format}"))).unwrap();
        let mut head = BertHeadConfig::new(reference.num_labels)
            .init_sequence(&checkpoint.config, &device)
            .unwrap();
        let report = checkpoint.load_into(&mut head, Target::Head).unwrap();
        assert!(
            !report.new_head,
            "{format}: the classifier is in the checkpoint"
        );
        let logits = head.valid().forward(input(&reference, &device));
        close(logits, &reference.logits, &format!("{format} logits"));
    }
}
