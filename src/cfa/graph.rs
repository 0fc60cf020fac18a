//! Generates the descriptor + kNN ONNX graph from a bundle's weights (design.md §2).
//!
//! The graph takes the backbone's `f1, f2, f3` and returns, for every patch, its K smallest
//! squared distances to the memory bank (`topk [B, h·w, K]`, ascending, clamped at 0). Running
//! the kNN inside the same graph keeps it on the descriptor's device (GPU under CUDA/TensorRT)
//! with no copy of the features back to the host.
//!
//! Shapes other than the batch are fixed when the graph is generated (a bundle has one input
//! size), which lets the coordinate channels fold into a constant bias map and the kNN run in
//! fixed-size row chunks: a `Scan` over chunks of R patches materialises only an `R × N` block of
//! the distance matrix at a time, instead of `B·h·w × N`.

use ndarray::{Array2, ArrayView2, Axis};

use super::descriptor::{coordinate, DescriptorWeights};
use crate::onnx::{Dim, ElemType, Graph, Model, Node, OnnxError, Tensor};

/// Everything that fixes the graph's shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphShape {
    /// Backbone channels of f1, f2, f3.
    pub channels: [usize; 3],
    /// Patch grid (f1's spatial size).
    pub grid: (usize, usize),
    /// K nearest neighbours to return.
    pub k: usize,
}

/// Patches per kNN chunk: the largest divisor of `patches` not above `target`, so chunks never
/// straddle two images. Small enough that one chunk's distances stay in cache-friendly sizes.
pub fn chunk_rows(patches: usize, target: usize) -> usize {
    (1..=target.min(patches)).rev().find(|r| patches.is_multiple_of(*r)).unwrap_or(1)
}

/// Default kNN chunk size in patches (tuned with `inspectd bench`).
pub const DEFAULT_CHUNK_ROWS: usize = 256;

/// Builds the fused graph: `f1, f2, f3 → topk`.
pub fn descriptor_knn_model(
    shape: GraphShape,
    weights: &DescriptorWeights,
    bank: ArrayView2<f32>,
    chunk_target: usize,
) -> Result<Model, OnnxError> {
    let mut g = Graph::new("cfa");
    declare_features(&mut g, shape);
    let phi = add_descriptor(&mut g, shape, weights)?;
    let topk = add_knn(&mut g, &phi, shape, bank, chunk_target)?;
    add_topk_output(&mut g, &topk, shape);
    Ok(finish(g, "CFA descriptor and memory-bank kNN"))
}

/// Builds the descriptor alone: `f1, f2, f3 → phi [B, C', h, w]` (benchmarks, tests).
pub fn descriptor_model(shape: GraphShape, weights: &DescriptorWeights) -> Result<Model, OnnxError> {
    let mut g = Graph::new("descriptor");
    declare_features(&mut g, shape);
    let phi = add_descriptor(&mut g, shape, weights)?;
    g.node(Node::new("Identity", &[&phi], &["phi"]));
    let (h, w) = shape.grid;
    let dims = [Dim::param("batch"), fixed(weights.out_channels()), fixed(h), fixed(w)];
    g.output("phi", ElemType::Float, &dims);
    Ok(finish(g, "CFA descriptor"))
}

/// Builds the kNN alone: `phi [B, C', h, w] → topk` (benchmarks, tests).
pub fn knn_model(shape: GraphShape, bank: ArrayView2<f32>, chunk_target: usize) -> Result<Model, OnnxError> {
    let mut g = Graph::new("knn");
    let (h, w) = shape.grid;
    g.input("phi", ElemType::Float, &[Dim::param("batch"), fixed(bank.nrows()), fixed(h), fixed(w)]);
    let topk = add_knn(&mut g, "phi", shape, bank, chunk_target)?;
    add_topk_output(&mut g, &topk, shape);
    Ok(finish(g, "CFA memory-bank kNN"))
}

fn finish(g: Graph, doc: &str) -> Model {
    Model::new(g)
        .with_opset(17)
        .with_doc(doc)
        .with_metadata("producer", format!("inspectd {}", env!("CARGO_PKG_VERSION")))
}

fn fixed(n: usize) -> Dim {
    Dim::Fixed(n as i64)
}

fn topk_dims(shape: GraphShape) -> [Dim; 3] {
    [Dim::param("batch"), fixed(shape.grid.0 * shape.grid.1), fixed(shape.k)]
}

fn add_topk_output(g: &mut Graph, value: &str, shape: GraphShape) {
    g.node(Node::new("Identity", &[value], &["topk"]));
    g.output("topk", ElemType::Float, &topk_dims(shape));
}

