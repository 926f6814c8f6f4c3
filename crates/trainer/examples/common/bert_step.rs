//! The BERT fine-tuning step that `bench_bert_step` times and `tests/step_launches.rs` counts
//! launches of: a sequence-classification head on a MiniLM checkpoint (or a model of its
//! `config.json`'s shape with random weights), float, QAT W8A8 and QAT W4A8, each QAT twin
//! calibrated once on the batch (as PTQ / QAT start does) and with its own AdamW; one step is the
//! trainer's own `TrainStep` (forward, backward) and the optimizer update.
#![allow(dead_code)]

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor};
use burn::train::TrainStep;
use data::{TextBatch, TokenIds};
use models::{BertConfig, BertForSequenceClassification, BertHeadConfig, HfCheckpoint, Target};
use quant::QuantMapping;
use trainer::Trainee;

/// The step's variants: `(name, QAT preset)`, float first.
pub const VARIANTS: [(&str, Option<&str>); 3] = [
    ("float", None),
    ("qat_w8a8", Some("w8a8")),
    ("qat_w4a8", Some("w4a8")),
];

/// What the step runs on: a model of `config`'s shape, with the pretrained weights of
/// `checkpoint` or (`--random-weights`, no checkpoint) its random initialization. The step does
/// the same work either way.
pub struct Source {
    pub config: BertConfig,
    pub checkpoint: Option<HfCheckpoint>,
}

impl Source {
    /// The checkpoint in `dir`, or only its `config.json` with `random_weights`.
    pub fn open(dir: &str, random_weights: bool) -> Source {
        let fetch = "(fetch it with `cargo xtask fetch minilm`)";
        if random_weights {
            let config = BertConfig::from_hf_file(std::path::Path::new(dir).join("config.json"))
                .unwrap_or_else(|e| panic!("{e} {fetch}"));
            return Source {
                config,
                checkpoint: None,
            };
        }
        let checkpoint = HfCheckpoint::open(dir).unwrap_or_else(|e| panic!("{e} {fetch}"));
        Source {
            config: checkpoint.config.clone(),
            checkpoint: Some(checkpoint),
        }
    }
}

/// The float model on `device`, pretrained encoder loaded when there is a checkpoint.
pub fn float_model(source: &Source, device: &Device) -> BertForSequenceClassification {
    let mut net = BertHeadConfig::new(2)
        .init_sequence(&source.config, device)
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(checkpoint) = &source.checkpoint {
        checkpoint
            .load_into(&mut net, Target::Head)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    net
}

/// The float model on the autodiff `device`, or its QAT twin calibrated on `batch` as the
/// trainer's PTQ / QAT start does: on the inner device (no graph), loaded into the training model.
/// `float_embeddings`: the scheme with the embedding tables left float (to see what quantizing
/// the 30,522-row word table costs).
pub fn model(
    source: &Source,
    scheme: Option<&str>,
    float_embeddings: bool,
    batch: &TextBatch,
    device: &Device,
) -> Trainee<BertForSequenceClassification> {
    let net = float_model(source, device);
    let net = match scheme {
        None => net,
        Some(name) => {
            let mut mapping = QuantMapping::preset(name).unwrap();
            if float_embeddings {
                mapping.rules.push(quant::QuantRule {
                    pattern: Some(r"embeddings\.".into()),
                    layer: None,
                    rank: None,
                    weight: None,
                    activation: None,
                    float: true,
                });
            }
            let inner = device.clone().without_autodiff();
            let twin = float_model(source, &inner).quantized(&mapping).unwrap();
            let ids = batch.tokens.input_ids.clone().to_device(&inner);
            let mask = batch.tokens.attention_mask.clone().to_device(&inner);
            let calibrated = quant::qat::calibrate(twin, [(ids, mask)], |n, (ids, mask)| {
                n.forward(trainer::task::bert_input(TokenIds {
                    input_ids: ids,
                    attention_mask: mask,
                }));
            });
            net.quantized(&mapping)
                .unwrap()
                .load_record(calibrated.into_record())
        }
    };
    Trainee::new(net, None)
}

/// A batch of random token ids (no padding) and labels, `[batch, seq]`.
pub fn batch(vocab: usize, [batch, seq]: [usize; 2], device: &Device) -> TextBatch {
    TextBatch {
        tokens: TokenIds {
            input_ids: Tensor::<2, Int>::random(
                [batch, seq],
                Distribution::Uniform(1.0, vocab as f64 - 1.0),
                device,
            ),
            attention_mask: Tensor::<2, Bool>::ones([batch, seq], device),
        },
        targets: Tensor::<1, Int>::random([batch], Distribution::Uniform(0.0, 2.0), device),
    }
}

/// One variant of the step, and the times measured for it.
pub struct Variant {
    pub name: &'static str,
    pub model: Option<Trainee<BertForSequenceClassification>>,
    pub optim: ModuleOptimizer,
    pub samples_ms: Vec<f64>,
}

impl Variant {
    /// `model` with a fresh AdamW (the trainer's, weight decay 0.01 as its BERT tasks use).
    pub fn new(name: &'static str, model: Trainee<BertForSequenceClassification>) -> Self {
        Variant {
            name,
            model: Some(model),
            optim: super::optimizer::adamw(0.01),
            samples_ms: Vec::new(),
        }
    }
}

/// The step's learning rate (a BERT fine-tuning one).
pub const LEARNING_RATE: f64 = 5e-5;

/// One training step of `v` on `batch`: the trainer's `TrainStep` and the optimizer update.
pub fn step(v: &mut Variant, batch: &TextBatch) {
    let model = v.model.take().unwrap();
    let output = TrainStep::step(&model, batch.clone());
    v.model = Some(model.optimize(&mut v.optim, LEARNING_RATE.into(), output.grads));
}
