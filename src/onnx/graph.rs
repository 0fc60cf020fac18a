//! Graphs, nodes and attributes: `GraphProto`, `NodeProto`, `AttributeProto`.
//!
//! Field numbers are from `onnx/onnx.proto`.  Every encoder writes its
//! fields in ascending field-number order, which makes the output
//! byte-identical to the reference protobuf serializer's.

use super::proto::Encoder;
use super::tensor::{Dim, ElemType, Tensor, ValueInfo};

/// An attribute value (`AttributeProto` with its `type` discriminator).
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// `FLOAT` (1), field `f`.
    Float(f32),
    /// `INT` (2), field `i`.
    Int(i64),
    /// `STRING` (3), field `s`.
    String(String),
    /// `TENSOR` (4), field `t` (e.g. `Constant`'s `value`).
    Tensor(Tensor),
    /// `GRAPH` (5), field `g` (e.g. `Scan`'s `body`).
    Graph(Graph),
    /// `FLOATS` (6), field `floats`.
    Floats(Vec<f32>),
    /// `INTS` (7), field `ints`.
    Ints(Vec<i64>),
    /// `STRINGS` (8), field `strings`.
    Strings(Vec<String>),
}

impl AttrValue {
    /// The `AttributeProto.AttributeType` code.
    pub fn type_code(&self) -> i32 {
        match self {
            AttrValue::Float(_) => 1,
            AttrValue::Int(_) => 2,
            AttrValue::String(_) => 3,
            AttrValue::Tensor(_) => 4,
            AttrValue::Graph(_) => 5,
            AttrValue::Floats(_) => 6,
            AttrValue::Ints(_) => 7,
            AttrValue::Strings(_) => 8,
        }
    }

    /// Writes the value field and then `type` (field 20).  `floats` and
    /// `ints` are proto2 repeated fields without `[packed = true]`.
    fn encode(&self, enc: &mut Encoder) {
        match self {
            AttrValue::Float(f) => enc.float(2, *f),
            AttrValue::Int(i) => enc.int64(3, *i),
            AttrValue::String(s) => enc.string(4, s),
            AttrValue::Tensor(t) => enc.message(5, |m| t.encode(m)),
            AttrValue::Graph(g) => enc.message(6, |m| g.encode(m)),
            AttrValue::Floats(v) => enc.repeated_float(7, v),
            AttrValue::Ints(v) => enc.repeated_int64(8, v),
            AttrValue::Strings(v) => v.iter().for_each(|s| enc.string(9, s)),
        }
        enc.int32(20, self.type_code());
    }
}

/// Writes one `AttributeProto`: name=1, the value, type=20.
fn encode_attribute(enc: &mut Encoder, name: &str, value: &AttrValue) {
    enc.string(1, name);
    value.encode(enc);
}

macro_rules! attr_from {
    ($($t:ty => $v:ident($conv:expr)),* $(,)?) => {$(
        impl From<$t> for AttrValue {
            fn from(x: $t) -> Self {
                AttrValue::$v($conv(x))
            }
        }
    )*};
}

attr_from! {
    f32 => Float(|x| x),
    i64 => Int(|x| x),
    &str => String(str::to_owned),
    String => String(|x| x),
    Tensor => Tensor(|x| x),
    Graph => Graph(|x| x),
    Vec<f32> => Floats(|x| x),
    &[f32] => Floats(<[f32]>::to_vec),
    Vec<i64> => Ints(|x| x),
    &[i64] => Ints(<[i64]>::to_vec),
    Vec<String> => Strings(|x| x),
}

impl<const N: usize> From<[i64; N]> for AttrValue {
    fn from(x: [i64; N]) -> Self {
        AttrValue::Ints(x.to_vec())
    }
}

impl<const N: usize> From<[f32; N]> for AttrValue {
    fn from(x: [f32; N]) -> Self {
        AttrValue::Floats(x.to_vec())
    }
}

/// One operator application (`NodeProto`).
///
/// Built with [`Node::new`] and the `with_*`/[`Node::attr`] builders.  An
/// empty string in `inputs` marks an omitted optional input (e.g. `Resize`'s
/// `roi`).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Operator name, e.g. `"Conv"`.
    pub op_type: String,
    /// Operator domain; empty means the default `ai.onnx` domain.
    pub domain: String,
    /// Optional node name (diagnostics only).
    pub name: String,
    /// Input value names, in operator order.
    pub inputs: Vec<String>,
    /// Output value names, in operator order.
    pub outputs: Vec<String>,
    /// Attributes in insertion order.
    pub attributes: Vec<(String, AttrValue)>,
}

