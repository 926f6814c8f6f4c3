//! [`QatSchedule`]: the milestones of QAT fine-tuning, as a value any training step applies.
//!
//! Milestones (PyTorch's recipe: observe a while, then freeze BN statistics, then freeze the
//! observers, e.g. epochs 3 and 4):
//! - **quant delay**: for the first `quant_delay` optimizer steps fake quantization is off and
//!   observers run (the model trains in float while ranges settle);
//! - **BN freeze**: from `bn_freeze_epoch`, batch norm uses its running statistics
//!   ([`crate::ConvBn2d`] then trains exactly the folded, deployed weight);
//! - **observer freeze**: from `observer_freeze_epoch`, ranges stop moving.
//!
//! burn-train does not tell a model its epoch, so the schedule counts optimizer steps. The
//! switches it sets are `Param<Flag>`s, which checkpoints do not hold: a resumed run calls
//! [`QatSchedule::restore`] with the resumed step, which sets every switch as the schedule had it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::Module;

use crate::QuantError;
use crate::control::{set_bn_frozen, set_fake_quant, set_observers};

/// Quant delay, BN freeze and observer freeze of a QAT stage, counted in optimizer steps.
///
/// ```
/// use quant::qat::QatSchedule;
/// let schedule = QatSchedule::new(100).with_bn_freeze_epoch(Some(1)).with_observer_freeze_epoch(Some(2));
/// assert!(schedule.validate(3).is_ok());
/// assert!(schedule.validate(2).unwrap_err().to_string().contains("observer_freeze_epoch"));
/// ```
#[derive(Debug, Clone)]
pub struct QatSchedule {
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// Epoch (0-based) from which observers are frozen; `None`: never.
    pub observer_freeze_epoch: Option<usize>,
    /// Epoch (0-based) from which batch-norm statistics are frozen; `None`: never.
    pub bn_freeze_epoch: Option<usize>,
    /// Optimizer steps before fake quantization starts (observers run meanwhile).
    pub quant_delay: usize,
    steps: Arc<AtomicUsize>,
}

/// Which milestones one optimizer step reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Milestones {
    /// Fake quantization starts now (end of the quant delay).
    pub start_fake_quant: bool,
    /// Freeze observers now.
    pub freeze_observers: bool,
    /// Freeze batch-norm statistics now.
    pub freeze_bn: bool,
}

