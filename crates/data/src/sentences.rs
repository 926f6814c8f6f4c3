//! Sentence classification files: CSV or TSV, one sentence per row, the text and the label in
//! columns named by header or chosen by index (the movie-review snippets are `id, rating, text`
//! without a header; GLUE-style files have `sentence, label` headers). A numeric label column can
//! be turned into a binary one by a threshold (positive when the value is above it).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::DataError;

/// A column of a sentence file: by header name or by 0-based index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Column {
    /// The 0-based column index.
    Index(usize),
    /// The header name (the file then has a header row).
    Name(String),
}

/// How to read a sentence classification file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentenceFormat {
    /// Field separator: `,` (CSV) or `\t` (TSV).
    pub delimiter: char,
    /// Whether the first row names the columns (needed for columns given by name).
    pub header: bool,
    /// The sentence column.
    pub text: Column,
    /// The label column.
    pub label: Column,
    /// Turn a numeric label into `positive` (value above the threshold) or `negative`.
    #[serde(default)]
    pub positive_above: Option<f64>,
}

/// One labelled sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabeledSentence {
    /// The text.
    pub text: String,
    /// The label (as written, or `positive` / `negative` after a threshold).
    pub label: String,
}

fn resolve(
    column: &Column,
    headers: Option<&csv::StringRecord>,
    path: &Path,
    what: &str,
) -> Result<usize, DataError> {
    match (column, headers) {
        (Column::Index(i), _) => Ok(*i),
        (Column::Name(name), Some(headers)) => {
            headers.iter().position(|h| h == name).ok_or_else(|| {
                let names: Vec<&str> = headers.iter().collect();
                DataError::malformed(
                    path,
                    Some(1),
                    format!("no {what} column `{name}`; the header has {names:?}"),
                )
            })
        }
        (Column::Name(name), None) => Err(DataError::malformed(
            path,
            None,
            format!(
                "the {what} column is named `{name}`, but the format says the file has no header"
            ),
        )),
    }
}

/// Reads the labelled sentences of `path`. Errors name the file and line: a missing column, a
/// row too short for the text or label column, a non-numeric label where a threshold applies,
/// an empty file.
pub fn read_sentences(
    path: impl AsRef<Path>,
    format: &SentenceFormat,
) -> Result<Vec<LabeledSentence>, DataError> {
    let path = path.as_ref();
    let io = |source| DataError::Io {
        path: path.into(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let delimiter = u8::try_from(format.delimiter).map_err(|_| {
        DataError::malformed(
            path,
            None,
            format!("delimiter `{}` is not a single byte", format.delimiter),
        )
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(format.header)
        .flexible(true)
        .quoting(delimiter == b',')
        .from_reader(bytes.as_slice());
    let headers = if format.header {
        Some(
            reader
                .headers()
                .map_err(|e| DataError::malformed(path, Some(1), e.to_string()))?
                .clone(),
        )
    } else {
        None
    };
    let text_at = resolve(&format.text, headers.as_ref(), path, "text")?;
    let label_at = resolve(&format.label, headers.as_ref(), path, "label")?;
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize);
            DataError::malformed(path, line, e.to_string())
        })?;
        let line = record.position().map(|p| p.line() as usize);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let field = |at: usize, what: &str| {
            record.get(at).map(|f| f.trim().to_string()).ok_or_else(|| {
                DataError::malformed(
                    path,
                    line,
                    format!(
                        "{} fields, but the {what} is column {at} (0-based)",
                        record.len()
                    ),
                )
            })
        };
        let text = field(text_at, "text")?;
        let raw = field(label_at, "label")?;
        let label = match format.positive_above {
            None => raw,
            Some(threshold) => {
                let value: f64 = raw.parse().map_err(|_| {
                    DataError::malformed(
                        path,
                        line,
                        format!("label `{raw}` is not a number (positive_above needs one)"),
                    )
                })?;
                if value > threshold {
                    "positive"
                } else {
                    "negative"
                }
                .to_string()
            }
        };
        out.push(LabeledSentence { text, label });
    }
    if out.is_empty() {
        return Err(DataError::malformed(path, None, "no sentence in the file"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("data-sentences-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn movie_review_snippets_by_index_with_a_threshold() {
        // The snippets' layout: id, mean rating (-4..4), text; CRLF; no header.
        let path = file(
            "snippets.txt",
            "1\t2.266\ta gorgeous film\r\n2\t-1.5\tdull, \"flat\" and long\r\n\r\n",
        );
        let format = SentenceFormat {
            delimiter: '\t',
            header: false,
            text: Column::Index(2),
            label: Column::Index(1),
            positive_above: Some(0.0),
        };
        let s = read_sentences(&path, &format).unwrap();
        assert_eq!(
            s[0],
            LabeledSentence {
                text: "a gorgeous film".into(),
                label: "positive".into()
            }
        );
        assert_eq!(s[1].text, "dull, \"flat\" and long");
        assert_eq!(s[1].label, "negative");
    }

    #[test]
    fn csv_with_named_columns_and_errors_naming_file_and_line() {
        let path = file("glue.csv", "sentence,label\n\"good, really\",1\nbad,0\n");
        let format = SentenceFormat {
            delimiter: ',',
            header: true,
            text: Column::Name("sentence".into()),
            label: Column::Name("label".into()),
            positive_above: None,
        };
        let s = read_sentences(&path, &format).unwrap();
        assert_eq!(
            (s[0].text.as_str(), s[0].label.as_str()),
            ("good, really", "1")
        );
        let missing = SentenceFormat {
            label: Column::Name("polarity".into()),
            ..format.clone()
        };
        let err = read_sentences(&path, &missing).unwrap_err().to_string();
        assert!(
            err.contains("glue.csv:1") && err.contains("polarity"),
            "{err}"
        );
        let short = file("short.tsv", "1\t2.0\ttext\n2\t1.0\n");
        let format = SentenceFormat {
            delimiter: '\t',
            header: false,
            text: Column::Index(2),
            label: Column::Index(1),
            positive_above: Some(0.0),
        };
        let err = read_sentences(&short, &format).unwrap_err().to_string();
        assert!(
            err.contains("short.tsv:2") && err.contains("column 2"),
            "{err}"
        );
        let word = file("word.tsv", "1\tgreat\ttext\n");
        let err = read_sentences(&word, &format).unwrap_err().to_string();
        assert!(
            err.contains("word.tsv:1") && err.contains("not a number"),
            "{err}"
        );
        let empty = file("empty.tsv", "\n\n");
        assert!(
            read_sentences(&empty, &format)
                .unwrap_err()
                .to_string()
                .contains("no sentence")
        );
    }
}