impl Node {
    /// A node of the default domain with no attributes.
    pub fn new(op_type: &str, inputs: &[&str], outputs: &[&str]) -> Self {
        Self {
            op_type: op_type.to_owned(),
            domain: String::new(),
            name: String::new(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute, e.g. `.attr("strides", [1, 1])` or
    /// `.attr("mode", "nearest")`.
    pub fn attr(mut self, name: &str, value: impl Into<AttrValue>) -> Self {
        self.attributes.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the node name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the operator domain (e.g. `"com.microsoft"`); the model must
    /// then import an opset for that domain.
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = domain.into();
        self
    }

    /// Writes the `NodeProto` body: input=1, output=2, name=3, op_type=4,
    /// attribute=5, domain=7.  Empty optional strings are left out.
    pub(crate) fn encode(&self, enc: &mut Encoder) {
        self.inputs.iter().for_each(|s| enc.string(1, s));
        self.outputs.iter().for_each(|s| enc.string(2, s));
        if !self.name.is_empty() {
            enc.string(3, &self.name);
        }
        enc.string(4, &self.op_type);
        for (name, value) in &self.attributes {
            enc.message(5, |m| encode_attribute(m, name, value));
        }
        if !self.domain.is_empty() {
            enc.string(7, &self.domain);
        }
    }
}

/// A computation graph (`GraphProto`): the model's main graph or a
/// control-flow body such as `Scan`'s.
///
/// A subgraph may use any value of an enclosing graph by name (outer-scope
/// reference) without declaring it as an input.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Graph name; ONNX requires it to be non-empty.
    pub name: String,
    /// Optional documentation.
    pub doc_string: String,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Constant tensors (weights), referenced by name.
    pub initializers: Vec<Tensor>,
    /// Runtime inputs.
    pub inputs: Vec<ValueInfo>,
    /// Outputs.
    pub outputs: Vec<ValueInfo>,
    /// Optional type annotations of intermediate values.
    pub value_infos: Vec<ValueInfo>,
    /// Counter behind [`Graph::fresh_name`].
    next_id: usize,
}

impl Graph {
    /// An empty graph.  Use distinct names for a model's graph and its
    /// subgraphs: [`Graph::fresh_name`] builds on the name to keep
    /// generated value names unique across scopes, as ONNX requires.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            doc_string: String::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            value_infos: Vec::new(),
            next_id: 0,
        }
    }

    /// Appends a node.
    pub fn node(&mut self, node: Node) -> &mut Self {
        self.nodes.push(node);
        self
    }

    /// Adds a constant tensor, referenced by its name.
    pub fn initializer(&mut self, tensor: Tensor) -> &mut Self {
        self.initializers.push(tensor);
        self
    }

    /// Declares a runtime input.
    pub fn input(&mut self, name: &str, elem_type: ElemType, dims: &[Dim]) -> &mut Self {
        self.inputs.push(ValueInfo::tensor(name, elem_type, dims));
        self
    }

    /// Declares an output.
    pub fn output(&mut self, name: &str, elem_type: ElemType, dims: &[Dim]) -> &mut Self {
        self.outputs.push(ValueInfo::tensor(name, elem_type, dims));
        self
    }

    /// Annotates an intermediate value's type (optional; helps debugging
    /// and shape inference).
    pub fn value_info(&mut self, name: &str, elem_type: ElemType, dims: &[Dim]) -> &mut Self {
        self.value_infos.push(ValueInfo::tensor(name, elem_type, dims));
        self
    }

    /// A new value name `"{graph}/{hint}_{n}"`, unique among names this
    /// graph generates and, given distinct graph names, across subgraphs.
    pub fn fresh_name(&mut self, hint: &str) -> String {
        self.next_id += 1;
        format!("{}/{}_{}", self.name, hint, self.next_id)
    }

    /// Appends `node` with one more output, freshly named after its
    /// `op_type`, and returns that name.  Build single-output nodes with no
    /// outputs and chain: `let y = g.apply(Node::new("Relu", &[&x], &[]));`
    pub fn apply(&mut self, mut node: Node) -> String {
        let out = self.fresh_name(&node.op_type);
        node.outputs.push(out.clone());
        self.nodes.push(node);
        out
    }

