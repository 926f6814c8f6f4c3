//! CoNLL token classification files: one token per line with its tag in the last column
//! (2-column `token tag`, or CoNLL-2003's 4 columns `token POS chunk NER`), sentences separated
//! by blank (or whitespace-only) lines, `-DOCSTART-` document markers skipped. Tags are BIO (IOB2)
//! or BIOES: `O`, or a prefix `B-`/`I-`/`E-`/`S-` and an entity type.

use std::path::Path;

use crate::DataError;

/// One sentence: its tokens and their tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedSentence {
    /// The words.
    pub tokens: Vec<String>,
    /// One tag per word (`O`, `B-PER`, …).
    pub tags: Vec<String>,
}

/// Reads a CoNLL file. Errors name the file and line: a line with a single column, a tag that is
/// neither `O` nor prefix + type, a file with no sentence.
pub fn read_conll(path: impl AsRef<Path>) -> Result<Vec<TaggedSentence>, DataError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| DataError::Io {
        path: path.into(),
        source,
    })?;
    parse_conll(path, &text)
}

/// Parses CoNLL text read from `path` (see [`read_conll`]).
pub fn parse_conll(path: &Path, text: &str) -> Result<Vec<TaggedSentence>, DataError> {
    let mut sentences = Vec::new();
    let mut current = TaggedSentence {
        tokens: Vec::new(),
        tags: Vec::new(),
    };
    let mut flush = |current: &mut TaggedSentence| {
        if !current.tokens.is_empty() {
            sentences.push(std::mem::replace(
                current,
                TaggedSentence {
                    tokens: Vec::new(),
                    tags: Vec::new(),
                },
            ));
        }
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            flush(&mut current);
            continue;
        }
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns[0] == "-DOCSTART-" {
            flush(&mut current);
            continue;
        }
        if columns.len() < 2 {
            return Err(DataError::malformed(
                path,
                Some(number),
                format!("`{line}` has one column; expected a token and its tag"),
            ));
        }
        let tag = *columns.last().expect("two columns or more");
        check_tag(tag).map_err(|reason| DataError::malformed(path, Some(number), reason))?;
        current.tokens.push(columns[0].to_string());
        current.tags.push(tag.to_string());
    }
    flush(&mut current);
    if sentences.is_empty() {
        return Err(DataError::malformed(path, None, "no sentence in the file"));
    }
    Ok(sentences)
}

/// `O`, or `B-`/`I-`/`E-`/`S-` followed by a non-empty entity type.
fn check_tag(tag: &str) -> Result<(), String> {
    if tag == "O" {
        return Ok(());
    }
    match tag.split_once('-') {
        Some(("B" | "I" | "E" | "S", kind)) if !kind.is_empty() => Ok(()),
        _ => Err(format!(
            "tag `{tag}` is neither `O` nor a B-/I-/E-/S- prefix with an entity type (BIO or BIOES)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_conll_2003_and_two_column_files() {
        let text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n \t\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\r\n\n\n";
        let s = parse_conll(Path::new("x.conll"), text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].tokens, ["EU", "rejects", "German"]);
        assert_eq!(s[0].tags, ["B-ORG", "O", "B-MISC"]);
        assert_eq!(s[1].tags, ["B-PER", "I-PER"]);
        let two = parse_conll(Path::new("t.txt"), "@paul\tB-person\nhi\tO\n").unwrap();
        assert_eq!(two[0].tags, ["B-person", "O"]);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let err = parse_conll(Path::new("a.conll"), "EU B-ORG\nrejects\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.conll:2") && err.contains("one column"),
            "{err}"
        );
        let err = parse_conll(Path::new("a.conll"), "EU X-ORG\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.conll:1") && err.contains("X-ORG"), "{err}");
        let err = parse_conll(Path::new("a.conll"), "\n \n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no sentence"), "{err}");
    }
}
