//! A stage's model files: `model.bpk` (Burn's record: weights, BN statistics, observer state,
//! learned scales; with its `model.bpk.sha256`) and `model.json` (what to build before loading
//! it: network and scheme). Records are written with path-derived parameter ids, so one model
//! state always gives the same bytes, and verified against their checksum before use.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use quant::QuantMapping;
use serde::{Deserialize, Serialize};

use crate::report::write_file;
use crate::task::Task;
use crate::{ModelConfig, Trainee, TrainerError};

/// What `model.json` says about `model.bpk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// `float`, `ptq` or `qat`.
    pub variant: String,
    /// `float` or the scheme name.
    pub scheme: String,
    /// The network.
    pub model: ModelConfig,
    /// Number of labels it predicts (classes, or tags).
    #[serde(default = "ten")]
    pub num_classes: usize,
    /// The quantizers (empty for float).
    pub mapping: QuantMapping,
}

fn ten() -> usize {
    10
}

/// Saves `net` and its meta into `dir`.
pub fn save_model<N: Module>(dir: &Path, net: N, meta: &ModelMeta) -> Result<(), TrainerError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
    let path = dir.join("model.bpk");
    let bytes = net
        .into_record()
        .into_bytes()
        .map_err(|e| TrainerError::io(&path, format!("{e:?}")))?;
    let bytes = crate::checkpoint::canonical_record_bytes(bytes, true)
        .map_err(|e| TrainerError::io(&path, e))?;
    crate::integrity::write_checked(&path, &bytes).map_err(|e| TrainerError::io(&path, e))?;
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
    (path.to_path_buf(), stage_of(path).join("model.json"))
}

/// The stage folder of a `.bpk` file: its folder, or the one above `checkpoint/`.
fn stage_of(file: &Path) -> &Path {
    let parent = file.parent().unwrap_or(Path::new("."));
    if parent.file_name().is_some_and(|n| n == "checkpoint") {
        parent.parent().unwrap_or(parent)
    } else {
        parent
    }
}

/// Where to turn when `bpk` cannot be trusted: the newest epoch checkpoint of its stage that
/// verifies (other than `bpk` itself), or a rerun.
fn fallback_hint(bpk: &Path) -> String {
    let stage = stage_of(bpk);
    let (epoch, _) = crate::checkpoint::last_verified_checkpoint(stage);
    match epoch {
        Some(epoch) if stage.join(format!("checkpoint/model-{epoch}.bpk")) != bpk => format!(
            "; fall back to {} (the newest checkpoint that verifies) or rerun the stage with --fresh",
            stage
                .join(format!("checkpoint/model-{epoch}.bpk"))
                .display()
        ),
        _ => "; no checkpoint of this stage verifies: rerun the stage with --fresh".into(),
    }
}

/// Loads a model of `task` from a stage folder or a `.bpk` file onto `device`, with its meta,
/// after checking the file against its checksum.
pub fn load_model<T: Task>(
    task: &T,
    path: &Path,
    device: &Device,
) -> Result<(T::Net, ModelMeta), TrainerError> {
    let (bpk, json) = resolve(path);
    let checkpoint_error = |message: String| TrainerError::Checkpoint {
        path: bpk.clone(),
        message,
    };
    let text = std::fs::read_to_string(&json)
        .map_err(|e| checkpoint_error(format!("{}: {e}", json.display())))?;
    let meta: ModelMeta = serde_json::from_str(&text)
        .map_err(|e| checkpoint_error(format!("{}: {e}", json.display())))?;
    let bytes = crate::integrity::read_checked(&bpk).map_err(|e| {
        let e = e.to_string();
        let e = e
            .strip_prefix(&format!("{}: ", bpk.display()))
            .unwrap_or(&e);
        checkpoint_error(format!("{e}{}", fallback_hint(&bpk)))
    })?;
    let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| checkpoint_error(format!("unreadable: {e:?}")))?;
    let net = task.build(&meta.model, meta.num_classes, &meta.mapping, device)?;
    // Epoch checkpoints hold the training wrapper (`net.*` paths); finished models the bare network.
    let net = match net.clone().try_load_record(record.clone()) {
        Ok(net) => net,
        Err(_) => {
            Trainee::new(net, None)
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
