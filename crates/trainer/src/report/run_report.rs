//! [`RunReport`]: `runs/<name>/report.json` (for programs) and `report.md` (for people).

use std::path::Path;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::TrainerError;
use crate::task::Parity;

/// One measured model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// `float`, `ptq` or `qat`.
    pub variant: String,
    /// `float`, or the scheme name (`W8A8`, …).
    pub scheme: String,
    /// The task's headline metric (`accuracy`, `entity_f1`).
    pub metric: String,
    /// The metric on the test set, in `[0, 1]`.
    pub value: f64,
    /// Bytes of the model stored as it would be deployed (quantized weights packed).
    pub size_bytes: usize,
    /// The task's other metrics on the test set, by name, in `[0, 1]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// For `int` rows (the exported artifact run by the engine): size and parity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<Deployment>,
}

/// What an `int` row adds: the artifact measured against its float checkpoint and against the
/// fake-quant model it was exported from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The stage exported (`qat`, or `ptq` when QAT did not run).
    pub source: String,
    /// Bytes of `model.qat`: header, packed codes, scales, biases and checksum.
    pub artifact_bytes: usize,
    /// Bytes of the float stage's `model.bpk` (0 when absent).
    pub float_checkpoint_bytes: usize,
    /// The engine's kernel family (`avx512vnni`, `avxvnni`, `avx2`, `portable`).
    pub isa: String,
    /// Engine metric minus the fake-quant model's, in `[−1, 1]`.
    pub metric_delta: f64,
    /// Predictions and logits of the engine vs the fake-quant model.
    pub parity: Parity,
    /// Bytes of `model.onnx`, the same program in ONNX QDQ form; absent when the program has an
    /// op without an ONNX form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx_bytes: Option<usize>,
}

/// Wall time of a training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    /// `float` or `qat`.
    pub variant: String,
    /// `float` or the scheme name.
    pub scheme: String,
    /// Epochs timed.
    pub epochs: usize,
    /// Mean wall time of an epoch (training and validation), seconds.
    pub seconds_per_epoch: f64,
}

/// The run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// What was learned (`image-classification`, `sentence-classification`, …).
    pub task: String,
    /// The network (`lenet-bn`, `resnet-20`).
    pub model: String,
    /// The Burn backend it ran on.
    pub backend: String,
    /// The dataset.
    pub dataset: String,
    /// The seed the run used (weight initialisation, shuffling, augmentation).
    #[serde(default)]
    pub seed: u64,
    /// Whether the run was deterministic (see `RunConfig::deterministic`).
    #[serde(default)]
    pub deterministic: bool,
    /// One row per evaluated model.
    pub results: Vec<ResultRow>,
    /// Training wall times.
    #[serde(default)]
    pub timings: Vec<StageTiming>,
}

