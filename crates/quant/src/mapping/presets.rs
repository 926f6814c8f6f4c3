//! Ready-made recipes: W8A8 (the default), W4A8, W4A4 and W2A8.
//!
//! | preset | weights | activations |
//! |---|---|---|
//! | W8A8 | int8 symmetric narrow, per-channel, current min-max, clipped STE | uint8 affine per-tensor, moving-average min-max (c = 0.01) |
//! | W4A8 | int4 symmetric per-channel, LSQ | as W8A8 |
//! | W4A4 | int4 symmetric per-channel, LSQ | uint4 affine per-tensor, LSQ (zero point from calibration) |
//! | W2A8 | int2 symmetric per-channel, LSQ, MSE-initialised | as W8A8 |
//! | W8 | as W8A8 | float (weight-only) |
//! | W4 | as W4A8 | float (weight-only, like torchao's int4 weight-only) |
//!
//! Low bit widths learn their step sizes (LSQ), which is what recovers accuracy below 8 bits
//! (Esser et al. 2019; Bhalgat et al. 2020). 8-bit observed scales already lose little.

use super::QuantMapping;
use crate::{Granularity, Learning, ObserverKind, QuantError, QuantSpec, QuantizerConfig};

fn weights(bits: u32, learning: Learning, observer: ObserverKind) -> QuantizerConfig {
    QuantizerConfig::new(
        QuantSpec::new()
            .with_bits(bits)
            .with_narrow_range(true)
            .with_granularity(Granularity::PerChannel { axis: None }),
    )
    .with_observer(observer)
    .with_learning(learning)
}

fn activations(bits: u32, learning: Learning) -> QuantizerConfig {
    QuantizerConfig::new(
        QuantSpec::new()
            .with_bits(bits)
            .with_signed(false)
            .with_symmetric(false),
    )
    .with_observer(ObserverKind::MovingAverageMinMax {
        averaging_constant: 0.01,
    })
    .with_learning(learning)
}

impl QuantMapping {
    /// int8 per-channel weights, uint8 per-tensor activations, observed scales.
    pub fn w8a8() -> Self {
        QuantMapping::new()
            .with_weight(Some(weights(8, Learning::Fixed, ObserverKind::current())))
            .with_activation(Some(activations(8, Learning::Fixed)))
    }

    /// int4 per-channel LSQ weights, uint8 activations.
    pub fn w4a8() -> Self {
        QuantMapping::new()
            .with_weight(Some(weights(4, Learning::Lsq, ObserverKind::current())))
            .with_activation(Some(activations(8, Learning::Fixed)))
    }

    /// int4 per-channel LSQ weights, uint4 LSQ activations (learned scale; zero point from calibration).
    pub fn w4a4() -> Self {
        QuantMapping::new()
            .with_weight(Some(weights(4, Learning::Lsq, ObserverKind::current())))
            .with_activation(Some(activations(4, Learning::Lsq)))
    }

    /// int2 per-channel LSQ weights (range initialised by MSE search), uint8 activations.
    pub fn w2a8() -> Self {
        let mse = ObserverKind::Mse {
            grid: 40,
            averaging_constant: 1.0,
        };
        QuantMapping::new()
            .with_weight(Some(weights(2, Learning::Lsq, mse)))
            .with_activation(Some(activations(8, Learning::Fixed)))
    }

    /// int8 per-channel weights, float activations (weight-only QAT of any model).
    pub fn w8() -> Self {
        Self::w8a8().weights_only()
    }

    /// int4 per-channel LSQ weights, float activations (weight-only QAT of any model).
    pub fn w4() -> Self {
        Self::w4a8().weights_only()
    }

    /// A preset by name (`w8a8`, `w4a8`, `w4a4`, `w2a8`, `w8`, `w4`, case-insensitive), or
    /// `float` for none.
    pub fn preset(name: &str) -> Result<Self, QuantError> {
        match name.to_ascii_lowercase().as_str() {
            "w8a8" => Ok(Self::w8a8()),
            "w4a8" => Ok(Self::w4a8()),
            "w4a4" => Ok(Self::w4a4()),
            "w2a8" => Ok(Self::w2a8()),
            "w8" => Ok(Self::w8()),
            "w4" => Ok(Self::w4()),
            "float" => Ok(QuantMapping::new()),
            other => Err(QuantError::field(
                "scheme",
                format!(
                    "unknown preset `{other}`; choose from float, w8a8, w4a8, w4a4, w2a8, w8, w4"
                ),
            )),
        }
    }
}
