//! Stored tensors: element types, sub-byte packing and the checks a loaded tensor passes.

use serde::{Deserialize, Serialize};

/// How a tensor's elements are stored in the artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// Signed 8-bit codes.
    I8,
    /// Signed 4-bit codes, two per byte (element `2i` in the low nibble), two's complement.
    I4,
    /// Signed 2-bit codes, four per byte (element `4i` in the lowest bits), two's complement.
    I2,
    /// 32-bit integers (biases at the accumulator's scale).
    I32,
    /// 32-bit floats (scales, float biases).
    F32,
}

impl DType {
    /// Bytes that `elems` elements take in the file.
    pub fn stored_len(self, elems: usize) -> usize {
        match self {
            DType::I8 => elems,
            DType::I4 => elems.div_ceil(2),
            DType::I2 => elems.div_ceil(4),
            DType::I32 | DType::F32 => elems * 4,
        }
    }

    /// The narrowest code type that holds signed `bits`-bit codes.
    pub fn for_code_bits(bits: u32) -> DType {
        match bits {
            0..=2 => DType::I2,
            3..=4 => DType::I4,
            _ => DType::I8,
        }
    }

    /// The range a stored code of this type can hold, for the integer types.
    fn code_range(self) -> Option<(i32, i32)> {
        match self {
            DType::I8 => Some((-128, 127)),
            DType::I4 => Some((-8, 7)),
            DType::I2 => Some((-2, 1)),
            _ => None,
        }
    }
}

/// A tensor's values in memory (sub-byte codes unpacked to `i8`).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Integer codes of an `I8`, `I4` or `I2` tensor.
    Codes(Vec<i8>),
    /// Values of an `I32` tensor.
    I32(Vec<i32>),
    /// Values of an `F32` tensor.
    F32(Vec<f32>),
}

/// One named tensor: storage type, shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    /// Storage type in the file.
    pub dtype: DType,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values.
    pub data: TensorData,
}

impl StoredTensor {
    /// Integer codes stored with `dtype` (`I8`, `I4` or `I2`); `None` when a code does not fit.
    pub fn codes(dtype: DType, shape: Vec<usize>, codes: Vec<i8>) -> Option<Self> {
        let (lo, hi) = dtype.code_range()?;
        codes
            .iter()
            .all(|&c| (lo..=hi).contains(&(c as i32)))
            .then_some(StoredTensor {
                dtype,
                shape,
                data: TensorData::Codes(codes),
            })
    }

    /// An `I32` tensor.
    pub fn i32(shape: Vec<usize>, values: Vec<i32>) -> Self {
        StoredTensor {
            dtype: DType::I32,
            shape,
            data: TensorData::I32(values),
        }
    }

    /// An `F32` tensor.
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        StoredTensor {
            dtype: DType::F32,
            shape,
            data: TensorData::F32(values),
        }
    }

    /// Number of elements the shape declares.
    pub fn elems(&self) -> usize {
        self.shape.iter().product()
    }

    /// The codes, if this is a code tensor.
    pub fn as_codes(&self) -> Option<&[i8]> {
        match &self.data {
            TensorData::Codes(c) => Some(c),
            _ => None,
        }
    }

    /// The values, if this is an `I32` tensor.
    pub fn as_i32(&self) -> Option<&[i32]> {
        match &self.data {
            TensorData::I32(v) => Some(v),
            _ => None,
        }
    }

    /// The values, if this is an `F32` tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The file bytes of this tensor.
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.data {
            TensorData::Codes(codes) => pack_codes(self.dtype, codes),
            TensorData::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }

    /// Reads `elems` elements of `dtype` from exactly `bytes` (its stored length).
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Result<Self, String> {
        let elems: usize = shape.iter().product();
        if bytes.len() != dtype.stored_len(elems) {
            return Err(format!(
                "holds {} bytes, but {elems} {dtype:?} elements take {}",
                bytes.len(),
                dtype.stored_len(elems)
            ));
        }
        let word = |c: &[u8]| [c[0], c[1], c[2], c[3]];
        let data = match dtype {
            DType::I8 | DType::I4 | DType::I2 => {
                TensorData::Codes(unpack_codes(dtype, bytes, elems))
            }
            DType::I32 => TensorData::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(word(c)))
                    .collect(),
            ),
            DType::F32 => TensorData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(word(c)))
                    .collect(),
            ),
        };
        Ok(StoredTensor { dtype, shape, data })
    }
}

/// Packs codes at the width of `dtype` (sub-byte codes little-end first).
fn pack_codes(dtype: DType, codes: &[i8]) -> Vec<u8> {
    let per_byte = match dtype {
        DType::I4 => 2,
        DType::I2 => 4,
        _ => return codes.iter().map(|&c| c as u8).collect(),
    };
    let bits = 8 / per_byte;
    let mask = (1u8 << bits) - 1;
    codes
        .chunks(per_byte)
        .map(|chunk| {
            chunk.iter().enumerate().fold(0u8, |byte, (i, &c)| {
                byte | (((c as u8) & mask) << (i * bits))
            })
        })
        .collect()
}

/// Unpacks `elems` codes of `dtype`, sign-extending sub-byte codes.
fn unpack_codes(dtype: DType, bytes: &[u8], elems: usize) -> Vec<i8> {
    let bits = match dtype {
        DType::I4 => 4,
        DType::I2 => 2,
        _ => return bytes.iter().map(|&b| b as i8).collect(),
    };
    let per_byte = 8 / bits;
    let shift = 8 - bits;
    (0..elems)
        .map(|i| {
            let raw = bytes[i / per_byte] >> ((i % per_byte) * bits);
            ((raw << shift) as i8) >> shift
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_byte_codes_round_trip_and_take_their_width() {
        for (dtype, lo, hi) in [
            (DType::I8, -128, 127),
            (DType::I4, -8, 7),
            (DType::I2, -2, 1),
        ] {
            for n in [1usize, 3, 17, 64] {
                let codes: Vec<i8> = (0..n)
                    .map(|i| (lo + (i as i32 * 7) % (hi - lo + 1)) as i8)
                    .collect();
                let t = StoredTensor::codes(dtype, vec![n], codes.clone()).unwrap();
                let bytes = t.to_bytes();
                assert_eq!(bytes.len(), dtype.stored_len(n));
                let back = StoredTensor::from_bytes(dtype, vec![n], &bytes).unwrap();
                assert_eq!(back.as_codes().unwrap(), &codes[..], "{dtype:?} n={n}");
            }
        }
    }

    #[test]
    fn codes_out_of_the_type_range_are_refused() {
        assert!(StoredTensor::codes(DType::I4, vec![1], vec![8]).is_none());
        assert!(StoredTensor::codes(DType::I2, vec![1], vec![-3]).is_none());
        assert!(StoredTensor::codes(DType::I2, vec![2], vec![-2, 1]).is_some());
    }

    #[test]
    fn a_length_that_does_not_match_the_shape_is_an_error() {
        let err = StoredTensor::from_bytes(DType::F32, vec![3], &[0; 8]).unwrap_err();
        assert!(err.contains("holds 8 bytes"), "{err}");
    }
}
