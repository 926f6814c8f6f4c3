//! [`ClassificationReport`]: per-class precision, recall, F1 and support with micro, macro and
//! weighted averages, as scikit-learn's `classification_report` computes them.

use serde::{Deserialize, Serialize};

/// Precision, recall, F1 and support of one class or one average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// Class name or average name.
    pub label: String,
    /// TP / (TP + FP); 0 when nothing was predicted (scikit-learn's `zero_division=0`).
    pub precision: f64,
    /// TP / (TP + FN).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Number of true instances.
    pub support: usize,
}

/// A multi-class classification report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Fraction of correct predictions.
    pub accuracy: f64,
    /// One row per class.
    pub classes: Vec<ClassScores>,
    /// Micro average (equals accuracy for single-label multi-class).
    pub micro: ClassScores,
    /// Unweighted mean over classes.
    pub macro_avg: ClassScores,
    /// Mean over classes weighted by support.
    pub weighted: ClassScores,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

pub(crate) fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// The unweighted (`macro avg`) and support-weighted (`weighted avg`) means of `rows`' scores,
/// reported with `support`.
pub(crate) fn macro_and_weighted(
    rows: &[ClassScores],
    support: usize,
) -> (ClassScores, ClassScores) {
    let average = |label: &str, weight: &dyn Fn(&ClassScores) -> f64| {
        let sum_w: f64 = rows.iter().map(weight).sum();
        let mean = |f: &dyn Fn(&ClassScores) -> f64| {
            if sum_w == 0.0 {
                0.0
            } else {
                rows.iter().map(|c| weight(c) * f(c)).sum::<f64>() / sum_w
            }
        };
        ClassScores {
            label: label.into(),
            precision: mean(&|c| c.precision),
            recall: mean(&|c| c.recall),
            f1: mean(&|c| c.f1),
            support,
        }
    };
    (
        average("macro avg", &|_| 1.0),
        average("weighted avg", &|c| c.support as f64),
    )
}

pub(crate) fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

impl ClassificationReport {
    /// The report of `predicted` against `actual` (class indices below `class_names.len()`).
    pub fn new(predicted: &[usize], actual: &[usize], class_names: &[&str]) -> Self {
        let n = class_names.len();
        let mut confusion = vec![vec![0usize; n]; n];
        for (&p, &a) in predicted.iter().zip(actual) {
            confusion[a][p] += 1;
        }
        let classes: Vec<ClassScores> = (0..n)
            .map(|c| {
                let tp = confusion[c][c];
                let predicted_c: usize = (0..n).map(|a| confusion[a][c]).sum();
                let support: usize = confusion[c].iter().sum();
                let (precision, recall) = (ratio(tp, predicted_c), ratio(tp, support));
                ClassScores {
                    label: class_names[c].to_string(),
                    precision,
                    recall,
                    f1: f1(precision, recall),
                    support,
                }
            })
            .collect();
        let total = actual.len();
        let correct: usize = (0..n).map(|c| confusion[c][c]).sum();
        let accuracy = ratio(correct, total);
        let (macro_avg, weighted) = macro_and_weighted(&classes, total);
        let micro = ClassScores {
            label: "micro avg".into(),
            precision: accuracy,
            recall: accuracy,
            f1: accuracy,
            support: total,
        };
        ClassificationReport {
            accuracy,
            classes,
            micro,
            macro_avg,
            weighted,
            confusion,
        }
    }

    /// The report as scikit-learn prints it.
    pub fn to_text(&self) -> String {
        score_table(
            &self.classes,
            Some((self.accuracy, self.micro.support)),
            &[&self.micro, &self.macro_avg, &self.weighted],
        )
    }
}

/// A scikit-learn / seqeval style table: one row per label, an optional accuracy line, then the
/// averages.
pub fn score_table(
    rows: &[ClassScores],
    accuracy: Option<(f64, usize)>,
    averages: &[&ClassScores],
) -> String {
    let width = rows
        .iter()
        .map(|c| c.label.len())
        .max()
        .unwrap_or(0)
        .max(12);
    let row = |c: &ClassScores| {
        format!(
            "{:>width$}  {:>9.4}  {:>9.4}  {:>9.4}  {:>7}\n",
            c.label, c.precision, c.recall, c.f1, c.support
        )
    };
    let mut out = format!(
        "{:>width$}  {:>9}  {:>9}  {:>9}  {:>7}\n\n",
        "", "precision", "recall", "f1-score", "support"
    );
    rows.iter().for_each(|c| out.push_str(&row(c)));
    out.push('\n');
    if let Some((accuracy, support)) = accuracy {
        out.push_str(&format!(
            "{:>width$}  {:>9}  {:>9}  {:>9.4}  {:>7}\n",
            "accuracy", "", "", accuracy, support
        ));
    }
    for avg in averages {
        out.push_str(&row(avg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values from scikit-learn 1.5 `classification_report(y_true, y_pred, output_dict=True)`
    /// with y_true = [0, 0, 1, 1, 2, 2, 2], y_pred = [0, 1, 1, 1, 2, 0, 1] (worked by hand too:
    /// class 0: P 1/2, R 1/2; class 1: P 2/4, R 2/2; class 2: P 1/1, R 1/3).
    #[test]
    fn matches_scikit_learn() {
        let report = ClassificationReport::new(
            &[0, 1, 1, 1, 2, 0, 1],
            &[0, 0, 1, 1, 2, 2, 2],
            &["a", "b", "c"],
        );
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        close(report.accuracy, 4.0 / 7.0);
        close(report.classes[1].precision, 0.5);
        close(report.classes[1].f1, 2.0 / 3.0);
        close(report.classes[2].recall, 1.0 / 3.0);
        close(report.macro_avg.precision, (0.5 + 0.5 + 1.0) / 3.0);
        close(report.macro_avg.f1, (0.5 + 2.0 / 3.0 + 0.5) / 3.0);
        close(report.weighted.recall, 4.0 / 7.0);
        close(
            report.weighted.f1,
            (2.0 * 0.5 + 2.0 * 2.0 / 3.0 + 3.0 * 0.5) / 7.0,
        );
        assert_eq!(
            report.classes.iter().map(|c| c.support).collect::<Vec<_>>(),
            vec![2, 2, 3]
        );
        assert!(report.to_text().contains("weighted avg"));
    }
}
