//! End-to-end tests: build a model that exercises every feature the CFA
//! graph needs (weights, dynamic dims, multi-output ops, optional inputs,
//! all attribute kinds, and a `Scan` body that reads an outer-scope
//! initializer), encode it, and decode it back structurally.
//!
//! Set `INSPECTD_ONNX_DEMO=/path/model.onnx` to also write the model to disk
//! for checking with the `onnx` checker and ONNX Runtime.

use super::decode::{parse, Msg, Value};
use super::*;

const N: &str = "N";

fn n_by(k: i64) -> [Dim; 2] {
    [Dim::param(N), Dim::Fixed(k)]
}

fn fixed(dims: &[i64]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// The `Scan` body: `s_out = s_in + row * scale`, emitting `s_out` per row.
/// `scale` is not declared here: it resolves to the main graph's
/// initializer (outer-scope reference).
fn scan_body() -> Graph {
    let mut body = Graph::new("scan_body");
    body.input("s_in", ElemType::Float, &fixed(&[3]));
    body.input("row", ElemType::Float, &fixed(&[3]));
    let scaled = body.apply(Node::new("Mul", &["row", "scale"], &[]));
    body.node(Node::new("Add", &["s_in", &scaled], &["s_out"]));
    body.node(Node::new("Identity", &["s_out"], &["y_row"]));
    body.output("s_out", ElemType::Float, &fixed(&[3]));
    body.output("y_row", ElemType::Float, &fixed(&[3]));
    body
}

fn demo_initializers(g: &mut Graph) -> Result<(), OnnxError> {
    let w: Vec<f32> = (0..18).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.1).collect();
    g.initializer(Tensor::float("b", &[3], vec![0.5, -1.0, 2.0])?)
        .initializer(Tensor::float("w", &[2, 1, 3, 3], w)?)
        .initializer(Tensor::float("wb", &[2], vec![0.25, -0.5])?)
        .initializer(Tensor::int64_1d("k", vec![2]))
        .initializer(Tensor::float("scale", &[3], vec![1.0, 0.5, -2.0])?)
        .initializer(Tensor::float("zeros3", &[3], vec![0.0; 3])?)
        .initializer(Tensor::float("scales", &[4], vec![1.0, 1.0, 2.0, 2.0])?)
        .initializer(Tensor::int64_1d("flat_shape", vec![1, -1]))
        .initializer(Tensor::bool("mask", &[3], vec![true, false, true])?)
        .initializer(Tensor::int32("off32", &[2], vec![10, -20])?);
    Ok(())
}

/// Image branch: Conv → LeakyRelu → Resize(nearest, ×2) → Reshape, and an
/// AveragePool.
fn image_branch(g: &mut Graph) {
    let conv = Node::new("Conv", &["img", "w", "wb"], &[])
        .attr("kernel_shape", [3, 3])
        .attr("pads", vec![1, 1, 1, 1])
        .attr("strides", [1, 1]);
    let conv = g.apply(conv);
    let act = g.apply(Node::new("LeakyRelu", &[&conv], &[]).attr("alpha", 0.1f32));
    g.node(Node::new("Resize", &[&act, "", "scales"], &["up"]).attr("mode", "nearest"));
    g.node(Node::new("Reshape", &["up", "flat_shape"], &["flat"]));
    let pool = Node::new("AveragePool", &["img"], &["pool"]).attr("kernel_shape", [2, 2]);
    g.node(pool.attr("strides", [2, 2]).with_name("pool_node"));
}

/// Vector branch: Add, TopK, Scan, Transpose/MatMul, Concat, Where, Cast,
/// and Shape/Gather/Range arithmetic on the dynamic dimension.
fn vector_branch(g: &mut Graph) {
    let xb = g.apply(Node::new("Add", &["x", "b"], &[]));
    g.node(Node::new("TopK", &[&xb, "k"], &["topv", "topi"]).attr("axis", 1).attr("largest", 1));
    let scan = Node::new("Scan", &["zeros3", &xb], &["final_state", "cumsum"])
        .attr("num_scan_inputs", 1)
        .attr("body", scan_body());
    g.node(scan);
    let xt = g.apply(Node::new("Transpose", &[&xb], &[]).attr("perm", [1, 0]));
    g.node(Node::new("MatMul", &[&xt, &xb], &["gram"]));
    g.node(Node::new("Concat", &["topv", &xb], &["cat"]).attr("axis", 1));
    g.node(Node::new("Where", &["mask", &xb, "x"], &["masked"]));
    let topi32 = g.apply(Node::new("Cast", &["topi"], &[]).attr("to", i64::from(ElemType::Int32.code())));
    g.node(Node::new("Add", &[&topi32, "off32"], &["topi32"]));
    let shape = g.apply(Node::new("Shape", &["x"], &[]));
    let zero = Tensor::int64("", &[], vec![0]).expect("scalar");
    let idx = g.apply(Node::new("Constant", &[], &[]).attr("value", zero));
    let n = g.apply(Node::new("Gather", &[&shape, &idx], &[]).attr("axis", 0));
    let one = g.apply(Node::new("Constant", &[], &[]).attr("value_int", 1));
    let range = g.apply(Node::new("Range", &[&idx, &n, &one], &[]));
    g.node(Node::new("Cast", &[&range], &["range_f"]).attr("to", 1));
}

