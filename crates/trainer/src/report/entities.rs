//! Entity-level precision, recall and F1 for token classification (named-entity recognition),
//! with seqeval's strict semantics (`mode="strict"`): an entity counts only when it is well formed
//! in its tag scheme and its type and both ends match exactly.
//!
//! - IOB2: `B-X` starts an entity, `I-X` continues it; an `I-X` without a `B-X` (or after another
//!   type) starts nothing.
//! - IOBES: `S-X` is a one-token entity; `B-X (I-X)* E-X` a longer one; anything incomplete is
//!   no entity.
//!
//! The report has one row per entity type and micro / macro / weighted averages, as seqeval's
//! `classification_report`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{ClassScores, f1, macro_and_weighted, ratio, score_table};

/// The tagging scheme of a dataset's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TagScheme {
    /// `B-`, `I-`, `O` (CoNLL-2003 as usually distributed, WNUT-16).
    Iob2,
    /// `B-`, `I-`, `E-`, `S-`, `O`.
    Iobes,
}

/// An entity: its type and its tokens `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entity {
    /// The entity type (`PER`, `LOC`, …).
    pub kind: String,
    /// First token.
    pub start: usize,
    /// One past the last token.
    pub end: usize,
}

fn split(tag: &str) -> (&str, &str) {
    tag.split_once('-').unwrap_or((tag, ""))
}

/// The well-formed entities of one sentence's `tags` under `scheme` (strict).
pub fn entities<S: AsRef<str>>(tags: &[S], scheme: TagScheme) -> Vec<Entity> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    // An IOB2 entity is complete wherever it stops; an IOBES one only at its `E-`.
    let mut close = |open: &mut Option<(String, usize)>, end: usize, complete: bool| {
        if let Some((kind, start)) = open.take()
            && complete
        {
            out.push(Entity { kind, start, end });
        }
    };
    let iob2 = scheme == TagScheme::Iob2;
    for (i, tag) in tags.iter().enumerate() {
        let (prefix, kind) = split(tag.as_ref());
        let continues = open.as_ref().is_some_and(|(k, _)| k == kind);
        match (scheme, prefix) {
            (_, "B") => {
                close(&mut open, i, iob2);
                open = Some((kind.to_string(), i));
            }
            (_, "I") if continues => {}
            (TagScheme::Iobes, "E") if continues => close(&mut open, i + 1, true),
            (TagScheme::Iobes, "S") => {
                close(&mut open, i, false);
                open = Some((kind.to_string(), i));
                close(&mut open, i + 1, true);
            }
            // `O`, or a tag that breaks the open entity.
            _ => close(&mut open, i, iob2),
        }
    }
    close(&mut open, tags.len(), iob2);
    out
}

/// seqeval's strict entity-level report of `predicted` against `truth` (sentences of tags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityReport {
    /// One row per entity type (in either truth or prediction), sorted by type.
    pub types: Vec<ClassScores>,
    /// Over all entities.
    pub micro: ClassScores,
    /// Unweighted mean over types.
    pub macro_avg: ClassScores,
    /// Mean over types weighted by their support.
    pub weighted: ClassScores,
}

impl EntityReport {
    /// Compares the entities of each predicted sentence with those of its true sentence.
    ///
    /// # Panics
    /// If `truth` and `predicted` differ in their number of sentences.
    pub fn new<S: AsRef<str>>(truth: &[Vec<S>], predicted: &[Vec<S>], scheme: TagScheme) -> Self {
        assert_eq!(truth.len(), predicted.len(), "one prediction per sentence");
        let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new(); // (tp, pred, true)
        for (t, p) in truth.iter().zip(predicted) {
            let true_set: BTreeSet<Entity> = entities(t, scheme).into_iter().collect();
            let pred_set: BTreeSet<Entity> = entities(p, scheme).into_iter().collect();
            for e in &true_set {
                counts.entry(e.kind.clone()).or_default().2 += 1;
            }
            for e in &pred_set {
                let c = counts.entry(e.kind.clone()).or_default();
                c.1 += 1;
                if true_set.contains(e) {
                    c.0 += 1;
                }
            }
        }
        let types: Vec<ClassScores> = counts
            .iter()
            .map(|(kind, &(tp, pred, support))| {
                let (precision, recall) = (ratio(tp, pred), ratio(tp, support));
                ClassScores {
                    label: kind.clone(),
                    precision,
                    recall,
                    f1: f1(precision, recall),
                    support,
                }
            })
            .collect();
        let (tp, pred, support) = counts
            .values()
            .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
        let (precision, recall) = (ratio(tp, pred), ratio(tp, support));
        let micro = ClassScores {
            label: "micro avg".into(),
            precision,
            recall,
            f1: f1(precision, recall),
            support,
        };
        let (macro_avg, weighted) = macro_and_weighted(&types, support);
        EntityReport {
            macro_avg,
            weighted,
            types,
            micro,
        }
    }