    /// Writes the `GraphProto` body: node=1, name=2, initializer=5,
    /// doc_string=10, input=11, output=12, value_info=13.
    pub(crate) fn encode(&self, enc: &mut Encoder) {
        self.nodes.iter().for_each(|n| enc.message(1, |m| n.encode(m)));
        enc.string(2, &self.name);
        self.initializers.iter().for_each(|t| enc.message(5, |m| t.encode(m)));
        if !self.doc_string.is_empty() {
            enc.string(10, &self.doc_string);
        }
        self.inputs.iter().for_each(|v| enc.message(11, |m| v.encode(m)));
        self.outputs.iter().for_each(|v| enc.message(12, |m| v.encode(m)));
        self.value_infos.iter().for_each(|v| enc.message(13, |m| v.encode(m)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr_bytes(name: &str, value: impl Into<AttrValue>) -> Vec<u8> {
        let mut e = Encoder::new();
        encode_attribute(&mut e, name, &value.into());
        e.into_bytes()
    }

    #[test]
    fn float_attribute_exact_bytes() {
        let want = [
            0x0a, 0x05, b'a', b'l', b'p', b'h', b'a', // name
            0x15, 0xcd, 0xcc, 0xcc, 0x3d, // f = 0.1f32, fixed32 LE
            0xa0, 0x01, 0x01, // type = FLOAT (field 20 → two-byte key)
        ];
        assert_eq!(attr_bytes("alpha", 0.1f32), want);
    }

    #[test]
    fn other_attribute_kinds_exact_bytes() {
        assert_eq!(
            attr_bytes("axis", -1),
            [
                0x0a, 4, b'a', b'x', b'i', b's', 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0x01, 0xa0, 0x01, 0x02
            ]
        );
        assert_eq!(attr_bytes("p", [1, 2]), [0x0a, 1, b'p', 0x40, 1, 0x40, 2, 0xa0, 0x01, 0x07]);
        assert_eq!(attr_bytes("m", "nn"), [0x0a, 1, b'm', 0x22, 2, b'n', b'n', 0xa0, 0x01, 0x03]);
        assert_eq!(attr_bytes("s", vec!["a".to_owned()]), [0x0a, 1, b's', 0x4a, 1, b'a', 0xa0, 0x01, 0x08]);
        assert_eq!(attr_bytes("f", [0.5f32]), [0x0a, 1, b'f', 0x3d, 0, 0, 0, 0x3f, 0xa0, 0x01, 0x06]);
        let g = attr_bytes("g", Graph::new("b"));
        assert_eq!(g, [0x0a, 1, b'g', 0x32, 3, 0x12, 1, b'b', 0xa0, 0x01, 0x05]);
    }

    #[test]
    fn builder_literals_infer_i64() {
        let n = Node::new("Conv", &["x", "w"], &["y"]).attr("strides", vec![1, 1]).attr("group", 1);
        assert_eq!(n.attributes[0].1, AttrValue::Ints(vec![1, 1]));
        assert_eq!(n.attributes[1].1, AttrValue::Int(1));
    }

    #[test]
    fn node_exact_bytes() {
        let n = Node::new("Add", &["a", ""], &["c"]).with_name("n").attr("k", 2);
        let mut e = Encoder::new();
        n.encode(&mut e);
        let want = [
            0x0a, 1, b'a', 0x0a, 0, // inputs, the second one omitted
            0x12, 1, b'c', // output
            0x1a, 1, b'n', // name
            0x22, 3, b'A', b'd', b'd', // op_type
            0x2a, 8, 0x0a, 1, b'k', 0x18, 2, 0xa0, 0x01, 0x02, // attribute
        ];
        assert_eq!(e.as_bytes(), want);
    }

    #[test]
    fn fresh_names_are_unique_and_scoped() {
        let mut g = Graph::new("main");
        let a = g.apply(Node::new("Relu", &["x"], &[]));
        let b = g.apply(Node::new("Relu", &[&a], &[]));
        assert_eq!((a.as_str(), b.as_str()), ("main/Relu_1", "main/Relu_2"));
        assert_eq!(g.nodes[1].inputs, ["main/Relu_1"]);
        assert_eq!(g.nodes[1].outputs, ["main/Relu_2"]);
        assert_eq!(Graph::new("body").fresh_name("t"), "body/t_1");
    }
}
