//! [`DatasetMeta`]: what a dataset says about itself, in `dataset.json` beside its files — class
//! names and the pixel statistics to normalise with — so a run on any IDX dataset reports its own
//! classes instead of another dataset's.
//!
//! ```json
//! { "name": "fashion-mnist", "classes": ["T-shirt/top", "Trouser", …], "mean": 0.2860, "std": 0.3530 }
//! ```
//!
//! Every field is optional. Without a file (a user's own data), classes are named by their index
//! and the statistics are computed from the training split ([`pixel_statistics`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{DataError, ImageDataset};

/// The name of the metadata file in a dataset folder.
pub const DATASET_META_FILE: &str = "dataset.json";

/// What a dataset says about itself.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetMeta {
    /// The dataset's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Class names in label order (label `i` is `classes[i]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// Mean pixel value (pixels in `[0, 1]`) of the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f32>,
    /// Standard deviation of the pixel values of the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f32>,
    /// Where the data comes from, and its licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl DatasetMeta {
    /// Reads `dir/dataset.json`; `Ok(None)` when the folder has none. Errors name the file and,
    /// for a malformed one, the line and column.
    pub fn read(dir: &Path) -> Result<Option<Self>, DataError> {
        let path = dir.join(DATASET_META_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(DataError::Io { path, source }),
        };
        let meta: DatasetMeta = serde_json::from_str(&text).map_err(|e| {
            DataError::malformed(&path, Some(e.line()), format!("column {}: {e}", e.column()))
        })?;
        if let (Some(_), None) | (None, Some(_)) = (meta.mean, meta.std) {
            return Err(DataError::malformed(
                &path,
                None,
                "give both `mean` and `std`, or neither",
            ));
        }
        if meta.std.is_some_and(|s| s <= 0.0 || !s.is_finite()) {
            return Err(DataError::malformed(
                &path,
                None,
                "`std` must be a positive number",
            ));
        }
        Ok(Some(meta))
    }

    /// Writes the metadata as `dir/dataset.json`.
    pub fn write(&self, dir: &Path) -> Result<(), DataError> {
        let path = dir.join(DATASET_META_FILE);
        let text = serde_json::to_string_pretty(self).expect("metadata serializes") + "\n";
        std::fs::write(&path, text).map_err(|source| DataError::Io { path, source })
    }
}

/// Mean and standard deviation of every pixel of `dataset` (population statistics, in f64).
pub fn pixel_statistics(dataset: &ImageDataset) -> (f32, f32) {
    let (mut sum, mut sum_sq, mut n) = (0f64, 0f64, 0usize);
    for item in &dataset.items {
        for &p in &item.pixels {
            sum += p as f64;
            sum_sq += (p as f64) * (p as f64);
        }
        n += item.pixels.len();
    }
    if n == 0 {
        return (0.0, 1.0);
    }
    let mean = sum / n as f64;
    let var = (sum_sq / n as f64 - mean * mean).max(0.0);
    let std = if var > 0.0 { var.sqrt() } else { 1.0 };
    (mean as f32, std as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageItem;

    #[test]
    fn statistics_of_a_known_dataset_and_metadata_errors_name_the_file() {
        let dataset = ImageDataset {
            items: vec![
                ImageItem {
                    pixels: vec![0.0, 1.0],
                    label: 0,
                },
                ImageItem {
                    pixels: vec![0.5, 0.5],
                    label: 1,
                },
            ],
            height: 1,
            width: 2,
            num_classes: 2,
        };
        let (mean, std) = pixel_statistics(&dataset);
        assert!(
            (mean - 0.5).abs() < 1e-7 && (std - (0.125f32).sqrt()).abs() < 1e-6,
            "{mean} {std}"
        );
        let dir = std::env::temp_dir().join(format!("data-meta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(DatasetMeta::read(&dir).unwrap(), None);
        let meta = DatasetMeta {
            classes: vec!["a".into(), "b".into()],
            mean: Some(0.3),
            std: Some(0.2),
            ..Default::default()
        };
        meta.write(&dir).unwrap();
        assert_eq!(DatasetMeta::read(&dir).unwrap(), Some(meta));
        std::fs::write(
            dir.join(DATASET_META_FILE),
            "{\n  \"classes\": [\"a\",\n  \"colour\": 1 }",
        )
        .unwrap();
        let err = DatasetMeta::read(&dir).unwrap_err().to_string();
        assert!(err.contains("dataset.json:3"), "{err}");
        std::fs::write(dir.join(DATASET_META_FILE), r#"{"mean": 0.3}"#).unwrap();
        assert!(
            DatasetMeta::read(&dir)
                .unwrap_err()
                .to_string()
                .contains("`std`")
        );
        std::fs::remove_dir_all(dir).ok();
    }
}
