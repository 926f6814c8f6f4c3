//! [`ObserverKind`]: which range estimator an observer uses and how it accumulates batches.

use serde::{Deserialize, Serialize};

use crate::QuantError;

/// How an observer turns batches into a range.
///
/// ```
/// let k: quant::ObserverKind = serde_json::from_str(r#"{"kind":"percentile","percentile":99.9}"#).unwrap();
/// assert!(k.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ObserverKind {
    /// Running minimum and maximum over every batch seen (PyTorch's `MinMaxObserver`).
    MinMax,
    /// `range ← range + c · (batch_range - range)` (PyTorch's `MovingAverageMinMaxObserver`,
    /// `averaging_constant` `c`, 0.01 there). `c = 1` tracks the current tensor only, the usual
    /// choice for weights.
    MovingAverageMinMax {
        /// Weight of the newest batch, in `(0, 1]`.
        #[serde(default = "default_averaging_constant")]
        averaging_constant: f64,
    },
    /// Clips to the `percentile`-th largest (and `100 - percentile`-th smallest) value of each
    /// batch, averaged over batches with `averaging_constant` (TensorRT's percentile calibration).
    Percentile {
        /// Percentile in `(50, 100]`, e.g. 99.99.
        percentile: f64,
        /// Weight of the newest batch, in `(0, 1]`.
        #[serde(default = "default_averaging_constant")]
        averaging_constant: f64,
    },
    /// Searches `grid` shrink factors `α ∈ {1/grid, …, 1}` of each batch's min-max range for the one
    /// with the least quantization MSE (per parameter), averaged over batches.
    Mse {
        /// Number of candidate ranges, at least 2.
        #[serde(default = "default_grid")]
        grid: usize,
        /// Weight of the newest batch, in `(0, 1]`.
        #[serde(default = "default_averaging_constant")]
        averaging_constant: f64,
    },
    /// Entropy calibration (TensorRT's INT8 calibrator, NVIDIA pytorch-quantization's
    /// `entropy` method): the clip threshold of `|x|` whose quantized distribution has the least
    /// KL divergence from the batch's `bins`-bin histogram, averaged over batches. Computed on
    /// the host: meant for calibration (PTQ, and QAT's start), not for observers left on
    /// through training.
    Entropy {
        /// Bins of the histogram the thresholds are chosen from, at least 256 (2048 in
        /// TensorRT and pytorch-quantization).
        #[serde(default = "default_bins")]
        bins: usize,
        /// Weight of the newest batch, in `(0, 1]`.
        #[serde(default = "default_averaging_constant")]
        averaging_constant: f64,
    },
}

fn default_bins() -> usize {
    2048
}

fn default_averaging_constant() -> f64 {
    0.01
}

fn default_grid() -> usize {
    40
}

impl Default for ObserverKind {
    fn default() -> Self {
        ObserverKind::MovingAverageMinMax {
            averaging_constant: 0.01,
        }
    }
}

impl ObserverKind {
    /// Weights: the current tensor's min and max, recomputed every step.
    pub fn current() -> Self {
        ObserverKind::MovingAverageMinMax {
            averaging_constant: 1.0,
        }
    }

    /// Checks the kind's parameters, naming the bad one.
    pub fn validate(&self) -> Result<(), QuantError> {
        let check_c = |c: f64| {
            if c > 0.0 && c <= 1.0 {
                Ok(())
            } else {
                Err(QuantError::field(
                    "averaging_constant",
                    format!("{c} is not in (0, 1]"),
                ))
            }
        };
        let at_least = |field: &str, count: usize, min: usize, what: &str| {
            if count >= min {
                Ok(())
            } else {
                Err(QuantError::field(
                    field,
                    format!("{count} {what}; need at least {min}"),
                ))
            }
        };
        match *self {
            ObserverKind::MinMax => Ok(()),
            ObserverKind::MovingAverageMinMax { averaging_constant } => check_c(averaging_constant),
            ObserverKind::Percentile {
                percentile,
                averaging_constant,
            } => {
                if !(percentile > 50.0 && percentile <= 100.0) {
                    return Err(QuantError::field(
                        "percentile",
                        format!("{percentile} is not in (50, 100]"),
                    ));
                }
                check_c(averaging_constant)
            }
            ObserverKind::Mse {
                grid,
                averaging_constant,
            } => at_least("grid", grid, 2, "candidates").and(check_c(averaging_constant)),
            ObserverKind::Entropy {
                bins,
                averaging_constant,
            } => at_least("bins", bins, 256, "histogram bins").and(check_c(averaging_constant)),
        }
    }

    /// The averaging constant of a moving-average kind; `None` for running extremes.
    pub fn averaging_constant(&self) -> Option<f64> {
        match *self {
            ObserverKind::MinMax => None,
            ObserverKind::MovingAverageMinMax { averaging_constant }
            | ObserverKind::Percentile {
                averaging_constant, ..
            }
            | ObserverKind::Mse {
                averaging_constant, ..
            }
            | ObserverKind::Entropy {
                averaging_constant, ..
            } => Some(averaging_constant),
        }
    }
}
