//! [`QatSchedule`]: the QAT milestones of a run, applied between optimizer steps.
//!
//! burn-train does not tell a model its epoch, so the schedule counts optimizer steps and
//! converts milestones given in epochs with the number of steps per epoch. A resumed run sets the
//! counter from the checkpoint's epoch; the switches themselves are `Param<Flag>`s saved in the
//! checkpoint, so they come back as they were.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::module::Module;

/// Observer freeze and batch-norm freeze, as optimizer-step milestones.
#[derive(Debug, Clone)]
pub struct QatSchedule {
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// Epoch from which observers are frozen (0: never).
    pub observer_freeze_epoch: usize,
    /// Epoch from which batch-norm statistics are frozen (0: never).
    pub bn_freeze_epoch: usize,
    steps: Arc<AtomicUsize>,
}

/// Which milestones a step crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Milestones {
    /// Freeze observers now.
    pub freeze_observers: bool,
    /// Freeze batch-norm statistics now.
    pub freeze_bn: bool,
}

impl QatSchedule {
    /// A schedule starting at `start_epoch` (non-zero when resuming).
    pub fn new(
        steps_per_epoch: usize,
        observer_freeze_epoch: usize,
        bn_freeze_epoch: usize,
        start_epoch: usize,
    ) -> Self {
        QatSchedule {
            steps_per_epoch: steps_per_epoch.max(1),
            observer_freeze_epoch,
            bn_freeze_epoch,
            steps: Arc::new(AtomicUsize::new(start_epoch * steps_per_epoch.max(1))),
        }
    }

    /// Counts one optimizer step and says which milestones it reached.
    pub fn step(&self) -> Milestones {
        let done = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        let reached = |epoch: usize| epoch > 0 && done == epoch * self.steps_per_epoch;
        Milestones {
            freeze_observers: reached(self.observer_freeze_epoch),
            freeze_bn: reached(self.bn_freeze_epoch),
        }
    }

    /// Counts one step and applies the milestones it reached to `model`.
    pub fn apply<M: Module>(&self, model: M) -> M {
        let milestones = self.step();
        let model = if milestones.freeze_observers {
            quant::control::set_observers(model, false)
        } else {
            model
        };
        if milestones.freeze_bn {
            quant::control::set_bn_frozen(model, true)
        } else {
            model
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_fire_once_at_their_epoch_boundary_and_resume_keeps_count() {
        let schedule = QatSchedule::new(3, 2, 1, 0);
        let fired: Vec<Milestones> = (0..9).map(|_| schedule.step()).collect();
        assert_eq!(fired.iter().position(|m| m.freeze_bn), Some(2));
        assert_eq!(fired.iter().position(|m| m.freeze_observers), Some(5));
        assert_eq!(
            fired
                .iter()
                .filter(|m| m.freeze_bn || m.freeze_observers)
                .count(),
            2
        );
        let resumed = QatSchedule::new(3, 2, 1, 1);
        let fired: Vec<Milestones> = (0..6).map(|_| resumed.step()).collect();
        assert_eq!(fired.iter().position(|m| m.freeze_observers), Some(2));
        assert!(
            !fired.iter().any(|m| m.freeze_bn),
            "bn milestone was before the resume point"
        );
    }
}
