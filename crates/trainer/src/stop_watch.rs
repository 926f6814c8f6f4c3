//! [`StopWatch`]: remembers that the user stopped training from the TUI.
//!
//! burn-train 0.22.1's TUI resets the `Interrupter` in its `on_train_end`, before
//! `SupervisedTraining::launch` reads it, so `LearningResult::interrupted` is always `None` after a
//! TUI quit. This wrapper reads the interrupter just before the TUI resets it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::train::logger::{EvaluationProgressLogger, TrainingProgressLogger};
use burn::train::metric::MetricDefinition;
use burn::train::renderer::{
    EvaluationName, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining,
};
use burn::train::{Interrupter, LearnerSummary};

/// A renderer that delegates to another and records whether training was stopped by request.
pub struct StopWatch {
    inner: Box<dyn MetricsRenderer>,
    interrupter: Interrupter,
    stopped: Arc<AtomicBool>,
}

impl StopWatch {
    /// Wraps `inner`; `stopped()` of the returned flag tells whether `interrupter` fired.
    pub fn new(
        inner: Box<dyn MetricsRenderer>,
        interrupter: Interrupter,
    ) -> (Self, Arc<AtomicBool>) {
        let stopped = Arc::new(AtomicBool::new(false));
        (
            StopWatch {
                inner,
                interrupter,
                stopped: stopped.clone(),
            },
            stopped,
        )
    }
}

impl MetricsRendererTraining for StopWatch {
    fn update_train(&mut self, state: MetricState) {
        self.inner.update_train(state);
    }
    fn update_valid(&mut self, state: MetricState) {
        self.inner.update_valid(state);
    }
    fn on_train_end(
        &mut self,
        summary: Option<LearnerSummary>,
    ) -> Result<(), Box<dyn core::error::Error>> {
        if self.interrupter.should_stop() {
            self.stopped.store(true, Ordering::Relaxed);
        }
        self.inner.on_train_end(summary)
    }
}

impl MetricsRendererEvaluation for StopWatch {
    fn update_test(&mut self, name: EvaluationName, state: MetricState) {
        self.inner.update_test(name, state);
    }
}

impl TrainingProgressLogger for StopWatch {
    fn start(
        &mut self,
        total_epochs: usize,
        starting_epoch: usize,
        total_items: Option<usize>,
        label: Option<&str>,
    ) {
        self.inner
            .start(total_epochs, starting_epoch, total_items, label);
    }
    fn update_epoch(&mut self, epoch: usize) {
        self.inner.update_epoch(epoch);
    }
    fn start_split(&mut self, split: &str, total_items: usize) {
        self.inner.start_split(split, total_items);
    }
    fn update_split(&mut self, items_processed: usize) {
        self.inner.update_split(items_processed);
    }
    fn end_split(&mut self) {
        self.inner.end_split();
    }
    fn end(&mut self) {
        self.inner.end();
    }
    fn log_event_training(&mut self, event: String) {
        self.inner.log_event_training(event);
    }
}

impl EvaluationProgressLogger for StopWatch {
    fn start_global_progress(&mut self, total_tests: usize) {
        self.inner.start_global_progress(total_tests);
    }
    fn start_test(&mut self, name: &str, total_items: usize) {
        self.inner.start_test(name, total_items);
    }
    fn update_test_progress(&mut self, items_processed: usize) {
        self.inner.update_test_progress(items_processed);
    }
    fn end_test(&mut self) {
        self.inner.end_test();
    }
    fn end_global_progress(&mut self) {
        self.inner.end_global_progress();
    }
    fn log_event_evaluation(&mut self, event: String) {
        self.inner.log_event_evaluation(event);
    }
}

impl MetricsRenderer for StopWatch {
    fn manual_close(&mut self) {
        self.inner.manual_close();
    }
    fn register_metric(&mut self, definition: MetricDefinition) {
        self.inner.register_metric(definition);
    }
}
