//! [`QuantSpec`]: the integer grid `[qmin, qmax]` and how real values map onto it.
//!
//! `q = clamp(round(x / scale) + zero_point, qmin, qmax)`, `x̂ = (q - zero_point) · scale`.
//! Symmetric schemes fix `zero_point` (0 for signed, the grid's midpoint for unsigned, as
//! PyTorch's observers do); affine schemes learn or observe it.

use burn::config::Config;

use super::Granularity;
use crate::QuantError;

/// An integer quantization scheme for one tensor.
///
/// ```
/// use quant::{QuantSpec, Granularity};
/// let w4 = QuantSpec::new().with_bits(4).with_granularity(Granularity::PerChannel { axis: None });
/// assert_eq!((w4.qmin(), w4.qmax()), (-8, 7));
/// assert!(QuantSpec::new().with_bits(9).validate().is_err());
/// ```
#[derive(Config, Debug, PartialEq)]
pub struct QuantSpec {
    /// Bit width of the integer grid: 2 to 8, or 16.
    #[config(default = 8)]
    pub bits: u32,
    /// Signed grid (`[-2^(b-1), 2^(b-1)-1]`) or unsigned (`[0, 2^b-1]`).
    #[config(default = true)]
    pub signed: bool,
    /// Symmetric (fixed zero point) or affine (observed or learned zero point).
    #[config(default = true)]
    pub symmetric: bool,
    /// Drop the most negative code (`[-127, 127]` for int8), as TensorRT and LSQ do.
    #[config(default = false)]
    pub narrow_range: bool,
    /// One scale per tensor, per channel or per group.
    #[config(default = "Granularity::PerTensor")]
    pub granularity: Granularity,
}

impl QuantSpec {
    /// Checks every field, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), QuantError> {
        if !(2..=8).contains(&self.bits) && self.bits != 16 {
            return Err(QuantError::field(
                "bits",
                format!("{} is not supported; use 2..=8 or 16", self.bits),
            ));
        }
        if let Granularity::PerGroup { group_size, .. } = self.granularity
            && group_size == 0
        {
            return Err(QuantError::field(
                "granularity.group_size",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Returns `self` when valid, so a spec can be checked where it is built.
    pub fn checked(self) -> Result<Self, QuantError> {
        self.validate().map(|_| self)
    }

    /// Checks that this spec can quantize a tensor of `shape` once its axis is resolved:
    /// the axis exists, and a group size divides the grouped axis.
    pub fn validate_for_shape(&self, shape: &[usize]) -> Result<(), QuantError> {
        self.validate()?;
        let rank = shape.len();
        match self.granularity {
            Granularity::PerTensor | Granularity::PerToken => Ok(()),
            Granularity::PerChannel { axis } => {
                let axis = axis.unwrap_or(0);
                if axis >= rank {
                    return Err(QuantError::field(
                        "granularity.axis",
                        format!("axis {axis} does not exist in a tensor of shape {shape:?}"),
                    ));
                }
                Ok(())
            }
            Granularity::PerGroup { axis, group_size } => {
                let axis = axis.unwrap_or(0);
                if axis >= rank {
                    return Err(QuantError::field(
                        "granularity.axis",
                        format!("axis {axis} does not exist in a tensor of shape {shape:?}"),
                    ));
                }
                if shape[axis] % group_size != 0 {
                    return Err(QuantError::field(
                        "granularity.group_size",
                        format!(
                            "{group_size} does not divide axis {axis} of length {} (shape {shape:?})",
                            shape[axis]
                        ),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Smallest integer code.
    pub fn qmin(&self) -> i32 {
        match (self.signed, self.narrow_range) {
            (true, false) => -(1 << (self.bits - 1)),
            (true, true) => -(1 << (self.bits - 1)) + 1,
            (false, _) => 0,
        }
    }

    /// Largest integer code.
    pub fn qmax(&self) -> i32 {
        match (self.signed, self.narrow_range) {
            (true, _) => (1 << (self.bits - 1)) - 1,
            (false, false) => (1 << self.bits) - 1,
            (false, true) => (1 << self.bits) - 2,
        }
    }

    /// Zero point of a symmetric scheme: 0 on a signed grid, the upper midpoint
    /// `(qmin + qmax + 1) / 2` on an unsigned one (128 for uint8, as PyTorch's observers).
    pub fn symmetric_zero_point(&self) -> i32 {
        if self.signed {
            0
        } else {
            (self.qmin() + self.qmax() + 1) / 2
        }
    }

    /// Bits a value takes when stored in this scheme (16-bit codes are stored as 16 bits).
    pub fn storage_bits(&self) -> u32 {
        self.bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_match_pytorch_ranges() {
        let s8 = QuantSpec::new();
        assert_eq!((s8.qmin(), s8.qmax()), (-128, 127));
        let u8 = QuantSpec::new().with_signed(false);
        assert_eq!((u8.qmin(), u8.qmax()), (0, 255));
        assert_eq!(u8.symmetric_zero_point(), 128);
        let n8 = QuantSpec::new().with_narrow_range(true);
        assert_eq!((n8.qmin(), n8.qmax()), (-127, 127));
        let s2 = QuantSpec::new().with_bits(2);
        assert_eq!((s2.qmin(), s2.qmax()), (-2, 1));
        let s16 = QuantSpec::new().with_bits(16);
        assert_eq!((s16.qmin(), s16.qmax()), (-32768, 32767));
    }

    #[test]
    fn invalid_fields_are_named() {
        let err = QuantSpec::new().with_bits(9).validate().unwrap_err();
        assert!(err.to_string().contains("`bits`"), "{err}");
        assert!(err.to_string().contains("9"), "{err}");
        let grouped = QuantSpec::new().with_granularity(Granularity::PerGroup {
            axis: Some(0),
            group_size: 3,
        });
        let err = grouped.validate_for_shape(&[8, 4]).unwrap_err();
        assert!(err.to_string().contains("group_size"), "{err}");
        assert!(err.to_string().contains("does not divide"), "{err}");
        assert!(grouped.validate_for_shape(&[9, 4]).is_ok());
        let zero = QuantSpec::new().with_granularity(Granularity::PerGroup {
            axis: None,
            group_size: 0,
        });
        assert!(zero.validate().is_err());
    }

    #[test]
    fn spec_reads_from_json_with_tagged_granularity() {
        let spec: QuantSpec = serde_json::from_str(
            r#"{"bits":4,"signed":true,"symmetric":true,"narrow_range":false,
                "granularity":{"kind":"per_group","axis":0,"group_size":32}}"#,
        )
        .unwrap();
        assert_eq!(
            spec.granularity,
            Granularity::PerGroup {
                axis: Some(0),
                group_size: 32
            }
        );
        let bad =
            serde_json::from_str::<QuantSpec>(r#"{"bits":4,"granularity":{"kind":"per_row"}}"#);
        assert!(bad.is_err());
    }
}
