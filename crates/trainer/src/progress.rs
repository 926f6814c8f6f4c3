//! [`ProgressLines`]: plain progress for logs and pipes (`--no-tui`, or stdout not a terminal),
//! one line at each quarter of a split and one at its end, with the running loss and accuracy.

use std::collections::HashMap;
use std::time::Instant;

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::{MetricDefinition, MetricId};
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};

/// Metric names shown on progress lines (the others are still logged to files).
const SHOWN: [&str; 4] = ["Loss", "Accuracy", "Entity F1", "Learning Rate"];

/// A renderer printing readable progress lines instead of the TUI.
pub struct ProgressLines {
    label: String,
    names: HashMap<MetricId, String>,
    latest: Vec<(String, String)>,
    epoch: usize,
    total_epochs: usize,
    split: String,
    split_total: usize,
    next_quarter: usize,
    started: Instant,
}

impl ProgressLines {
    /// Progress lines prefixed with `label` (the stage, e.g. `qat W4A4`).
    pub fn new(label: impl Into<String>) -> Self {
        ProgressLines {
            label: label.into(),
            names: HashMap::new(),
            latest: Vec::new(),
            epoch: 1,
            total_epochs: 0,
            split: String::new(),
            split_total: 0,
            next_quarter: 1,
            started: Instant::now(),
        }
    }

    fn record(&mut self, state: MetricState) {
        let MetricState::Numeric(entry, _) = state else {
            return;
        };
        let Some(name) = self.names.get(&entry.metric_id) else {
            return;
        };
        if !SHOWN.contains(&name.as_str()) {
            return;
        }
        // burn-train formats "epoch <running> - batch <last>"; the running value reads best.
        let formatted = &entry.serialized_entry.formatted;
        let running = formatted
            .split(" - batch")
            .next()
            .unwrap_or(formatted)
            .trim_start_matches("epoch ")
            .trim();
        let short = if name == "Learning Rate" {
            "lr"
        } else {
            name.as_str()
        };
        let value = format!("{short} {running}");
        match self.latest.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.latest.push((name.clone(), value)),
        }
    }

    fn line(&self, done: usize) {
        let percent = if self.split_total > 0 {
            100 * done / self.split_total
        } else {
            100
        };
        let metrics: Vec<String> = self.latest.iter().map(|(_, v)| v.clone()).collect();
        println!(
            "[{}] epoch {}/{} {} {:>3}% ({}/{}) {:>6.1}s | {}",
            self.label,
            self.epoch,
            self.total_epochs,
            self.split,
            percent,
            done,
            self.split_total,
            self.started.elapsed().as_secs_f64(),
            metrics.join(" | ")
        );
    }
}

impl MetricsRendererTraining for ProgressLines {
    fn update_train(&mut self, state: MetricState) {
        self.record(state);
    }

    fn update_valid(&mut self, state: MetricState) {
        self.record(state);
    }
}

impl MetricsRendererEvaluation for ProgressLines {
    fn update_test(&mut self, _name: EvaluationName, state: MetricState) {
        self.record(state);
    }
}

impl TrainingProgressLogger for ProgressLines {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        _total_items: Option<usize>,
        _label: Option<&str>,
    ) {
        self.total_epochs = total_epochs;
        self.epoch = starting_epoch.max(1);
        println!(
            "[{}] training epochs {}..={}",
            self.label, self.epoch, total_epochs
        );
    }

    fn update_epoch(&mut self, epoch: usize) {
        self.epoch = epoch + 1;
    }

    fn start_split(&mut self, split: &str, total_items: usize) {
        self.split = split.to_string();
        self.split_total = total_items;
        self.next_quarter = 1;
        self.latest.clear();
    }

    fn update_split(&mut self, items_processed: usize) {
        if self.split_total > 0
            && self.next_quarter < 4
            && items_processed * 4 >= self.next_quarter * self.split_total
        {
            self.next_quarter += 1;
            self.line(items_processed);
        }
    }

    fn end_split(&mut self) {
        self.line(self.split_total);
    }

    fn end(&mut self) {
        println!(
            "[{}] done in {:.1}s",
            self.label,
            self.started.elapsed().as_secs_f64()
        );
    }

    fn log_event_training(&mut self, _event: String) {}
}

impl EvaluationProgressLogger for ProgressLines {
    fn start_global_progress(&mut self, _total_tests: usize) {}
    fn start_test(&mut self, _name: &str, _total_items: usize) {}
    fn update_test_progress(&mut self, _items_processed: usize) {}
    fn end_test(&mut self) {}
    fn end_global_progress(&mut self) {}
    fn log_event_evaluation(&mut self, _event: String) {}
}

impl MetricsRenderer for ProgressLines {
    fn manual_close(&mut self) {}

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.to_string());
    }
}
