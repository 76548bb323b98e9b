//! The one dtype table: every element type a weight file can hold, its size, its names in
//! PyTorch and safetensors, and its conversion to f32 (f16/bf16 through the `half` crate).
use anyhow::{Result, bail};

/// Element type of a stored tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub const ALL: [DType; 10] = [
        DType::F64,
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I16,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The torch name of the dtype (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// Floating-point types: the ones a weight may be stored in.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    /// The safetensors dtype, if this table knows it.
    pub fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        use safetensors::Dtype as S;
        Some(match d {
            S::F64 => DType::F64,
            S::F32 => DType::F32,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I64 => DType::I64,
            S::I32 => DType::I32,
            S::I16 => DType::I16,
            S::I8 => DType::I8,
            S::U8 => DType::U8,
            S::BOOL => DType::Bool,
            _ => return None,
        })
    }

    /// Converts little-endian elements to f32 (integers and bools by value; int64 and float64
    /// values may round). `bytes` must hold a whole number of elements.
    pub fn to_f32(self, bytes: &[u8]) -> Result<Vec<f32>> {
        let es = self.size();
        if !bytes.len().is_multiple_of(es) {
            bail!(
                "{} bytes are not a whole number of {} elements",
                bytes.len(),
                self.name()
            );
        }
        let c = bytes.chunks_exact(es);
        Ok(match self {
            DType::F64 => c.map(|c| f64::from_le_bytes(arr(c)) as f32).collect(),
            DType::F32 => c.map(|c| f32::from_le_bytes(arr(c))).collect(),
            DType::F16 => c
                .map(|c| half::f16::from_le_bytes(arr(c)).to_f32())
                .collect(),
            DType::BF16 => c
                .map(|c| half::bf16::from_le_bytes(arr(c)).to_f32())
                .collect(),
            DType::I64 => c.map(|c| i64::from_le_bytes(arr(c)) as f32).collect(),
            DType::I32 => c.map(|c| i32::from_le_bytes(arr(c)) as f32).collect(),
            DType::I16 => c.map(|c| f32::from(i16::from_le_bytes(arr(c)))).collect(),
            DType::I8 => c.map(|c| f32::from(c[0] as i8)).collect(),
            DType::U8 => c.map(|c| f32::from(c[0])).collect(),
            DType::Bool => c.map(|c| if c[0] == 0 { 0.0 } else { 1.0 }).collect(),
        })
    }
}

/// Copies a chunk of exactly `N` bytes into an array (chunks come from `chunks_exact(N)`, so
/// the fallback zero array is never used).
fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_types_convert_exactly() {
        let f16 = |h: u16| DType::F16.to_f32(&h.to_le_bytes()).unwrap()[0];
        assert_eq!(f16(0x3c00), 1.0);
        assert_eq!(f16(0xc100), -2.5);
        assert_eq!(f16(0x7bff), 65504.0);
        assert_eq!(f16(0x0001), 2f32.powi(-24));
        assert_eq!(f16(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16(0x7c00), f32::INFINITY);
        assert!(f16(0x7e00).is_nan());
        assert_eq!(f16(0x0400), 2f32.powi(-14));
        let bf = |h: u16| DType::BF16.to_f32(&h.to_le_bytes()).unwrap()[0];
        assert_eq!(bf(0x3f80), 1.0);
        assert_eq!(bf(0xc020), -2.5);
        assert!(DType::F32.to_f32(&[0, 0, 0]).is_err());
        assert_eq!(DType::I8.to_f32(&[0xff, 3]).unwrap(), vec![-1.0, 3.0]);
    }
}
