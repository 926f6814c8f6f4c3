//! The UCI optical digits as scikit-learn ships them: `digits.csv.gz`, one image per line,
//! 64 pixel values in `0..=16` followed by the label `0..=9`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::{DataError, ImageDataset, ImageItem};

/// Reads the digits CSV (gzip-compressed if the name ends in `.gz`), scaling pixels to `[0, 1]`.
pub fn read_digits_csv(path: impl AsRef<Path>) -> Result<ImageDataset, DataError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut items = Vec::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line_no = index + 1;
        let line = line.map_err(|source| DataError::Io {
            path: path.into(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 65 {
            let reason = format!(
                "expected 65 comma-separated values (64 pixels and a label), found {}",
                fields.len()
            );
            return Err(DataError::malformed(path, Some(line_no), reason));
        }
        let mut pixels = Vec::with_capacity(64);
        for (col, field) in fields[..64].iter().enumerate() {
            let value: f32 = field.trim().parse().map_err(|_| {
                DataError::malformed(
                    path,
                    Some(line_no),
                    format!("column {}: `{field}` is not a number", col + 1),
                )
            })?;
            if !(0.0..=16.0).contains(&value) {
                return Err(DataError::malformed(
                    path,
                    Some(line_no),
                    format!("column {}: pixel {value} is outside 0..=16", col + 1),
                ));
            }
            pixels.push(value / 16.0);
        }
        let label: usize = fields[64]
            .trim()
            .parse()
            .ok()
            .filter(|l| *l < 10)
            .ok_or_else(|| {
                DataError::malformed(
                    path,
                    Some(line_no),
                    format!("label `{}` is not a digit 0..=9", fields[64]),
                )
            })?;
        items.push(ImageItem { pixels, label });
    }
    if items.is_empty() {
        return Err(DataError::malformed(path, None, "no rows"));
    }
    Ok(ImageDataset {
        items,
        height: 8,
        width: 8,
        num_classes: 10,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/embedded/digits/digits.csv.gz")
    }

    #[test]
    fn reads_the_shipped_fixture() {
        let data = read_digits_csv(fixture()).unwrap();
        assert_eq!(data.items.len(), 1797);
        assert_eq!(data.items[0].label, 0);
        assert_eq!(data.items[0].pixels[2], 5.0 / 16.0);
        assert!(data.items.iter().all(|i| i.pixels.len() == 64));
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("digits-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.csv");
        let good = vec!["0"; 65].join(",");
        std::fs::write(&path, format!("{good}\n1,2,3\n")).unwrap();
        let err = read_digits_csv(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.csv:2") && err.contains("found 3"),
            "{err}"
        );
        std::fs::write(&path, format!("{good}\n{}\n", vec!["17"; 65].join(","))).unwrap();
        let err = read_digits_csv(&path).unwrap_err().to_string();
        assert!(
            err.contains("bad.csv:2") && err.contains("outside 0..=16"),
            "{err}"
        );
        let missing = read_digits_csv(dir.join("missing.csv"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing.csv"), "{missing}");
    }
}