fn demo_outputs(g: &mut Graph) {
    g.output("topv", ElemType::Float, &n_by(2))
        .output("topi", ElemType::Int64, &n_by(2))
        .output("final_state", ElemType::Float, &fixed(&[3]))
        .output("cumsum", ElemType::Float, &n_by(3))
        .output("gram", ElemType::Float, &fixed(&[3, 3]))
        .output("cat", ElemType::Float, &n_by(5))
        .output("masked", ElemType::Float, &n_by(3))
        .output("topi32", ElemType::Int32, &n_by(2))
        .output("range_f", ElemType::Float, &[Dim::param(N)])
        .output("up", ElemType::Float, &fixed(&[1, 2, 8, 8]))
        .output("flat", ElemType::Float, &[Dim::Fixed(1), Dim::Unknown])
        .output("pool", ElemType::Float, &fixed(&[1, 1, 2, 2]));
}

fn demo_model() -> Model {
    let mut g = Graph::new("demo");
    g.doc_string = "writer self-test".to_owned();
    g.input("x", ElemType::Float, &n_by(3));
    g.input("img", ElemType::Float, &fixed(&[1, 1, 4, 4]));
    demo_initializers(&mut g).expect("valid initializers");
    image_branch(&mut g);
    vector_branch(&mut g);
    demo_outputs(&mut g);
    g.value_info("up", ElemType::Float, &fixed(&[1, 2, 8, 8]));
    Model::new(g).with_doc("inspectd ONNX writer demo").with_metadata("purpose", "test")
}

fn floats_of(raw: &[u8]) -> Vec<f32> {
    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Finds the node producing `output` in a decoded `GraphProto`.
fn node_producing(graph: &Msg, output: &str) -> Msg {
    let nodes = graph.msgs(1);
    nodes.into_iter().find(|n| n.strs(2).iter().any(|o| o == output)).expect("producer")
}

/// The attribute `name` of a decoded `NodeProto`.
fn attribute(node: &Msg, name: &str) -> Msg {
    node.msgs(5).into_iter().find(|a| a.str(1) == name).expect("attribute")
}

#[test]
fn demo_model_round_trips_structurally() {
    let model = demo_model();
    let bytes = model.encode();
    if let Some(path) = std::env::var_os("INSPECTD_ONNX_DEMO") {
        model.write(path).expect("write demo model");
    }
    let m = parse(&bytes).expect("well-formed protobuf");
    assert_eq!((m.int(1), m.str(2), m.str(6)), (8, "inspectd".into(), "inspectd ONNX writer demo".into()));
    let opset = m.msg(8);
    assert_eq!((opset.str(1), opset.int(2)), (String::new(), 17));
    let meta = m.msg(14);
    assert_eq!((meta.str(1), meta.str(2)), ("purpose".into(), "test".into()));

    let g = m.msg(7);
    assert_eq!(g.str(2), "demo");
    assert_eq!(g.msgs(1).len(), model.graph.nodes.len());
    assert_eq!(g.msgs(11).len(), 2);
    assert_eq!(g.msgs(12).len(), 12);
    assert_eq!(g.msgs(13).len(), 1);

    let b = g.msgs(5).into_iter().find(|t| t.str(8) == "b").expect("initializer b");
    assert_eq!((b.ints(1), b.int(2)), (vec![3], 1));
    match b.all(9)[..] {
        [Value::Bytes(raw)] => assert_eq!(floats_of(raw), [0.5, -1.0, 2.0]),
        ref other => panic!("raw_data: {other:?}"),
    }
    let x_type = g.msgs(11)[0].msg(2).msg(1);
    let dims = x_type.msg(2).msgs(1);
    assert_eq!((x_type.int(1), dims[0].str(2), dims[1].int(1)), (1, "N".into(), 3));
}

#[test]
fn demo_model_attributes_and_subgraph() {
    let g = parse(&demo_model().encode()).expect("model").msg(7);
    let topk = node_producing(&g, "topv");
    assert_eq!((topk.str(4), topk.strs(1)), ("TopK".into(), vec!["demo/Add_3".into(), "k".into()]));
    let axis = attribute(&topk, "axis");
    assert_eq!((axis.int(3), axis.int(20)), (1, 2));
    let resize = node_producing(&g, "up");
    assert_eq!(resize.strs(1)[1], "", "omitted optional input survives");
    assert_eq!(attribute(&resize, "mode").str(4), "nearest");
    let pads = attribute(&node_producing(&g, "demo/Conv_1"), "pads");
    assert_eq!((pads.ints(8), pads.int(20)), (vec![1, 1, 1, 1], 7));
    assert_eq!(node_producing(&g, "pool").str(3), "pool_node");

    let body_attr = attribute(&node_producing(&g, "cumsum"), "body");
    assert_eq!(body_attr.int(20), 5);
    let body = body_attr.msg(6);
    assert_eq!(body.str(2), "scan_body");
    assert_eq!(body.msgs(5).len(), 0, "scale must come from the outer scope");
    let mul = node_producing(&body, "scan_body/Mul_1");
    assert_eq!(mul.strs(1), ["row", "scale"]);
    assert_eq!(body.msgs(11).len(), 2);
    assert_eq!(body.msgs(12).len(), 2);
}
