//! [`TextTokenizer`]: a checkpoint's word-piece tokenizer (the `tokenizers` crate, offline), with
//! truncation set by the run, and word-level labels aligned to sub-words for token tasks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::DataError;

/// How sequences of a batch are padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Padding {
    /// To the longest sequence of the batch (no wasted compute on short batches).
    Longest,
    /// Always to `max_length` (fixed shapes, as the MiniLM `tokenizer.json` has it).
    Fixed,
}

/// A tokenizer loaded from a checkpoint folder: `tokenizer.json`, else `vocab.txt` (BERT
/// uncased word pieces). Sequences are `[CLS] … [SEP]`, truncated to `max_length` tokens;
/// padding is the batcher's job (the file's own padding setting is replaced).
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Longest sequence, special tokens included.
    pub max_length: usize,
    /// Id of the padding token.
    pub pad_id: u32,
    /// Where it was read from.
    pub source: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("max_length", &self.max_length)
            .finish()
    }
}

/// A sentence as token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids, `[CLS]` and `[SEP]` included, at most `max_length`.
    pub ids: Vec<u32>,
    /// For each token, the index of the word it starts, if it is a word's first sub-token.
    pub word_starts: Vec<Option<usize>>,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> DataError {
    DataError::malformed(path, None, reason.to_string())
}

impl TextTokenizer {
    /// Loads the tokenizer of checkpoint folder `dir` with sequences cut at `max_length`.
    pub fn from_dir(dir: impl AsRef<Path>, max_length: usize) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let (mut inner, source) = if json.is_file() {
            let t = Tokenizer::from_file(&json)
                .map_err(|e| bad(&json, format!("not a valid tokenizer.json ({e})")))?;
            (t, json)
        } else if vocab.is_file() {
            let path = vocab.to_string_lossy().into_owned();
            let model = WordPiece::from_file(&path)
                .unk_token("[UNK]".into())
                .build()
                .map_err(|e| bad(&vocab, format!("not a word-piece vocabulary ({e})")))?;
            let mut t = Tokenizer::new(model);
            t.with_normalizer(Some(BertNormalizer::default()))
                .map_err(|e| bad(&vocab, e))?;
            t.with_pre_tokenizer(Some(BertPreTokenizer));
            let id = |token: &str| {
                t.token_to_id(token)
                    .ok_or_else(|| bad(&vocab, format!("has no {token} token")))
            };
            let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
            t.with_post_processor(Some(BertProcessing::new(
                ("[SEP]".into(), sep),
                ("[CLS]".into(), cls),
            )));
            (t, vocab)
        } else {
            return Err(DataError::malformed(
                dir,
                None,
                "has neither tokenizer.json nor vocab.txt",
            ));
        };
        if max_length < 3 {
            return Err(bad(
                &source,
                format!("max_length {max_length} leaves no room for a word"),
            ));
        }
        let pad_id = inner
            .token_to_id("[PAD]")
            .ok_or_else(|| bad(&source, "has no [PAD] token"))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| bad(&source, e))?;
        Ok(TextTokenizer {
            inner,
            max_length,
            pad_id,
            source,
        })
    }

    /// Number of token ids (the rows an embedding table needs).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of a sentence.
    pub fn encode(&self, text: &str) -> Result<Encoded, DataError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| bad(&self.source, format!("cannot tokenize `{text}`: {e}")))?;
        Ok(self.encoded(&encoding))
    }

    /// Token ids of a sentence given as words (a CoNLL sentence), with each word's first
    /// sub-token marked; words cut off by truncation have none.
    pub fn encode_words<S: AsRef<str>>(&self, words: &[S]) -> Result<Encoded, DataError> {
        let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        let encoding = self
            .inner
            .encode(words.as_slice(), true)
            .map_err(|e| bad(&self.source, format!("cannot tokenize {words:?}: {e}")))?;
        Ok(self.encoded(&encoding))
    }

    fn encoded(&self, encoding: &tokenizers::Encoding) -> Encoded {
        let mut previous = None;
        let word_starts = encoding
            .get_word_ids()
            .iter()
            .map(|word| {
                let start = match word {
                    Some(w) if previous != Some(*w) => Some(*w as usize),
                    _ => None,
                };
                if word.is_some() {
                    previous = *word;
                }
                start
            })
            .collect();
        Encoded {
            ids: encoding.get_ids().to_vec(),
            word_starts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/minilm-l1")
    }

    #[test]
    fn tokenizer_json_and_vocab_txt_give_the_same_ids() {
        let json = TextTokenizer::from_dir(fixture(), 16).unwrap();
        let dir = std::env::temp_dir().join(format!("tokenizer-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(fixture().join("vocab.txt"), dir.join("vocab.txt")).unwrap();
        let vocab = TextTokenizer::from_dir(&dir, 16).unwrap();
        let text = "A warm and funny film";
        assert_eq!(json.encode(text).unwrap(), vocab.encode(text).unwrap());
        let ids = json.encode(text).unwrap().ids;
        assert_eq!(ids.len(), 7, "[CLS] five words [SEP], no padding: {ids:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn truncation_keeps_max_length_and_words_mark_their_first_piece() {
        let t = TextTokenizer::from_dir(fixture(), 6).unwrap();
        let long = t
            .encode("the plot makes no sense and the acting is wooden")
            .unwrap();
        assert_eq!(long.ids.len(), 6);
        // "Tokyo" is two pieces in this vocabulary ("tokyo" is not one), so word 1 starts once.
        let t = TextTokenizer::from_dir(fixture(), 32).unwrap();
        let words = ["Sofia", "Rossi", "works"];
        let e = t.encode_words(&words).unwrap();
        let starts: Vec<usize> = e.word_starts.iter().flatten().copied().collect();
        assert_eq!(starts, vec![0, 1, 2]);
        assert_eq!(e.word_starts.first(), Some(&None), "[CLS] starts no word");
        assert_eq!(e.word_starts.last(), Some(&None), "[SEP] starts no word");
    }

    #[test]
    fn a_corrupt_tokenizer_json_is_a_one_line_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("tokenizer-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("tokenizer.json"),
            "{\"version\": \"1.0\", \"model\": 3",
        )
        .unwrap();
        let err = TextTokenizer::from_dir(&dir, 16).unwrap_err().to_string();
        assert!(
            err.contains("tokenizer.json") && err.contains("not a valid"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        let err = TextTokenizer::from_dir(&dir, 16).unwrap_err().to_string();
        assert!(
            err.contains("neither tokenizer.json nor vocab.txt"),
            "{err}"
        );
    }
}
