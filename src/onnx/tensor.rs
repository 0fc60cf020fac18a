//! Tensors and value types: `TensorProto`, `ValueInfoProto`, `TypeProto`.
//!
//! Field numbers are from `onnx/onnx.proto` (ONNX 1.x, proto2 syntax).

use super::proto::Encoder;
use super::OnnxError;

/// Element types supported by this writer, with their
/// `TensorProto.DataType` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// `FLOAT` (1): `f32`.
    Float,
    /// `INT32` (6): `i32`.
    Int32,
    /// `INT64` (7): `i64`, the type ONNX uses for shapes and indices.
    Int64,
    /// `BOOL` (9): one byte per element in `raw_data`.
    Bool,
}

impl ElemType {
    /// The `TensorProto.DataType` enum value.
    pub fn code(self) -> i32 {
        match self {
            ElemType::Float => 1,
            ElemType::Int32 => 6,
            ElemType::Int64 => 7,
            ElemType::Bool => 9,
        }
    }
}

/// One dimension of a declared shape (`TensorShapeProto.Dimension`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A known size (`dim_value`).
    Fixed(i64),
    /// A symbolic size (`dim_param`), e.g. `"batch"`; equal names denote
    /// equal sizes within a model.
    Param(String),
    /// A size that is neither known nor named (an empty `Dimension`).
    Unknown,
}

impl Dim {
    /// A symbolic dimension.
    pub fn param(name: impl Into<String>) -> Self {
        Dim::Param(name.into())
    }

    fn encode(&self, enc: &mut Encoder) {
        match self {
            Dim::Fixed(v) => enc.int64(1, *v),
            Dim::Param(p) => enc.string(2, p),
            Dim::Unknown => {}
        }
    }
}

impl From<i64> for Dim {
    fn from(v: i64) -> Self {
        Dim::Fixed(v)
    }
}

impl From<&str> for Dim {
    fn from(p: &str) -> Self {
        Dim::Param(p.to_owned())
    }
}

/// A named, typed value: a graph input, output or intermediate
/// (`ValueInfoProto`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// The value name as used by node inputs/outputs.
    pub name: String,
    /// Element type.
    pub elem_type: ElemType,
    /// The shape; `None` leaves the rank unknown.
    pub shape: Option<Vec<Dim>>,
}

impl ValueInfo {
    /// A tensor value of known rank.
    pub fn tensor(name: impl Into<String>, elem_type: ElemType, dims: &[Dim]) -> Self {
        let shape = Some(dims.to_vec());
        Self { name: name.into(), elem_type, shape }
    }

    /// A tensor value of unknown rank.
    pub fn unranked(name: impl Into<String>, elem_type: ElemType) -> Self {
        Self { name: name.into(), elem_type, shape: None }
    }

    /// Writes the `ValueInfoProto` body: name=1, type=2.
    pub(crate) fn encode(&self, enc: &mut Encoder) {
        enc.string(1, &self.name);
        // TypeProto.tensor_type = 1 → TypeProto.Tensor{elem_type=1, shape=2}.
        enc.message(2, |ty| {
            ty.message(1, |t| {
                t.int32(1, self.elem_type.code());
                if let Some(dims) = &self.shape {
                    // TensorShapeProto.dim = 1 (repeated message).
                    t.message(2, |s| dims.iter().for_each(|d| s.message(1, |m| d.encode(m))));
                }
            })
        });
    }
}

/// Tensor contents, one variant per supported element type.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `FLOAT`.
    Float(Vec<f32>),
    /// `INT32`.
    Int32(Vec<i32>),
    /// `INT64`.
    Int64(Vec<i64>),
    /// `BOOL`.
    Bool(Vec<bool>),
}