impl RunReport {
    /// The report in `dir` if there is one (results of earlier commands of the run), else a new one.
    pub fn load_or_new(
        dir: &Path,
        task: &str,
        model: &str,
        backend: &str,
        dataset: &str,
        (seed, deterministic): (u64, bool),
    ) -> Result<Self, TrainerError> {
        let path = dir.join("report.json");
        let mut report = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| TrainerError::io(&path, e))?,
            Err(_) => RunReport {
                task: task.into(),
                model: String::new(),
                backend: String::new(),
                dataset: String::new(),
                seed,
                deterministic,
                results: Vec::new(),
                timings: Vec::new(),
            },
        };
        report.task = task.into();
        report.model = model.into();
        report.backend = backend.into();
        report.dataset = dataset.into();
        report.seed = seed;
        report.deterministic = deterministic;
        Ok(report)
    }

    /// Adds `row`, replacing an earlier row of the same variant, scheme and metric.
    pub fn upsert(&mut self, row: ResultRow) {
        self.results.retain(|r| {
            !(r.variant == row.variant && r.scheme == row.scheme && r.metric == row.metric)
        });
        self.results.push(row);
        let order = |v: &str| {
            ["float", "ptq", "qat"]
                .iter()
                .position(|x| *x == v)
                .unwrap_or(3)
        };
        self.results
            .sort_by(|a, b| (order(&a.variant), &a.scheme).cmp(&(order(&b.variant), &b.scheme)));
    }

    /// Adds a stage's timing, replacing an earlier one of the same stage.
    pub fn upsert_timing(&mut self, timing: StageTiming) {
        self.timings
            .retain(|t| !(t.variant == timing.variant && t.scheme == timing.scheme));
        self.timings.push(timing);
    }

    fn float(&self) -> Option<&ResultRow> {
        self.results.iter().find(|r| r.variant == "float")
    }

    /// The report as a Markdown document: results with their difference to float, and timings.
    pub fn to_markdown(&self) -> String {
        let metric = self
            .results
            .first()
            .map_or("accuracy", |r| r.metric.as_str());
        let mut md = format!(
            "# {} on {} ({}, {} backend)\n\n| variant | scheme | {metric} | Δ vs float (points) | size | × smaller |\n|---|---|---:|---:|---:|---:|\n",
            self.model, self.dataset, self.task, self.backend
        );
        let float = self.float();
        for row in &self.results {
            let delta = float.map_or("".into(), |f| {
                format!("{:+.2}", 100.0 * (row.value - f.value))
            });
            let smaller = float.map_or("".into(), |f| {
                format!("{:.1}×", f.size_bytes as f64 / row.size_bytes.max(1) as f64)
            });
            md.push_str(&format!(
                "| {} | {} | {:.2}% | {} | {:.1} KiB | {} |\n",
                row.variant,
                row.scheme,
                100.0 * row.value,
                delta,
                row.size_bytes as f64 / 1024.0,
                smaller
            ));
        }
        if !self.timings.is_empty() {
            md.push_str(
                "\n| stage | scheme | epochs | s / epoch | × float |\n|---|---|---:|---:|---:|\n",
            );
            let float = self
                .timings
                .iter()
                .find(|t| t.variant == "float")
                .map(|t| t.seconds_per_epoch);
            for t in &self.timings {
                let ratio = float.map_or("".into(), |f| format!("{:.2}", t.seconds_per_epoch / f));
                md.push_str(&format!(
                    "| {} | {} | {} | {:.1} | {} |\n",
                    t.variant, t.scheme, t.epochs, t.seconds_per_epoch, ratio
                ));
            }
        }
        let deployed: Vec<_> = self
            .results
            .iter()
            .filter_map(|r| r.deployment.as_ref().map(|d| (r, d)))
            .collect();
        if !deployed.is_empty() {
            md.push_str("\n| integer model | from | artifact | × smaller than float checkpoint | predictions agree | max \\|Δlogit\\| | Δ vs fake-quant (points) | kernels |\n|---|---|---:|---:|---:|---:|---:|---|\n");
            for (row, d) in deployed {
                md.push_str(&format!(
                    "| {} | {} | {:.1} KiB | {:.2}× | {:.2}% of {} | {:.1e} | {:+.2} | {} |\n",
                    row.scheme,
                    d.source,
                    d.artifact_bytes as f64 / 1024.0,
                    d.float_checkpoint_bytes as f64 / d.artifact_bytes.max(1) as f64,
                    100.0 * d.parity.agreement,
                    d.parity.compared,
                    d.parity.max_abs_logit_diff,
                    100.0 * d.metric_delta,
                    d.isa
                ));
            }
        }
        md.push_str("\nTraining curves: [curves.svg](curves.svg). Per-model classification reports: `*/eval.md`.\n");
        md
    }

    /// Writes `report.json` and `report.md` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), TrainerError> {
        let json = serde_json::to_string_pretty(self).expect("a RunReport always serializes");
        write_file(&dir.join("report.json"), &json)?;
        write_file(&dir.join("report.md"), &self.to_markdown())
    }
}

/// Writes `contents` to `path` through a temporary file and a rename, so an interrupted run never
/// leaves a half-written file.
pub fn write_file(path: &Path, contents: &str) -> Result<(), TrainerError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| TrainerError::io(parent, e))?;
    }
    crate::integrity::write_atomic(path, contents.as_bytes()).map_err(|e| TrainerError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(variant: &str, scheme: &str, value: f64, size: usize) -> ResultRow {
        ResultRow {
            variant: variant.into(),
            scheme: scheme.into(),
            metric: "accuracy".into(),
            value,
            size_bytes: size,
            deployment: None,
            metrics: BTreeMap::new(),
        }
    }

    #[test]
    fn rows_upsert_in_order_and_markdown_shows_the_difference_to_float() {
        let dir = std::env::temp_dir().join(format!("trainer-report-{}", std::process::id()));
        let mut report = RunReport::load_or_new(
            &dir,
            "image-classification",
            "lenet-bn",
            "flex",
            "fashion-mnist",
            (42, true),
        )
        .unwrap();
        report.upsert(row("qat", "W8A8", 0.905, 1000));
        report.upsert(row("float", "float", 0.91, 4000));
        report.upsert(row("qat", "W8A8", 0.908, 1000));
        assert_eq!(report.results.len(), 2);
        assert_eq!(report.results[0].variant, "float");
        let md = report.to_markdown();
        assert!(
            md.contains("| qat | W8A8 | 90.80% | -0.20 | 1.0 KiB | 4.0× |"),
            "{md}"
        );
        report.save(&dir).unwrap();
        let again = RunReport::load_or_new(
            &dir,
            "image-classification",
            "lenet-bn",
            "flex",
            "fashion-mnist",
            (42, true),
        )
        .unwrap();
        assert_eq!(again, report);
        std::fs::remove_dir_all(dir).ok();
    }
}
