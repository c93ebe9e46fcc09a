//! A tensor as bytes: the common currency of the `.pth` reader and the safetensors reader/writer.
//!
//! Readers produce plain bytes first and only then hand them to libtorch, because every check
//! (dtype known, length consistent with the shape, bool bytes 0/1) must happen before
//! `at_tensor_of_data` trusts a pointer and a shape: libtorch would read past the end of a short
//! buffer instead of reporting it.

use std::borrow::Cow;

use tch::{Device, Kind, Tensor};

/// The element types a checkpoint tensor may have. These are the dtypes that occur in pose
/// checkpoints (weights in float32/16/bfloat16/64; BatchNorm counters in int64; masks in bool or
/// uint8); complex, quantised and float8 tensors are refused with an error naming the dtype.
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
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            DType::F64 => Kind::Double,
            DType::F32 => Kind::Float,
            DType::F16 => Kind::Half,
            DType::BF16 => Kind::BFloat16,
            DType::I64 => Kind::Int64,
            DType::I32 => Kind::Int,
            DType::I16 => Kind::Int16,
            DType::I8 => Kind::Int8,
            DType::U8 => Kind::Uint8,
            DType::Bool => Kind::Bool,
        }
    }

    pub fn from_kind(kind: Kind) -> Option<DType> {
        Some(match kind {
            Kind::Double => DType::F64,
            Kind::Float => DType::F32,
            Kind::Half => DType::F16,
            Kind::BFloat16 => DType::BF16,
            Kind::Int64 => DType::I64,
            Kind::Int => DType::I32,
            Kind::Int16 => DType::I16,
            Kind::Int8 => DType::I8,
            Kind::Uint8 => DType::U8,
            Kind::Bool => DType::Bool,
            _ => return None,
        })
    }

    pub fn safetensors(self) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match self {
            DType::F64 => S::F64,
            DType::F32 => S::F32,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::I64 => S::I64,
            DType::I32 => S::I32,
            DType::I16 => S::I16,
            DType::I8 => S::I8,
            DType::U8 => S::U8,
            DType::Bool => S::BOOL,
        }
    }

    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<DType> {
        use safetensors::Dtype as S;
        Some(match dtype {
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

    /// The dtype of a `torch.<Name>Storage` class, the way `torch.save` records a tensor's type.
    pub(crate) fn from_storage_class(name: &str) -> Option<DType> {
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

/// A dense, contiguous (row-major), little-endian tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Checks that `data` holds exactly `shape`'s elements, and normalises bool bytes to 0/1
    /// (libtorch assumes it; a crafted file could store 2). Err is a human-readable reason.
    pub fn new(dtype: DType, shape: Vec<usize>, mut data: Vec<u8>) -> Result<Self, String> {
        let numel = checked_numel(&shape).ok_or_else(|| format!("shape {shape:?} overflows"))?;
        let expected = numel
            .checked_mul(dtype.size())
            .ok_or_else(|| format!("shape {shape:?} overflows"))?;
        if data.len() != expected {
            return Err(format!(
                "{dtype:?} tensor of shape {shape:?} needs {expected} bytes, got {}",
                data.len()
            ));
        }
        if dtype == DType::Bool {
            data.iter_mut().for_each(|b| *b = u8::from(*b != 0));
        }
        Ok(RawTensor { dtype, shape, data })
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }

    /// A CPU tensor with a copy of the data. The byte length was checked by [`RawTensor::new`];
    /// libtorch interprets the bytes in host order, and every platform libtorch ships for is
    /// little-endian, like the data.
    pub fn to_tch(&self) -> Result<Tensor, tch::TchError> {
        Tensor::f_from_data_size(&self.data, &self.shape_i64(), self.dtype.kind())
    }

    /// Copies a tensor of any device and layout into host bytes.
    pub fn from_tch(tensor: &Tensor) -> Result<Self, String> {
        let kind = tensor.f_kind().map_err(|e| e.to_string())?;
        let dtype = DType::from_kind(kind).ok_or_else(|| format!("unsupported dtype {kind:?}"))?;
        let cpu = tensor
            .f_to_device(Device::Cpu)
            .and_then(|t| t.f_contiguous())
            .map_err(|e| e.to_string())?;
        let shape: Vec<usize> = cpu.size().iter().map(|&d| d as usize).collect();
        let numel = checked_numel(&shape).ok_or_else(|| format!("shape {shape:?} overflows"))?;
        let mut data = vec![0u8; numel * dtype.size()];
        if numel > 0 {
            cpu.f_copy_data_u8(&mut data, numel)
                .map_err(|e| e.to_string())?;
        }
        RawTensor::new(dtype, shape, data)
    }
}

/// Lets the `safetensors` crate serialise a [`RawTensor`] without another copy.
impl safetensors::View for &RawTensor {
    fn dtype(&self) -> safetensors::Dtype {
        self.dtype.safetensors()
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_is_checked_and_bools_normalised() {
        assert!(RawTensor::new(DType::F32, vec![2, 3], vec![0; 23]).is_err());
        assert!(RawTensor::new(DType::F32, vec![usize::MAX, 3], vec![]).is_err());
        let t = RawTensor::new(DType::Bool, vec![3], vec![0, 1, 7]).unwrap();
        assert_eq!(t.data, vec![0, 1, 1]);
        let scalar = RawTensor::new(DType::I64, vec![], 5i64.to_le_bytes().to_vec()).unwrap();
        assert_eq!(scalar.numel(), 1);
    }

    #[test]
    fn tch_round_trip_keeps_dtype_shape_and_values() {
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let raw = RawTensor::new(DType::F32, vec![2, 3], data).unwrap();
        let t = raw.to_tch().unwrap();
        assert_eq!(t.size(), vec![2, 3]);
        // A transposed view must come back contiguous in its own (transposed) order.
        let back = RawTensor::from_tch(&t.tr()).unwrap();
        assert_eq!(back.shape, vec![3, 2]);
        let first_col: Vec<f32> = back.data[..12]
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(first_col, vec![0.0, 1.5, 0.5]);
    }
}
