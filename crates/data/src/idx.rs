//! IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.
//!
//! Layout (big-endian): magic `0x00 0x00 <type> <rank>`, then `rank` u32 dimension sizes, then the
//! data. Images are type `0x08` (u8) rank 3 `[n, rows, cols]`; labels are type `0x08` rank 1 `[n]`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::{DataError, ImageDataset, ImageItem};

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Dimension sizes.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes; a name ending in `.gz` is decompressed.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray, DataError> {
    let path = path.as_ref();
    let io = |source| DataError::Io {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(file).read_to_end(&mut bytes).map_err(|e| {
            DataError::malformed(path, None, format!("not a valid gzip stream: {e}"))
        })?;
    } else {
        let mut file = file;
        file.read_to_end(&mut bytes).map_err(io)?;
    }
    parse_idx(path, &bytes)
}

fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray, DataError> {
    let bad = |reason: String| DataError::malformed(path, None, reason);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x} (an IDX file starts with 0000)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "element type 0x{:02x} is not supported (only unsigned bytes, 0x08)",
            bytes[2]
        )));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(bad(format!(
            "truncated header: rank {rank} needs {header} bytes, file has {}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let expected: usize = dims.iter().product();
    let available = bytes.len() - header;
    if available < expected {
        return Err(bad(format!(
            "truncated: dims {dims:?} need {expected} data bytes, found {available}"
        )));
    }
    if available > expected {
        return Err(bad(format!(
            "{} unexpected trailing bytes after {expected} data bytes",
            available - expected
        )));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Reads an images file and a labels file into an [`ImageDataset`] (pixels scaled to `[0, 1]`).
pub fn read_idx_images(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    num_classes: usize,
) -> Result<ImageDataset, DataError> {
    let (images, labels) = (images.as_ref(), labels.as_ref());
    let image_array = read_idx(images)?;
    let label_array = read_idx(labels)?;
    if image_array.dims.len() != 3 {
        return Err(DataError::malformed(
            images,
            None,
            format!(
                "images must have rank 3 [n, rows, cols], found dims {:?}",
                image_array.dims
            ),
        ));
    }
    if label_array.dims.len() != 1 {
        return Err(DataError::malformed(
            labels,
            None,
            format!(
                "labels must have rank 1 [n], found dims {:?}",
                label_array.dims
            ),
        ));
    }
    let (n, height, width) = (
        image_array.dims[0],
        image_array.dims[1],
        image_array.dims[2],
    );
    if label_array.dims[0] != n {
        let reason = format!(
            "{} labels for {n} images in {}",
            label_array.dims[0],
            images.display()
        );
        return Err(DataError::malformed(labels, None, reason));
    }
    if let Some((i, &l)) = label_array
        .data
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize >= num_classes)
    {
        return Err(DataError::malformed(
            labels,
            None,
            format!("label {l} of item {i} is not below {num_classes} classes"),
        ));
    }
    let size = height * width;
    let items = image_array
        .data
        .chunks_exact(size)
        .zip(&label_array.data)
        .map(|(pixels, &label)| ImageItem {
            pixels: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            label: label as usize,
        })
        .collect();
    Ok(ImageDataset {
        items,
        height,
        width,
        num_classes,
    })
}

/// Writes `array` as an IDX file (gzip-compressed if the name ends in `.gz`); used to cut
/// committed subsets and test fixtures.
pub fn write_idx(path: impl AsRef<Path>, array: &IdxArray) -> Result<(), DataError> {
    use std::io::Write;
    let path: PathBuf = path.as_ref().into();
    let io = |source| DataError::Io {
        path: path.clone(),
        source,
    };
    let mut bytes = vec![0u8, 0, 0x08, array.dims.len() as u8];
    for d in &array.dims {
        bytes.extend((*d as u32).to_be_bytes());
    }
    bytes.extend(&array.data);
    let file = File::create(&path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::best());
        gz.write_all(&bytes).map_err(io)?;
        gz.finish().map_err(io)?;
    } else {
        let mut file = file;
        file.write_all(&bytes).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("idx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn round_trips_raw_and_gzip() {
        let images = IdxArray {
            dims: vec![2, 2, 3],
            data: (0..12).collect(),
        };
        let labels = IdxArray {
            dims: vec![2],
            data: vec![1, 0],
        };
        for ext in ["", ".gz"] {
            let (ip, lp) = (tmp(&format!("i{ext}")), tmp(&format!("l{ext}")));
            write_idx(&ip, &images).unwrap();
            write_idx(&lp, &labels).unwrap();
            assert_eq!(read_idx(&ip).unwrap(), images);
            let ds = read_idx_images(&ip, &lp, 10).unwrap();
            assert_eq!((ds.items.len(), ds.height, ds.width), (2, 2, 3));
            assert_eq!(ds.items[1].label, 0);
            assert_eq!(ds.items[1].pixels[0], 6.0 / 255.0);
        }
    }

    #[test]
    fn malformed_files_name_the_file_and_problem() {
        let p = tmp("bad-magic");
        std::fs::write(&p, [1u8, 2, 8, 1, 0, 0, 0, 1, 5]).unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("bad-magic") && e.contains("wrong magic"), "{e}");
        let p = tmp("truncated");
        std::fs::write(&p, [0u8, 0, 8, 1, 0, 0, 0, 5, 1, 2]).unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("need 5"), "{e}");
        let (ip, lp) = (tmp("imgs"), tmp("lbls"));
        write_idx(
            &ip,
            &IdxArray {
                dims: vec![3, 1, 1],
                data: vec![0, 1, 2],
            },
        )
        .unwrap();
        write_idx(
            &lp,
            &IdxArray {
                dims: vec![2],
                data: vec![0, 1],
            },
        )
        .unwrap();
        let e = read_idx_images(&ip, &lp, 10).unwrap_err().to_string();
        assert!(
            e.contains("lbls") && e.contains("2 labels for 3 images"),
            "{e}"
        );
        let p = tmp("not-gzip.gz");
        std::fs::write(&p, b"plain").unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("not-gzip.gz") && e.contains("gzip"), "{e}");
    }
}