impl TensorData {
    /// The element type of the contents.
    pub fn elem_type(&self) -> ElemType {
        match self {
            TensorData::Float(_) => ElemType::Float,
            TensorData::Int32(_) => ElemType::Int32,
            TensorData::Int64(_) => ElemType::Int64,
            TensorData::Bool(_) => ElemType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Float(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `raw_data` representation: fixed-width little-endian values, as
    /// the ONNX spec requires regardless of host endianness.
    fn raw_le_bytes(&self) -> Vec<u8> {
        match self {
            TensorData::Float(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Int32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Int64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        }
    }
}

/// A constant tensor: a graph initializer or a `Constant`/attribute value.
///
/// The fields are private so that `dims` and `data` always agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    name: String,
    dims: Vec<i64>,
    data: TensorData,
}

impl Tensor {
    /// A tensor of shape `dims` (row-major `data`).  Fails if a dimension
    /// is negative or the element count does not match `data`.
    pub fn new(name: impl Into<String>, dims: &[i64], data: TensorData) -> Result<Self, OnnxError> {
        let name = name.into();
        let expected = element_count(dims)
            .ok_or_else(|| OnnxError::InvalidDims { name: name.clone(), dims: dims.to_vec() })?;
        if expected != data.len() {
            let (dims, actual) = (dims.to_vec(), data.len());
            return Err(OnnxError::ShapeMismatch { name, dims, expected, actual });
        }
        Ok(Self { name, dims: dims.to_vec(), data })
    }

    /// An `f32` tensor; see [`Tensor::new`].
    pub fn float(name: impl Into<String>, dims: &[i64], data: Vec<f32>) -> Result<Self, OnnxError> {
        Self::new(name, dims, TensorData::Float(data))
    }

    /// An `i64` tensor; see [`Tensor::new`].
    pub fn int64(name: impl Into<String>, dims: &[i64], data: Vec<i64>) -> Result<Self, OnnxError> {
        Self::new(name, dims, TensorData::Int64(data))
    }

    /// An `i32` tensor; see [`Tensor::new`].
    pub fn int32(name: impl Into<String>, dims: &[i64], data: Vec<i32>) -> Result<Self, OnnxError> {
        Self::new(name, dims, TensorData::Int32(data))
    }

    /// A `bool` tensor; see [`Tensor::new`].
    pub fn bool(name: impl Into<String>, dims: &[i64], data: Vec<bool>) -> Result<Self, OnnxError> {
        Self::new(name, dims, TensorData::Bool(data))
    }

    /// A 1-D `i64` tensor (shapes, axes, `TopK`'s `k`, ...); cannot fail.
    pub fn int64_1d(name: impl Into<String>, data: Vec<i64>) -> Self {
        let dims = vec![data.len() as i64];
        Self { name: name.into(), dims, data: TensorData::Int64(data) }
    }

    /// A rank-0 tensor holding one `f32`; cannot fail.
    pub fn float_scalar(name: impl Into<String>, value: f32) -> Self {
        Self { name: name.into(), dims: Vec::new(), data: TensorData::Float(vec![value]) }
    }

    /// The tensor (initializer) name; may be empty for attribute values.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shape.
    pub fn dims(&self) -> &[i64] {
        &self.dims
    }

    /// The contents.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The element type.
    pub fn elem_type(&self) -> ElemType {
        self.data.elem_type()
    }

    /// Writes the `TensorProto` body: dims=1, data_type=2, name=8,
    /// raw_data=9.  `dims` is a proto2 repeated field without
    /// `[packed = true]`, so it is written unpacked like the reference
    /// serializer does (parsers accept either form).
    pub(crate) fn encode(&self, enc: &mut Encoder) {
        enc.repeated_int64(1, &self.dims);
        enc.int32(2, self.elem_type().code());
        if !self.name.is_empty() {
            enc.string(8, &self.name);
        }
        enc.bytes(9, &self.data.raw_le_bytes());
    }
}

/// Product of `dims`, or `None` if one is negative or it overflows.
fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_check_element_count() {
        assert!(Tensor::float("w", &[2, 3], vec![0.0; 6]).is_ok());
        assert!(Tensor::float("s", &[], vec![1.0]).is_ok(), "rank 0 holds one element");
        assert!(Tensor::int64("e", &[0, 5], vec![]).is_ok());
        let err = Tensor::float("w", &[2, 3], vec![0.0; 5]).unwrap_err();
        assert!(matches!(err, OnnxError::ShapeMismatch { expected: 6, actual: 5, .. }), "{err}");
        let err = Tensor::int64("n", &[-1, 2], vec![]).unwrap_err();
        assert!(matches!(err, OnnxError::InvalidDims { .. }), "{err}");
        assert!(Tensor::int32("o", &[i64::MAX, i64::MAX], vec![]).is_err());
    }

    #[test]
    fn tensor_proto_exact_bytes() {
        let t = Tensor::int64("k", &[1], vec![2]).unwrap();
        let mut e = Encoder::new();
        t.encode(&mut e);
        let want = [
            0x08, 0x01, // dims: [1]
            0x10, 0x07, // data_type: INT64
            0x42, 0x01, b'k', // name
            0x4a, 0x08, 2, 0, 0, 0, 0, 0, 0, 0, // raw_data, little-endian
        ];
        assert_eq!(e.as_bytes(), want);
    }

    #[test]
    fn raw_data_layouts() {
        let f = TensorData::Float(vec![1.0, -2.5]);
        assert_eq!(f.raw_le_bytes(), [0, 0, 0x80, 0x3f, 0, 0, 0x20, 0xc0]);
        assert_eq!(TensorData::Int32(vec![-1]).raw_le_bytes(), [0xff; 4]);
        assert_eq!(TensorData::Bool(vec![true, false]).raw_le_bytes(), [1, 0]);
    }

    #[test]
    fn value_info_exact_bytes() {
        let v = ValueInfo::tensor("x", ElemType::Float, &[Dim::param("N"), Dim::Fixed(3), Dim::Unknown]);
        let mut e = Encoder::new();
        v.encode(&mut e);
        let want = [
            0x0a, 0x01, b'x', // name
            0x12, 0x11, // type
            0x0a, 0x0f, // tensor_type
            0x08, 0x01, // elem_type FLOAT
            0x12, 0x0b, // shape
            0x0a, 0x03, 0x12, 0x01, b'N', // dim { dim_param: "N" }
            0x0a, 0x02, 0x08, 0x03, // dim { dim_value: 3 }
            0x0a, 0x00, // dim {}
        ];
        assert_eq!(e.as_bytes(), want);

        let mut e = Encoder::new();
        ValueInfo::unranked("y", ElemType::Int64).encode(&mut e);
        assert_eq!(e.as_bytes(), [0x0a, 0x01, b'y', 0x12, 0x04, 0x0a, 0x02, 0x08, 0x07]);
    }
}