impl QatSchedule {
    /// A schedule with no milestones, starting at step 0.
    pub fn new(steps_per_epoch: usize) -> Self {
        QatSchedule {
            steps_per_epoch: steps_per_epoch.max(1),
            observer_freeze_epoch: None,
            bn_freeze_epoch: None,
            quant_delay: 0,
            steps: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Freezes observers from `epoch` (`None`: never).
    pub fn with_observer_freeze_epoch(mut self, epoch: Option<usize>) -> Self {
        self.observer_freeze_epoch = epoch;
        self
    }

    /// Freezes batch-norm statistics from `epoch` (`None`: never).
    pub fn with_bn_freeze_epoch(mut self, epoch: Option<usize>) -> Self {
        self.bn_freeze_epoch = epoch;
        self
    }

    /// Starts fake quantization after `steps` optimizer steps.
    pub fn with_quant_delay(mut self, steps: usize) -> Self {
        self.quant_delay = steps;
        self
    }

    /// Continues counting from optimizer step `step` (a resumed stage: `epoch × steps_per_epoch`).
    pub fn starting_at(self, step: usize) -> Self {
        self.steps.store(step, Ordering::Relaxed);
        self
    }

    /// Optimizer steps counted so far.
    pub fn step_count(&self) -> usize {
        self.steps.load(Ordering::Relaxed)
    }

    /// Checks that every milestone falls inside a stage of `epochs` epochs: one that never fires
    /// is an error naming its field (use `None` for "never").
    pub fn validate(&self, epochs: usize) -> Result<(), QuantError> {
        for (field, epoch) in [
            ("observer_freeze_epoch", self.observer_freeze_epoch),
            ("bn_freeze_epoch", self.bn_freeze_epoch),
        ] {
            if let Some(epoch) = epoch
                && epoch >= epochs
            {
                return Err(QuantError::field(
                    field,
                    format!(
                        "epoch {epoch} is past the last epoch ({}) of a {epochs}-epoch stage, so it would never take effect; omit it to say \"never\"",
                        epochs.saturating_sub(1)
                    ),
                ));
            }
        }
        let total = epochs * self.steps_per_epoch;
        if self.quant_delay >= total && self.quant_delay > 0 {
            return Err(QuantError::field(
                "quant_delay",
                format!(
                    "{} steps is not shorter than the stage ({total} steps): fake quantization would never start",
                    self.quant_delay
                ),
            ));
        }
        Ok(())
    }

    fn reached(&self, epoch: Option<usize>, step: usize) -> bool {
        epoch.is_some_and(|e| step >= e * self.steps_per_epoch)
    }

    /// Counts one optimizer step and says which milestones it crossed.
    pub fn step(&self) -> Milestones {
        let done = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        let crossed =
            |epoch: Option<usize>| epoch.is_some_and(|e| e > 0 && done == e * self.steps_per_epoch);
        Milestones {
            start_fake_quant: self.quant_delay > 0 && done == self.quant_delay,
            freeze_observers: crossed(self.observer_freeze_epoch),
            freeze_bn: crossed(self.bn_freeze_epoch),
        }
    }

    /// Counts one optimizer step and applies the milestones it crossed to `model`: call it after
    /// each optimizer step (e.g. in `TrainStep::optimize`).
    pub fn apply<M: Module>(&self, model: M) -> M {
        let milestones = self.step();
        let model = if milestones.start_fake_quant {
            set_fake_quant(model, true)
        } else {
            model
        };
        let model = if milestones.freeze_observers {
            set_observers(model, false)
        } else {
            model
        };
        if milestones.freeze_bn {
            set_bn_frozen(model, true)
        } else {
            model
        }
    }

    /// Sets every switch of `model` as the schedule has it at the current step: at the start of
    /// a stage (observers on, fake quantization on unless delayed, BN live) and when resuming.
    pub fn restore<M: Module>(&self, model: M) -> M {
        let step = self.step_count();
        let model = set_fake_quant(model, step >= self.quant_delay);
        let model = set_observers(model, !self.reached(self.observer_freeze_epoch, step));
        set_bn_frozen(model, self.reached(self.bn_freeze_epoch, step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_fire_once_at_their_epoch_boundary_and_resume_keeps_count() {
        let schedule = QatSchedule::new(3)
            .with_observer_freeze_epoch(Some(2))
            .with_bn_freeze_epoch(Some(1))
            .with_quant_delay(2);
        let fired: Vec<Milestones> = (0..9).map(|_| schedule.step()).collect();
        assert_eq!(fired.iter().position(|m| m.start_fake_quant), Some(1));
        assert_eq!(fired.iter().position(|m| m.freeze_bn), Some(2));
        assert_eq!(fired.iter().position(|m| m.freeze_observers), Some(5));
        assert_eq!(
            fired
                .iter()
                .filter(|m| m.freeze_bn || m.freeze_observers || m.start_fake_quant)
                .count(),
            3
        );
        let resumed = QatSchedule::new(3)
            .with_observer_freeze_epoch(Some(2))
            .with_bn_freeze_epoch(Some(1))
            .starting_at(3);
        let fired: Vec<Milestones> = (0..6).map(|_| resumed.step()).collect();
        assert_eq!(fired.iter().position(|m| m.freeze_observers), Some(2));
        assert!(
            !fired.iter().any(|m| m.freeze_bn),
            "bn milestone was before the resume point"
        );
    }

    #[test]
    fn milestones_past_the_stage_are_errors_naming_the_field() {
        let s = QatSchedule::new(10).with_bn_freeze_epoch(Some(2));
        let err = s.validate(2).unwrap_err().to_string();
        assert!(
            err.contains("bn_freeze_epoch") && err.contains("never"),
            "{err}"
        );
        assert!(s.validate(3).is_ok());
        let delayed = QatSchedule::new(10).with_quant_delay(20);
        assert!(
            delayed
                .validate(2)
                .unwrap_err()
                .to_string()
                .contains("quant_delay")
        );
        assert!(QatSchedule::new(10).validate(1).is_ok());
    }
}
