//! Checkpoints the trainer can trust: burn-train's per-epoch records written atomically with a
//! checksum ([`VerifiedCheckpointer`]), model records with parameter ids derived from their paths
//! ([`with_path_ids`], [`canonical_record_bytes`]), and the newest checkpoint that verifies.
//!
//! Burn gives every parameter a random id (from the OS's entropy), and records store it: two runs
//! with one seed would otherwise write different bytes, and an optimizer group built from the
//! ids of a freshly built model would not match a checkpoint loaded into it. The trainer
//! therefore sets every parameter's id to a hash of its path before training, and writes model
//! records with those ids (buffers such as batch-norm statistics included).

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::tensor::{Bytes, Tensor};
use burn::train::checkpoint::{Checkpoint, Checkpointer, CheckpointerError};

use crate::integrity::{read_checked, remove_checked, write_checked};

/// FNV-1a 64 of a parameter path: a stable id.
pub fn path_id(path: &str) -> u64 {
    path.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// `model` with every parameter's id set to [`path_id`] of its path.
pub fn with_path_ids<M: Module>(model: M) -> M {
    model.map(&mut PathIds::default())
}

#[derive(Default)]
struct PathIds {
    path: Vec<String>,
}

impl ModuleMapper for PathIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let id = ParamId::from(path_id(&self.path.join(".")));
        let (_, value, mapper) = param.consume();
        Param::from_mapped_value(id, value, mapper)
    }
}

/// A burnpack record's bytes in a canonical form, so the same state always gives the same bytes:
/// tensors sorted by name (an optimizer record lists its state in hash-map order), and with
/// `path_ids` (module records) every tensor's id replaced by [`path_id`] of its name.
pub fn canonical_record_bytes(bytes: Bytes, path_ids: bool) -> Result<Bytes, String> {
    let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| e.to_string())?;
    let metadata = reader.metadata().clone();
    let scalars = reader.scalars().clone();
    let mut tensors = reader
        .into_tensors()
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|t| {
            let (name, dtype, shape, id, data) = t.into_parts().map_err(|e| e.to_string())?;
            let id = if path_ids {
                id.map(|_| path_id(&name))
            } else {
                id
            };
            Ok(burn_pack::Tensor::new(name, dtype, shape, id, data))
        })
        .collect::<Result<Vec<_>, String>>()?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = burn_pack::Writer::new(tensors);
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    for (key, value) in scalars {
        writer = writer.with_scalar(&key, value);
    }
    writer.into_bytes().map_err(|e| e.to_string())
}

/// burn-train's checkpointer for one kind of record (`model`, `optim`, `scheduler`), writing
/// `<dir>/<name>-<epoch>.bpk` atomically with its `.sha256`, and verifying it on restore.
pub struct VerifiedCheckpointer {
    dir: PathBuf,
    name: String,
    path_ids: bool,
}

impl VerifiedCheckpointer {
    /// A checkpointer of `name` records in `dir`, written in canonical form; `path_ids` rewrites
    /// parameter ids from paths (for module records).
    pub fn new(dir: &Path, name: &str, path_ids: bool) -> Self {
        VerifiedCheckpointer {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            path_ids,
        }
    }

    fn path(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("{}-{epoch}.bpk", self.name))
    }
}

impl<R: Checkpoint> Checkpointer<R> for VerifiedCheckpointer {
    fn save(&self, epoch: usize, record: R) -> Result<(), CheckpointerError> {
        let bytes = record
            .checkpoint_into_bytes()
            .map_err(CheckpointerError::Record)?;
        let bytes =
            canonical_record_bytes(bytes, self.path_ids).map_err(CheckpointerError::Unknown)?;
        write_checked(&self.path(epoch), &bytes).map_err(CheckpointerError::IOError)
    }

    fn delete(&self, epoch: usize) -> Result<(), CheckpointerError> {
        remove_checked(&self.path(epoch)).map_err(CheckpointerError::IOError)
    }

    fn restore(&self, epoch: usize) -> Result<R, CheckpointerError> {
        let bytes = read_checked(&self.path(epoch))
            .map_err(|e| CheckpointerError::Unknown(e.to_string()))?;
        R::checkpoint_from_bytes(Bytes::from_bytes_vec(bytes)).map_err(CheckpointerError::Record)
    }
}

/// The record kinds of an epoch checkpoint.
pub const CHECKPOINT_KINDS: [&str; 3] = ["model", "optim", "scheduler"];

/// The newest epoch in `<stage>/checkpoint/` whose three files all verify, and one line for
/// each newer epoch skipped (damaged, or cut off before its checksum was written).
pub fn last_verified_checkpoint(stage_dir: &Path) -> (Option<usize>, Vec<String>) {
    let dir = stage_dir.join("checkpoint");
    let mut epochs: Vec<usize> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix("model-")?
                .strip_suffix(".bpk")?
                .parse()
                .ok()
        })
        .collect();
    epochs.sort_unstable_by(|a, b| b.cmp(a));
    let mut skipped = Vec::new();
    for epoch in epochs {
        let failure = CHECKPOINT_KINDS.iter().find_map(|kind| {
            read_checked(&dir.join(format!("{kind}-{epoch}.bpk")))
                .err()
                .map(|e| e.to_string())
        });
        match failure {
            None => return (Some(epoch), skipped),
            Some(reason) => {
                skipped.push(format!("skipping the epoch-{epoch} checkpoint: {reason}"))
            }
        }
    }
    (None, skipped)
}