    /// The report as seqeval's `classification_report` prints it.
    pub fn to_text(&self) -> String {
        score_table(
            &self.types,
            None,
            &[&self.micro, &self.macro_avg, &self.weighted],
        )
    }
}

/// The scheme of a tag set: IOBES if any tag is `E-` or `S-` prefixed, else IOB2.
pub fn detect_scheme<S: AsRef<str>>(tags: &[S]) -> TagScheme {
    if tags
        .iter()
        .any(|t| t.as_ref().starts_with("E-") || t.as_ref().starts_with("S-"))
    {
        TagScheme::Iobes
    } else {
        TagScheme::Iob2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn spans(s: &str, scheme: TagScheme) -> Vec<(String, usize, usize)> {
        entities(&tags(s), scheme)
            .into_iter()
            .map(|e| (e.kind, e.start, e.end))
            .collect()
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn strict_iob2_entities() {
        let e = |k: &str, s, t| (k.to_string(), s, t);
        // Adjacent entities of one type: B starts a new one.
        assert_eq!(
            spans("B-PER I-PER B-PER O", TagScheme::Iob2),
            [e("PER", 0, 2), e("PER", 2, 3)]
        );
        // I- without B-, and I- of another type, start nothing.
        assert_eq!(
            spans("I-PER I-PER O B-LOC I-PER", TagScheme::Iob2),
            [e("LOC", 3, 4)]
        );
        // No entities at all.
        assert!(spans("O O O", TagScheme::Iob2).is_empty());
        // An entity running to the end of the sentence.
        assert_eq!(spans("O B-ORG I-ORG", TagScheme::Iob2), [e("ORG", 1, 3)]);
    }

    #[test]
    fn strict_iobes_entities() {
        let e = |k: &str, s, t| (k.to_string(), s, t);
        assert_eq!(
            spans("S-PER B-LOC I-LOC E-LOC S-PER", TagScheme::Iobes),
            [e("PER", 0, 1), e("LOC", 1, 4), e("PER", 4, 5)]
        );
        // Without its E-, or broken by O, an entity is not counted.
        assert!(spans("B-LOC I-LOC O", TagScheme::Iobes).is_empty());
        assert!(spans("B-LOC E-PER", TagScheme::Iobes).is_empty());
        assert_eq!(
            spans("I-LOC E-LOC S-ORG", TagScheme::Iobes),
            [e("ORG", 2, 3)]
        );
    }

    /// seqeval's README example (classification_report, default IOB2): MISC's span is off by one.
    #[test]
    fn seqeval_readme_report() {
        let truth = vec![tags("O O O B-MISC I-MISC I-MISC O"), tags("B-PER I-PER O")];
        let predicted = vec![
            tags("O O B-MISC I-MISC I-MISC I-MISC O"),
            tags("B-PER I-PER O"),
        ];
        let r = EntityReport::new(&truth, &predicted, TagScheme::Iob2);
        assert_eq!(
            r.types.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(),
            ["MISC", "PER"]
        );
        close(r.types[0].f1, 0.0);
        close(r.types[1].f1, 1.0);
        for avg in [&r.micro, &r.macro_avg, &r.weighted] {
            close(avg.precision, 0.5);
            close(avg.recall, 0.5);
            close(avg.f1, 0.5);
            assert_eq!(avg.support, 2);
        }
    }

    /// seqeval's strict-mode example: `I-NP I-NP` is no entity under IOB2 (the default mode
    /// would count it), so NP scores 0.
    #[test]
    fn seqeval_strict_mode_example() {
        let r = EntityReport::new(
            &[tags("B-NP I-NP O")],
            &[tags("I-NP I-NP O")],
            TagScheme::Iob2,
        );
        close(r.types[0].precision, 0.0);
        close(r.types[0].recall, 0.0);
        assert_eq!(r.types[0].support, 1);
        close(r.micro.f1, 0.0);
        // And a sentence with no entity at all, in both: nothing to score, nothing counted.
        let none = EntityReport::new(&[tags("O O")], &[tags("O O")], TagScheme::Iob2);
        assert!(none.types.is_empty());
        assert_eq!(none.micro.support, 0);
    }
}
