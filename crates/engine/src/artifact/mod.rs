//! [`Artifact`]: the exported integer model as one file — program, tensors and metadata — with
//! a format version and a SHA-256 checksum; loading validates everything before anything runs.
//!
//! Layout (little-endian):
//! ```text
//! magic "BQATINT\0" (8) | format version u32 | header length u32 | header (zlib-compressed JSON) | tensor bytes | SHA-256 of all before (32)
//! ```
//! The header holds the [`Program`], a directory of tensors (name, type, shape, offset and
//! length in the tensor bytes) and free-form metadata (what the model is, its scheme, labels and
//! input normalisation — the trainer's business). Codes narrower than a byte are packed. The
//! header is compressed because every byte counts in a 2-bit model: ResNet-20's JSON header is
//! 13 KB, 19% of its W2 weights; compressed, about 2 KB.

mod tensor;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use tensor::{DType, StoredTensor, TensorData};

use crate::error::EngineError;
use crate::program::{MAX_ELEMS, Program};

/// First bytes of every artifact.
pub const MAGIC: &[u8; 8] = b"BQATINT\0";
/// The format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const PREFIX: usize = 16;
const DIGEST: usize = 32;

/// An integer model: its program, its tensors by name, and metadata for the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    /// What runs.
    pub program: Program,
    /// Weights, scales and biases by name (`layer.weight`, …).
    pub tensors: BTreeMap<String, StoredTensor>,
    /// Free-form description (model kind, scheme, labels, input normalisation).
    pub meta: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Header {
    program: Program,
    tensors: Vec<Entry>,
    meta: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    offset: usize,
    len: usize,
}

/// Largest decompressed header accepted: a hostile file cannot make the reader allocate more.
const MAX_HEADER: u64 = 64 << 20;

fn compress(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(bytes).expect("writing to memory");
    z.finish().expect("writing to memory")
}

fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .take(MAX_HEADER + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress: {e}"))?;
    if out.len() as u64 > MAX_HEADER {
        return Err(format!("decompresses to more than {MAX_HEADER} bytes"));
    }
    Ok(out)
}

/// Test support: the artifact with its header JSON replaced by `edit(json)` — compressed,
/// re-laid-out and re-signed — so tests can reach the checks behind the parser.
#[doc(hidden)]
pub fn with_header_json(bytes: &[u8], edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Option<Vec<u8>> {
    let header_len = u32::from_le_bytes(bytes.get(12..16)?.try_into().ok()?) as usize;
    let header = bytes.get(PREFIX..PREFIX + header_len)?;
    let blob = bytes.get(PREFIX + header_len..bytes.len().checked_sub(DIGEST)?)?;
    let json = edit(decompress(header).ok()?);
    let header = compress(&json);
    let mut out = bytes[..12].to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(blob);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Some(out)
}

impl Artifact {
    /// Checks the program against the tensors (see [`Program::check`]).
    pub fn validate(&self) -> Result<(), EngineError> {
        self.program.check(&self.tensors)
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut blob = Vec::new();
        let entries = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let bytes = t.to_bytes();
                let entry = Entry {
                    name: name.clone(),
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    offset: blob.len(),
                    len: bytes.len(),
                };
                blob.extend_from_slice(&bytes);
                entry
            })
            .collect();
        let header = Header {
            program: self.program.clone(),
            tensors: entries,
            meta: self.meta.clone(),
        };
        let header = compress(&serde_json::to_vec(&header).expect("the header serializes"));
        let mut out = Vec::with_capacity(PREFIX + header.len() + blob.len() + DIGEST);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&blob);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Reads and validates an artifact from `bytes`; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Self, EngineError> {
        let format = |what: String| EngineError::Format {
            origin: origin.to_string(),
            what,
        };
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(format(
                "not an integer-model artifact (its first bytes are not \"BQATINT\")".into(),
            ));
        }
        if bytes.len() < PREFIX + DIGEST {
            return Err(format(format!(
                "truncated: {} bytes is shorter than the smallest artifact",
                bytes.len()
            )));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(8);
        if version > FORMAT_VERSION {
            return Err(EngineError::NewerVersion {
                origin: origin.to_string(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(format("format version 0 does not exist".into()));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST);
        if Sha256::digest(body).as_slice() != digest {
            return Err(format(
                "checksum mismatch: the file is truncated or corrupted (SHA-256 of its contents differs from the one stored at its end)".into(),
            ));
        }
        let header_len = word(12) as usize;
        let rest = &body[PREFIX..];
        if header_len > rest.len() {
            return Err(format(format!(
                "header length {header_len} exceeds the {} bytes after the prefix",
                rest.len()
            )));
        }
        let (header, blob) = rest.split_at(header_len);
        let header = decompress(header).map_err(|e| format(format!("header: {e}")))?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|e| format(format!("header (JSON): {e}")))?;
        let mut tensors = BTreeMap::new();
        for entry in header.tensors {
            let at = |what: String| format(format!("tensor `{}`: {what}", entry.name));
            let elems = entry
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= MAX_ELEMS)
                .ok_or_else(|| at(format!("shape {:?} is too large", entry.shape)))?;
            let end = entry
                .offset
                .checked_add(entry.len)
                .filter(|&end| end <= blob.len())
                .ok_or_else(|| {
                    at(format!(
                        "bytes {}..+{} lie outside the {} tensor bytes",
                        entry.offset,
                        entry.len,
                        blob.len()
                    ))
                })?;
            if entry.len != entry.dtype.stored_len(elems) {
                return Err(at(format!(
                    "{} bytes, but {elems} {:?} elements take {}",
                    entry.len,
                    entry.dtype,
                    entry.dtype.stored_len(elems)
                )));
            }
            let t = StoredTensor::from_bytes(entry.dtype, entry.shape, &blob[entry.offset..end])
                .map_err(at)?;
            if tensors.insert(entry.name.clone(), t).is_some() {
                return Err(at("listed twice".into()));
            }
        }
        let artifact = Artifact {
            program: header.program,
            tensors,
            meta: header.meta,
        };
        artifact.validate().map_err(|e| match e {
            EngineError::Graph { at, what } => format(format!("{at}: {what}")),
            other => other,
        })?;
        Ok(artifact)
    }

    /// Writes the artifact atomically (a temporary file synced, then renamed over `path`).
    pub fn write(&self, path: &Path) -> Result<(), EngineError> {
        let io = |source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&self.to_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads and validates the artifact at `path`.
    pub fn read(path: &Path) -> Result<Self, EngineError> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }
}
