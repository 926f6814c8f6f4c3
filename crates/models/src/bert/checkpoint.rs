//! [`HfCheckpoint`]: a Hugging Face model folder (`config.json`, `model.safetensors` or
//! `pytorch_model.bin`) loaded into a [`Bert`](super::Bert) or one of its heads with burn-store.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::burn_pack::Tensor as PackTensor;
use burn::store::{
    FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleContext, ModuleSnapshot, ModuleStore,
    PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use burn::tensor::DType;

use super::{BertConfig, BertError};

/// Where the encoder sits in the model being loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A bare encoder ([`super::Bert`]): paths `embeddings.*`, `encoder.*`, `pooler.*`.
    Encoder,
    /// A task head ([`super::BertForSequenceClassification`],
    /// [`super::BertForTokenClassification`]): paths `bert.*` and `classifier.*`.
    Head,
}

/// What a load did besides filling every parameter.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadReport {
    /// Tensors copied into the model.
    pub loaded: usize,
    /// The checkpoint had no classifier: the head keeps its fresh initialisation (fine-tuning
    /// a pretrained encoder).
    pub new_head: bool,
    /// Checkpoint tensors deliberately not used (buffers such as `position_ids`, a pretraining
    /// head, a pooler the model does not have).
    pub ignored: Vec<String>,
}

/// A Hugging Face checkpoint folder.
#[derive(Debug, Clone)]
pub struct HfCheckpoint {
    /// The folder.
    pub dir: PathBuf,
    /// Its `config.json`.
    pub config: BertConfig,
    /// Its weights: `model.safetensors`, else `pytorch_model.bin`.
    pub weights: PathBuf,
}

/// Hugging Face names → this crate's (applied after a `bert.` prefix is stripped).
const RENAMES: [(&str, &str); 2] = [
    (r"\.attention\.self\.", ".attention.self_attention."),
    (r"(^|\.)LayerNorm\.", "${1}layer_norm."),
];

/// Hugging Face → Burn tensors: Linear weights `[out, in]` transposed to `[in, out]` (for the
/// quant crate's `QuantLinear` too, which burn-store's adapter does not know by name), LayerNorm
/// `weight`/`bias` renamed `gamma`/`beta`, every float tensor cast to f32 (checkpoints may be
/// stored in f16).
#[derive(Debug, Clone, Copy)]
struct HfAdapter;

impl ModuleAdapter for HfAdapter {
    fn adapt(&self, tensor: PackTensor, ctx: ModuleContext<'_>) -> PackTensor {
        let linear = ["Struct:Linear".to_string()];
        let ctx = if ctx.module_type() == Some("Struct:QuantLinear") {
            ModuleContext::new(&linear)
        } else {
            ctx
        };
        let tensor = PyTorchToBurnAdapter.adapt(tensor, ctx);
        FloatCastAdapter::to(DType::F32).adapt(tensor, ctx)
    }

