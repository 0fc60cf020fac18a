//! Minimal, dependency-free ONNX model writer.
//!
//! inspectd builds its own inference graphs (e.g. the CFA descriptor graph)
//! from weights and hands the bytes to ONNX Runtime.  Writing ONNX only needs
//! a small slice of protobuf, so the wire format is encoded by hand
//! ([`proto`]) instead of pulling in `prost` plus a `protoc` build step.
//!
//! * [`tensor`]: element types, shapes, [`ValueInfo`] and [`Tensor`]
//!   (initializers are stored as little-endian `raw_data`).
//! * [`graph`]: [`Node`], [`AttrValue`] and [`Graph`] (including subgraphs,
//!   e.g. a `Scan` body given as [`AttrValue::Graph`]).
//! * [`model`]: [`Model`], which serializes to bytes or a file.
//!
//! Field numbers follow `onnx/onnx.proto`.  Fields are written in
//! field-number order and proto2 repeated scalars are left unpacked unless
//! the schema says `[packed = true]`, so the output is byte-identical to what
//! the reference serializer (`onnx.save`) would write for the same message;
//! this is what the tests check against.
//!
//! ```
//! use inspectd::onnx::{Dim, ElemType, Graph, Model, Node, Tensor};
//!
//! # fn main() -> Result<(), inspectd::onnx::OnnxError> {
//! let mut g = Graph::new("main");
//! g.input("x", ElemType::Float, &[Dim::param("N"), Dim::Fixed(2)]);
//! g.initializer(Tensor::float("b", &[2], vec![1.0, 2.0])?);
//! let sum = g.apply(Node::new("Add", &["x", "b"], &[]));
//! g.node(Node::new("LeakyRelu", &[&sum], &["y"]).attr("alpha", 0.1f32));
//! g.output("y", ElemType::Float, &[Dim::param("N"), Dim::Fixed(2)]);
//! let bytes: Vec<u8> = Model::new(g).encode();
//! assert!(!bytes.is_empty());
//! # Ok(())
//! # }
//! ```

pub mod graph;
pub mod model;
pub mod proto;
pub mod tensor;

#[cfg(test)]
mod decode;
#[cfg(test)]
mod tests;

pub use graph::{AttrValue, Graph, Node};
pub use model::{Model, DEFAULT_IR_VERSION, DEFAULT_OPSET};
pub use tensor::{Dim, ElemType, Tensor, TensorData, ValueInfo};

/// Errors from building ONNX values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnnxError {
    /// The shape's element count differs from the data length.
    #[error("tensor `{name}`: dims {dims:?} hold {expected} elements but {actual} values were given")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// The declared shape.
        dims: Vec<i64>,
        /// Product of `dims`.
        expected: usize,
        /// Length of the data.
        actual: usize,
    },
    /// A dimension is negative or the element count overflows `usize`.
    #[error("tensor `{name}`: invalid dims {dims:?} (negative or too large)")]
    InvalidDims {
        /// Tensor name.
        name: String,
        /// The declared shape.
        dims: Vec<i64>,
    },
}