fn declare_features(g: &mut Graph, shape: GraphShape) {
    let (h, w) = shape.grid;
    let [c1, c2, c3] = shape.channels;
    g.input("f1", ElemType::Float, &[Dim::param("batch"), fixed(c1), fixed(h), fixed(w)]);
    g.input("f2", ElemType::Float, &[Dim::param("batch"), fixed(c2), Dim::param("h2"), Dim::param("w2")]);
    g.input("f3", ElemType::Float, &[Dim::param("batch"), fixed(c3), Dim::param("h3"), Dim::param("w3")]);
}

/// Pool, resize to the grid, concatenate, 1×1 conv. The coordinate channels are constant for a
/// fixed grid, so their contribution plus the bias is one precomputed `[1, C', h, w]` map.
fn add_descriptor(
    g: &mut Graph,
    shape: GraphShape,
    weights: &DescriptorWeights,
) -> Result<String, OnnxError> {
    let (h, w) = shape.grid;
    let c: usize = shape.channels.iter().sum();
    let c_out = weights.out_channels();
    g.initializer(Tensor::int64_1d("grid_hw", vec![h as i64, w as i64]));
    let p1 = avg_pool(g, "f1");
    let p2 = resize_to_grid(g, "f2");
    let p3 = resize_to_grid(g, "f3");
    let feat = g.apply(Node::new("Concat", &[&p1, &p2, &p3], &[]).attr("axis", 1i64));
    let w_feat = weights.weight.slice(ndarray::s![.., ..c]).iter().copied().collect();
    g.initializer(Tensor::float("desc_weight", &[c_out as i64, c as i64, 1, 1], w_feat)?);
    g.initializer(Tensor::float(
        "desc_bias_map",
        &[1, c_out as i64, h as i64, w as i64],
        bias_map(weights, c, h, w),
    )?);
    let conv = g.apply(Node::new("Conv", &[&feat, "desc_weight"], &[]).attr("kernel_shape", vec![1i64, 1]));
    Ok(g.apply(Node::new("Add", &[&conv, "desc_bias_map"], &[])))
}

/// `W_row·row + W_col·col + b` for every grid cell, channel-major.
fn bias_map(weights: &DescriptorWeights, c: usize, h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(weights.out_channels() * h * w);
    for o in 0..weights.out_channels() {
        let (w_row, w_col, b) = (weights.weight[(o, c)], weights.weight[(o, c + 1)], weights.bias[o]);
        for i in 0..h {
            for j in 0..w {
                out.push(w_row * coordinate(i, h) + w_col * coordinate(j, w) + b);
            }
        }
    }
    out
}

fn avg_pool(g: &mut Graph, input: &str) -> String {
    g.apply(
        Node::new("AveragePool", &[input], &[])
            .attr("kernel_shape", vec![3i64, 3])
            .attr("pads", vec![1i64, 1, 1, 1])
            .attr("strides", vec![1i64, 1])
            .attr("count_include_pad", 1i64),
    )
}

/// Average-pools `input` and resizes it bilinearly to the grid (PyTorch `align_corners=False`
/// is ONNX `half_pixel`). Sizes are `[batch, channels] ++ grid`, taken from the input's shape.
fn resize_to_grid(g: &mut Graph, input: &str) -> String {
    let pooled = avg_pool(g, input);
    let lead = g.apply(Node::new("Shape", &[&pooled], &[]).attr("start", 0i64).attr("end", 2i64));
    let sizes = g.apply(Node::new("Concat", &[&lead, "grid_hw"], &[]).attr("axis", 0i64));
    g.apply(
        Node::new("Resize", &[&pooled, "", "", &sizes], &[])
            .attr("mode", "linear".to_string())
            .attr("coordinate_transformation_mode", "half_pixel".to_string()),
    )
}

/// Patch-major chunks of `phi`, scanned one chunk at a time: `MatMul` with `-2·bank`, add
/// `|c|²`, take the K smallest, then add `|phi|²` (constant per row, so it cannot change the
/// ranking and is added to K values instead of N) and clamp at 0.
fn add_knn(
    g: &mut Graph,
    phi: &str,
    shape: GraphShape,
    bank: ArrayView2<f32>,
    chunk_target: usize,
) -> Result<String, OnnxError> {
    let (h, w) = shape.grid;
    let (c_out, n) = bank.dim();
    let rows = chunk_rows(h * w, chunk_target) as i64;
    g.initializer(Tensor::int64_1d("knn_chunk_shape", vec![-1, rows, c_out as i64]));
    g.initializer(Tensor::int64_1d("knn_out_shape", vec![-1, (h * w) as i64, shape.k as i64]));
    let nhwc = g.apply(Node::new("Transpose", &[phi], &[]).attr("perm", vec![0i64, 2, 3, 1]));
    let chunks = g.apply(Node::new("Reshape", &[&nhwc, "knn_chunk_shape"], &[]));
    let body = knn_body(bank, shape.k, rows, c_out, n, false)?;
    let scanned =
        g.apply(Node::new("Scan", &[&chunks], &[]).attr("num_scan_inputs", 1i64).attr("body", body));
    Ok(g.apply(Node::new("Reshape", &[&scanned, "knn_out_shape"], &[])))
}

