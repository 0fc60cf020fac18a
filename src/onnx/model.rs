//! The top-level `ModelProto` and writing it to disk.

use std::io;
use std::path::Path;

use super::graph::Graph;
use super::proto::Encoder;

/// Default IR version: 8 is the IR of ONNX 1.12, the release that
/// introduced opset 17, and every ONNX Runtime since 1.12 loads it.
pub const DEFAULT_IR_VERSION: i64 = 8;

/// Default opset of the default (`ai.onnx`) domain.
pub const DEFAULT_OPSET: i64 = 17;

/// A complete model: one graph plus the metadata ONNX requires.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// The main graph.
    pub graph: Graph,
    /// `ir_version`; must be new enough for `opset`.
    pub ir_version: i64,
    /// Opset version imported for the default domain `""`.
    pub opset: i64,
    /// Additional `(domain, version)` opset imports, e.g. for custom ops.
    pub extra_opsets: Vec<(String, i64)>,
    /// Writer name, shown by tools like Netron.
    pub producer_name: String,
    /// Writer version.
    pub producer_version: String,
    /// Optional free-form documentation.
    pub doc_string: String,
    /// `metadata_props` key/value pairs; ONNX Runtime exposes them as
    /// custom metadata, handy for recording what weights built the graph.
    pub metadata: Vec<(String, String)>,
}

impl Model {
    /// A model around `graph` with the default IR version and opset,
    /// produced by `inspectd` at this crate's version.
    pub fn new(graph: Graph) -> Self {
        Self {
            graph,
            ir_version: DEFAULT_IR_VERSION,
            opset: DEFAULT_OPSET,
            extra_opsets: Vec::new(),
            producer_name: "inspectd".to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            doc_string: String::new(),
            metadata: Vec::new(),
        }
    }

    /// Sets the default-domain opset version.
    pub fn with_opset(mut self, opset: i64) -> Self {
        self.opset = opset;
        self
    }

    /// Sets the documentation string.
    pub fn with_doc(mut self, doc: impl Into<String>) -> Self {
        self.doc_string = doc.into();
        self
    }

    /// Appends a metadata entry.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Serializes the model to ONNX protobuf bytes: ir_version=1,
    /// producer_name=2, producer_version=3, doc_string=6, graph=7,
    /// opset_import=8, metadata_props=14, in field-number order.
    pub fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.int64(1, self.ir_version);
        enc.string(2, &self.producer_name);
        enc.string(3, &self.producer_version);
        if !self.doc_string.is_empty() {
            enc.string(6, &self.doc_string);
        }
        enc.message(7, |m| self.graph.encode(m));
        enc.message(8, |m| encode_opset(m, "", self.opset));
        for (domain, version) in &self.extra_opsets {
            enc.message(8, |m| encode_opset(m, domain, *version));
        }
        for (key, value) in &self.metadata {
            // StringStringEntryProto: key=1, value=2.
            enc.message(14, |m| {
                m.string(1, key);
                m.string(2, value);
            });
        }
        enc.into_bytes()
    }

    /// Writes [`Model::encode`]'s bytes to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.encode())
    }
}

/// `OperatorSetIdProto`: domain=1, version=2.  The domain is written even
/// when empty, as `onnx.helper.make_opsetid` does.
fn encode_opset(enc: &mut Encoder, domain: &str, version: i64) {
    enc.string(1, domain);
    enc.int64(2, version);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dim, ElemType, Node};

    /// `y = Identity(x)`, the smallest useful model, byte for byte.
    #[test]
    fn tiny_model_exact_bytes() {
        let mut g = Graph::new("g");
        g.node(Node::new("Identity", &["x"], &["y"]));
        g.input("x", ElemType::Float, &[Dim::Fixed(1)]);
        g.output("y", ElemType::Float, &[Dim::Fixed(1)]);
        let mut model = Model::new(g).with_metadata("k", "v");
        model.producer_version = "0".to_owned();

        // ValueInfoProto{name, type{tensor_type{elem_type: FLOAT, shape{dim{dim_value: 1}}}}}
        let value_info = |n: u8| [0x0a, 1, n, 0x12, 10, 0x0a, 8, 0x08, 1, 0x12, 4, 0x0a, 2, 0x08, 1];
        let mut want: Vec<u8> = vec![0x08, 8]; // ir_version
        want.extend_from_slice(&[0x12, 8]); // producer_name
        want.extend_from_slice(b"inspectd");
        want.extend_from_slice(&[0x1a, 1, b'0']); // producer_version
        want.extend_from_slice(&[0x3a, 55]); // graph
        want.extend_from_slice(&[0x0a, 16, 0x0a, 1, b'x', 0x12, 1, b'y', 0x22, 8]); // node
        want.extend_from_slice(b"Identity");
        want.extend_from_slice(&[0x12, 1, b'g']); // graph name
        want.extend_from_slice(&[0x5a, 15]); // graph input
        want.extend_from_slice(&value_info(b'x'));
        want.extend_from_slice(&[0x62, 15]); // graph output
        want.extend_from_slice(&value_info(b'y'));
        want.extend_from_slice(&[0x42, 4, 0x0a, 0, 0x10, 17]); // opset_import {domain: "", version: 17}
        want.extend_from_slice(&[0x72, 6, 0x0a, 1, b'k', 0x12, 1, b'v']); // metadata_props
        assert_eq!(model.encode(), want);
    }

    #[test]
    fn write_creates_the_file() {
        let path = std::env::temp_dir().join(format!("inspectd-onnx-{}.onnx", std::process::id()));
        let model = Model::new(Graph::new("g")).with_doc("d");
        model.write(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), model.encode());
        std::fs::remove_file(&path).unwrap();
    }
}
