//! Labelled multivariate sequences in sktime's `.ts` text format (the UEA/UCR archive's, e.g.
//! Japanese Vowels), and their batches: frames padded to the batch's longest sequence with a
//! mask of the real ones.
//!
//! A `.ts` file has `#` comment lines, `@` header lines (`@dimensions 12`, `@classLabel true 1 2
//! …`, `@data`), then one sequence per line: one `:`-separated block per dimension, each the
//! comma-separated values of that dimension over time, and the label last.

use std::path::Path;

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::DataError;

/// One sequence as read: `len` frames of `dims` values, and its label as written.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledSequence {
    /// `[len, dims]` row-major: frame after frame.
    pub frames: Vec<f32>,
    /// Number of frames.
    pub len: usize,
    /// The label as written in the file.
    pub label: String,
}

/// A `.ts` file: its sequences, their number of dimensions, and the labels its header declares
/// (`@classLabel false`: none, and every sequence's label is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceFile {
    /// Values per frame.
    pub dims: usize,
    /// The labels `@classLabel true …` declares, in its order (empty when the header has none).
    pub classes: Vec<String>,
    /// The sequences, in file order.
    pub sequences: Vec<LabeledSequence>,
}

/// Reads a labelled `.ts` file, naming the line and the field of anything malformed (a missing
/// `@data`, a dimension count that differs from `@dimensions`, dimensions of different lengths,
/// a value that is not a number, missing values `?`, a label `@classLabel` does not declare).
pub fn read_ts(path: &Path) -> Result<SequenceFile, DataError> {
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |line: usize, reason: String| DataError::malformed(path, Some(line), reason);
    let (mut dims, mut classes, mut in_data) = (None::<usize>, Vec::new(), false);
    // `@classLabel false`: the lines carry no label (data to predict).
    let mut labelled = true;
    let mut sequences = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !in_data {
            let Some(header) = line.strip_prefix('@') else {
                return Err(bad(
                    line_no,
                    "a data line before `@data` (headers start with `@`)".into(),
                ));
            };
            let mut words = header.split_whitespace();
            match words.next().map(str::to_ascii_lowercase).as_deref() {
                Some("dimensions") => {
                    let value = words.next().unwrap_or("");
                    dims = Some(value.parse().ok().filter(|&d: &usize| d > 0).ok_or_else(
                        || {
                            bad(
                                line_no,
                                format!("`@dimensions {value}` is not a positive count"),
                            )
                        },
                    )?);
                }
                Some("classlabel") => {
                    labelled = words
                        .next()
                        .is_none_or(|w| !w.eq_ignore_ascii_case("false"));
                    classes = words.map(str::to_string).collect();
                }
                Some("data") => in_data = true,
                _ => {}
            }
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        let (label, blocks) = if labelled {
            let (label, blocks) = fields.split_last().expect("split gives at least one field");
            (label.trim().to_string(), blocks)
        } else {
            (String::new(), &fields[..])
        };
        let expected = *dims.get_or_insert(blocks.len());
        if blocks.len() != expected {
            return Err(bad(
                line_no,
                format!(
                    "{} dimensions; the file has {expected} (`@dimensions` or its first sequence)",
                    blocks.len()
                ),
            ));
        }
        if !classes.is_empty() && !classes.contains(&label) {
            return Err(bad(
                line_no,
                format!(
                    "label `{label}` is not among `@classLabel`'s {}",
                    classes.join(" ")
                ),
            ));
        }
        let mut columns = Vec::with_capacity(blocks.len());
        for (d, block) in blocks.iter().enumerate() {
            let values = block
                .split(',')
                .enumerate()
                .map(|(t, v)| {
                    let v = v.trim();
                    if v == "?" || v.eq_ignore_ascii_case("nan") {
                        return Err(bad(
                            line_no,
                            format!(
                                "dimension {}, frame {}: missing values are not supported",
                                d + 1,
                                t + 1
                            ),
                        ));
                    }
                    v.parse::<f32>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| {
                            bad(
                                line_no,
                                format!(
                                    "dimension {}, frame {}: `{v}` is not a number",
                                    d + 1,
                                    t + 1
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<f32>, _>>()?;
            columns.push(values);
        }
        let len = columns[0].len();
        if let Some((d, other)) = columns.iter().enumerate().find(|(_, c)| c.len() != len) {
            return Err(bad(
                line_no,
                format!(
                    "dimension {} has {} frames, dimension 1 has {len}",
                    d + 1,
                    other.len()
                ),
            ));
        }
        let frames = (0..len)
            .flat_map(|t| columns.iter().map(move |c| c[t]))
            .collect();
        sequences.push(LabeledSequence { frames, len, label });
    }
    if !in_data {
        return Err(DataError::malformed(path, None, "no `@data` line"));
    }
    if sequences.is_empty() {
        return Err(DataError::malformed(
            path,
            None,
            "no sequences after `@data`",
        ));
    }
    Ok(SequenceFile {
        dims: dims.expect("set by the first sequence"),
        classes,
        sequences,
    })
}

/// A sequence ready for batching: frames (normalised as the task chose) and a class index.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceItem {
    /// `[len, dims]` row-major.
    pub frames: Vec<f32>,
    /// Number of frames.
    pub len: usize,
    /// Class index.
    pub label: usize,
}

/// A batch of sequences padded with zeros to its longest, and their classes.
#[derive(Clone, Debug)]
pub struct SequenceBatch {
    /// `[batch, time, dims]`.
    pub frames: Tensor<3>,
    /// `[batch, time]`: `true` on real frames, `false` on padding.
    pub mask: Tensor<2, Bool>,
    /// `[batch]` class indices.
    pub targets: Tensor<1, Int>,
}

impl SequenceBatch {
    /// The same batch on its device's inner backend (a frozen teacher's input).
    pub fn without_autodiff(self) -> Self {
        SequenceBatch {
            frames: self.frames.without_autodiff(),
            mask: self.mask.without_autodiff(),
            targets: self.targets.without_autodiff(),
        }
    }
}

/// Pads sequences of `dims` values per frame into [`SequenceBatch`]es.
#[derive(Clone, Debug)]
pub struct SequenceBatcher {
    /// Values per frame.
    pub dims: usize,
}

impl Batcher<SequenceItem, SequenceBatch> for SequenceBatcher {
    fn batch(&self, items: Vec<SequenceItem>, device: &Device) -> SequenceBatch {
        let (batch, dims) = (items.len(), self.dims);
        let time = items.iter().map(|i| i.len).max().unwrap_or(1).max(1);
        let mut frames = vec![0f32; batch * time * dims];
        let mut mask = vec![false; batch * time];
        for (b, item) in items.iter().enumerate() {
            let start = b * time * dims;
            frames[start..start + item.len * dims].copy_from_slice(&item.frames);
            mask[b * time..b * time + item.len].fill(true);
        }
        let targets: Vec<i64> = items.iter().map(|i| i.label as i64).collect();
        SequenceBatch {
            frames: Tensor::from_data(TensorData::new(frames, [batch, time, dims]), device),
            mask: Tensor::from_data(TensorData::new(mask, [batch, time]), device),
            targets: Tensor::from_data(TensorData::new(targets, [batch]), device),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("data-ts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const HEADER: &str = "#comment\n@problemName Toy\n@dimensions 2\n@classLabel true a b\n@data\n";

    #[test]
    fn reads_frames_in_time_order_with_their_labels() {
        let path = write("ok.ts", &format!("{HEADER}1,2,3:4,5,6:a\n7,8:9,10:b\n"));
        let file = read_ts(&path).unwrap();
        assert_eq!(file.dims, 2);
        assert_eq!(file.classes, ["a", "b"]);
        assert_eq!(file.sequences.len(), 2);
        assert_eq!(file.sequences[0].frames, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(
            (file.sequences[0].len, file.sequences[0].label.as_str()),
            (3, "a")
        );
        assert_eq!(file.sequences[1].frames, [7.0, 9.0, 8.0, 10.0]);
    }

    #[test]
    fn unlabelled_files_have_no_label_field() {
        let text = "@dimensions 2\n@classLabel false\n@data\n1,2:3,4\n";
        let file = read_ts(&write("unlabelled.ts", text)).unwrap();
        assert_eq!(file.sequences[0].frames, [1.0, 3.0, 2.0, 4.0]);
        assert_eq!(file.sequences[0].label, "");
    }

    #[test]
    fn malformed_lines_are_named() {
        let cases = [
            (
                "dims.ts",
                format!("{HEADER}1,2:a\n"),
                ":6: 1 dimensions; the file has 2",
            ),
            (
                "ragged.ts",
                format!("{HEADER}1,2:3:a\n"),
                ":6: dimension 2 has 1 frames",
            ),
            (
                "nan.ts",
                format!("{HEADER}1,x:3,4:a\n"),
                "dimension 1, frame 2: `x` is not a number",
            ),
            (
                "missing.ts",
                format!("{HEADER}1,?:3,4:a\n"),
                "missing values are not supported",
            ),
            (
                "label.ts",
                format!("{HEADER}1:2:c\n"),
                "label `c` is not among",
            ),
            (
                "nodata.ts",
                "@dimensions 2\n".to_string(),
                "no `@data` line",
            ),
            (
                "early.ts",
                "1,2:3,4:a\n".to_string(),
                ":1: a data line before `@data`",
            ),
        ];
        for (name, text, expected) in cases {
            let err = read_ts(&write(name, &text)).unwrap_err().to_string();
            assert!(
                err.contains(name) && err.contains(expected),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn batches_pad_to_the_longest_sequence_and_mask_the_padding() {
        let device = Device::flex();
        let items = vec![
            SequenceItem {
                frames: vec![1.0, 2.0],
                len: 1,
                label: 0,
            },
            SequenceItem {
                frames: vec![3.0, 4.0, 5.0, 6.0],
                len: 2,
                label: 1,
            },
        ];
        let batch = SequenceBatcher { dims: 2 }.batch(items, &device);
        assert_eq!(batch.frames.dims(), [2, 2, 2]);
        let frames = batch.frames.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(frames, [1.0, 2.0, 0.0, 0.0, 3.0, 4.0, 5.0, 6.0]);
        let mask = batch.mask.into_data().try_to_vec::<bool>().unwrap();
        assert_eq!(mask, [true, false, true, true]);
    }
}
