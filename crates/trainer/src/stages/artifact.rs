//! A stage's model files: `model.bpk` (Burn's record: weights, BN statistics, observer state,
//! learned scales) and `model.json` (what to build before loading it: network and scheme).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use quant::QuantMapping;
use serde::{Deserialize, Serialize};

use crate::report::write_file;
use crate::{ModelConfig, Net, TrainerError};

/// What `model.json` says about `model.bpk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// `float`, `ptq` or `qat`.
    pub variant: String,
    /// `float` or the scheme name.
    pub scheme: String,
    /// The network.
    pub model: ModelConfig,
    /// The quantizers (empty for float).
    pub mapping: QuantMapping,
}

/// Saves `net` and its meta into `dir`.
pub fn save_model(dir: &Path, net: Net, meta: &ModelMeta) -> Result<(), TrainerError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
    let path = dir.join("model.bpk");
    net.into_record()
        .save(&path)
        .map_err(|e| TrainerError::io(&path, format!("{e:?}")))?;
    write_file(
        &dir.join("model.json"),
        &serde_json::to_string_pretty(meta).expect("meta serializes"),
    )
}

/// Where `model.json` is for a checkpoint path: a stage folder, its `model.bpk`, or an epoch
/// checkpoint `checkpoint/model-N.bpk`.
fn resolve(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        return (path.join("model.bpk"), path.join("model.json"));
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let stage = if parent.file_name().is_some_and(|n| n == "checkpoint") {
        parent.parent().unwrap_or(parent)
    } else {
        parent
    };
    (path.to_path_buf(), stage.join("model.json"))
}

/// Loads a model from a stage folder or a `.bpk` file onto `device`, with its meta.
pub fn load_model(path: &Path, device: &Device) -> Result<(Net, ModelMeta), TrainerError> {
    let (bpk, json) = resolve(path);
    let checkpoint_error = |message: String| TrainerError::Checkpoint {
        path: bpk.clone(),
        message,
    };
    let text = std::fs::read_to_string(&json)
        .map_err(|e| checkpoint_error(format!("{}: {e}", json.display())))?;
    let meta: ModelMeta = serde_json::from_str(&text)
        .map_err(|e| checkpoint_error(format!("{}: {e}", json.display())))?;
    if !bpk.is_file() {
        return Err(checkpoint_error("not found".into()));
    }
    let record =
        ModuleRecord::load(&bpk).map_err(|e| checkpoint_error(format!("unreadable: {e:?}")))?;
    let net = Net::init(&meta.model, &meta.mapping, device)?;
    // Epoch checkpoints hold the training wrapper (`net.*` paths); finished models the bare network.
    let net = match net.clone().try_load_record(record.clone()) {
        Ok(net) => net,
        Err(_) => {
            crate::Classifier::new(net, None)
                .try_load_record(record)
                .map_err(|e| {
                    checkpoint_error(format!(
                        "does not match the {} network: {e:?}",
                        meta.variant
                    ))
                })?
                .net
        }
    };
    Ok((quant::control::set_observers(net, false), meta))
}