/// The Scan body for one chunk `x [R, C'] → d [R, K]` (and the centres' indices `[R, K]` when
/// `with_index`). The bank lives in the body's own initializers so ONNX Runtime can pre-pack it
/// for its matrix multiply.
fn knn_body(
    bank: ArrayView2<f32>,
    k: usize,
    rows: i64,
    c_out: usize,
    n: usize,
    with_index: bool,
) -> Result<Graph, OnnxError> {
    let mut b = Graph::new("knn_chunk");
    b.input("x", ElemType::Float, &[Dim::Fixed(rows), fixed(c_out)]);
    let neg2: Vec<f32> = bank.iter().map(|v| -2.0 * v).collect();
    let bank_sq: Array2<f32> = bank.map_axis(Axis(0), |c| c.dot(&c)).insert_axis(Axis(0));
    b.initializer(Tensor::float("bank_neg2", &[c_out as i64, n as i64], neg2)?);
    b.initializer(Tensor::float("bank_sq", &[1, n as i64], bank_sq.iter().copied().collect())?);
    b.initializer(Tensor::int64_1d("k", vec![k as i64]));
    let mm = b.apply(Node::new("MatMul", &["x", "bank_neg2"], &[]));
    let partial = b.apply(Node::new("Add", &[&mm, "bank_sq"], &[]));
    b.node(
        Node::new("TopK", &[&partial, "k"], &["nearest", "nearest_index"])
            .attr("axis", -1i64)
            .attr("largest", 0i64)
            .attr("sorted", 1i64),
    );
    let x_sq =
        b.apply(Node::new("ReduceSumSquare", &["x"], &[]).attr("axes", vec![1i64]).attr("keepdims", 1i64));
    let full = b.apply(Node::new("Add", &["nearest", &x_sq], &[]));
    b.node(Node::new("Relu", &[&full], &["d"]));
    b.output("d", ElemType::Float, &[Dim::Fixed(rows), fixed(k)]);
    if with_index {
        b.output("nearest_index", ElemType::Int64, &[Dim::Fixed(rows), fixed(k)]);
    }
    Ok(b)
}

/// Builds the kNN for training: patch rows `rows [P, C']` → their `k` smallest squared
/// distances `dist [P, k]` and the centres' indices `index [P, k]`. P must be a multiple of
/// `patches_per_image`; chunks are a divisor of it.
pub fn knn_rows_model(
    bank: ArrayView2<f32>,
    k: usize,
    patches_per_image: usize,
    chunk_target: usize,
) -> Result<Model, OnnxError> {
    let (c_out, n) = bank.dim();
    let rows = chunk_rows(patches_per_image, chunk_target) as i64;
    let mut g = Graph::new("knn_rows");
    g.input("rows", ElemType::Float, &[Dim::param("patches"), fixed(c_out)]);
    g.initializer(Tensor::int64_1d("chunk_shape", vec![-1, rows, c_out as i64]));
    g.initializer(Tensor::int64_1d("flat_shape", vec![-1, k as i64]));
    let chunks = g.apply(Node::new("Reshape", &["rows", "chunk_shape"], &[]));
    let body = knn_body(bank, k, rows, c_out, n, true)?;
    g.node(
        Node::new("Scan", &[&chunks], &["chunk_dist", "chunk_index"])
            .attr("num_scan_inputs", 1i64)
            .attr("body", body),
    );
    g.node(Node::new("Reshape", &["chunk_dist", "flat_shape"], &["dist"]));
    g.node(Node::new("Reshape", &["chunk_index", "flat_shape"], &["index"]));
    g.output("dist", ElemType::Float, &[Dim::param("patches"), fixed(k)]);
    g.output("index", ElemType::Int64, &[Dim::param("patches"), fixed(k)]);
    Ok(finish(g, "CFA memory-bank kNN with indices (training)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_divide_the_patch_count() {
        assert_eq!(chunk_rows(4096, 256), 256);
        assert_eq!(chunk_rows(50 * 66, 256), 220);
        assert_eq!(chunk_rows(13, 256), 13);
        assert_eq!(chunk_rows(97 * 89, 64), 1);
    }

    #[test]
    fn bias_map_folds_coordinates_into_the_bias() {
        let mut weights = DescriptorWeights::init(2, 1, 1);
        weights.weight = ndarray::array![[0.0, 0.0, 2.0, 3.0]];
        weights.bias = ndarray::array![1.0];
        let map = bias_map(&weights, 2, 2, 3);
        // Row 0 (coordinate -1), columns -1, 0, 1: 1 - 2 + 3·col.
        assert_eq!(&map[..3], &[-4.0, -1.0, 2.0]);
        assert_eq!(&map[3..], &[0.0, 3.0, 6.0]);
    }
}