    fn get_alternative_param_name(&self, param_name: &str, module_type: &str) -> Option<String> {
        PyTorchToBurnAdapter.get_alternative_param_name(param_name, module_type)
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

/// Whether a model path is quantizer state (absent from float checkpoints, set by calibration).
fn is_quantizer_state(path: &str) -> bool {
    path.split('.')
        .any(|part| part == "quant" || part.ends_with("_quant"))
}

fn list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

impl HfCheckpoint {
    /// Opens a checkpoint folder: reads `config.json` and finds the weights file.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, BertError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(BertError::file(
                &dir,
                "not a folder (a Hugging Face checkpoint folder holds config.json and model.safetensors; `cargo xtask fetch minilm` fetches one)",
            ));
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(BertError::file(
                &config_path,
                "not found: a checkpoint folder needs its config.json",
            ));
        }
        let config = BertConfig::from_hf_file(&config_path)?;
        let weights = ["model.safetensors", "pytorch_model.bin"]
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.is_file())
            .ok_or_else(|| {
                BertError::file(&dir, "has neither model.safetensors nor pytorch_model.bin")
            })?;
        Ok(HfCheckpoint {
            dir,
            config,
            weights,
        })
    }

    fn remapper(target: Target) -> KeyRemapper {
        let mut patterns = vec![(r"^(?:bert|roberta)\.(.+)", "$1".to_string())];
        patterns.extend(RENAMES.iter().map(|(from, to)| (*from, to.to_string())));
        if target == Target::Head {
            patterns.push((r"^(embeddings|encoder|pooler)\.", "bert.$1.".to_string()));
        }
        KeyRemapper::from_patterns(patterns).expect("the built-in patterns are valid regexes")
    }

    /// Copies the checkpoint's weights into `model` (float or fake-quantized: quantizer state is
    /// not in a float checkpoint and is left as it is, so give a quantized model its quantizers
    /// again with `quantized(mapping)` to start the weight quantizers from the loaded weights). Every missing, unexpected or mis-shaped
    /// tensor is reported in one error naming them; a checkpoint without a classifier loads into
    /// a head model with the head left fresh ([`LoadReport::new_head`]).
    pub fn load_into<M: Module>(
        &self,
        model: &mut M,
        target: Target,
    ) -> Result<LoadReport, BertError> {
        let remapper = Self::remapper(target);
        let is_bin = self.weights.extension().is_some_and(|e| e == "bin");
        // The stores' own `load_from` adapts with `PyTorchToBurnAdapter`, which transposes only
        // `burn::nn::Linear`; read the (renamed) tensors and apply them with `HfAdapter`.
        let tensors: Result<Vec<PackTensor>, String> = if is_bin {
            let mut store = PytorchStore::from_file(&self.weights).remap(remapper);
            store
                .get_all_tensors()
                .map(|t| t.values().cloned().collect())
                .map_err(|e| e.to_string())
        } else {
            let mut store = SafetensorsStore::from_file(&self.weights).remap(remapper);
            store
                .get_all_tensors()
                .map(|t| t.values().cloned().collect())
                .map_err(|e| e.to_string())
        };
        let tensors = tensors.map_err(|e| BertError::file(&self.weights, e))?;
        let result = model.apply(tensors, None, Some(Box::new(HfAdapter)), false);

        let missing: Vec<String> = result
            .missing
            .iter()
            .map(|(path, _)| path.clone())
            .filter(|path| !is_quantizer_state(path))
            .collect();
        let head_missing = missing
            .iter()
            .filter(|p| p.starts_with("classifier."))
            .count();
        let has_classifier = result.unused.iter().any(|p| p.starts_with("classifier."))
            || result.applied.iter().any(|p| p.starts_with("classifier."));
        let new_head = target == Target::Head && head_missing > 0 && !has_classifier;
        let missing: Vec<String> = missing
            .into_iter()
            .filter(|p| !(new_head && p.starts_with("classifier.")))
            .collect();
        let model_has_pooler = result
            .applied
            .iter()
            .chain(result.missing.iter().map(|(p, _)| p))
            .any(|p| p.contains("pooler."));
        let (ignored, unexpected): (Vec<String>, Vec<String>) =
            result.unused.iter().cloned().partition(|path| {
                path.ends_with("position_ids")
                    || path.starts_with("cls.")
                    || (!model_has_pooler && path.contains("pooler."))
                    || (target == Target::Encoder && path.starts_with("classifier."))
            });
        let misshaped: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("{} missing: {}", missing.len(), list(&missing)));
        }
        if !unexpected.is_empty() {
            problems.push(format!(
                "{} unexpected: {}",
                unexpected.len(),
                list(&unexpected)
            ));
        }
        if !misshaped.is_empty() {
            problems.push(format!(
                "{} not loadable: {}",
                misshaped.len(),
                misshaped.join("; ")
            ));
        }
        if !problems.is_empty() {
            return Err(BertError::file(
                &self.weights,
                format!(
                    "does not fit the model ({}; names after renaming to this crate's paths)",
                    problems.join("; ")
                ),
            ));
        }
        Ok(LoadReport {
            loaded: result.applied.len(),
            new_head,
            ignored,
        })
    }
}
