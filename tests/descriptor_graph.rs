//! The generated descriptor/kNN ONNX graphs, run in the real ONNX Runtime, against anomalib's
//! golden numbers and the CPU reference.

mod common;

use common::{assert_close, golden};
use inspectd::cfa::descriptor::DescriptorWeights;
use inspectd::cfa::{distance, graph};
use inspectd::model::runtime::{Runtime, RuntimeSettings};
use ndarray::{Array2, ArrayD, Axis, Ix2, Ix4};
use ort::value::Tensor;

fn runtime() -> Runtime {
    Runtime::init(RuntimeSettings { intra_threads: 2, ..RuntimeSettings::default() })
        .expect("ONNX Runtime (run scripts/setup)")
}

fn tensor(a: &ArrayD<f32>) -> Tensor<f32> {
    Tensor::from_array((a.shape().to_vec(), a.iter().copied().collect::<Vec<f32>>())).unwrap()
}

fn golden_weights() -> (DescriptorWeights, [ArrayD<f32>; 3], ArrayD<f32>) {
    let g = golden("cfa_golden/descriptor.safetensors");
    let weight = g.get("weight").unwrap().into_shape_with_order((176, 178)).unwrap();
    let bias = g.get("bias").unwrap().into_shape_with_order(176).unwrap();
    let feats = [g.get("f1").unwrap(), g.get("f2").unwrap(), g.get("f3").unwrap()];
    (DescriptorWeights { weight, bias }, feats, g.get("output").unwrap())
}

const SHAPE: graph::GraphShape = graph::GraphShape { channels: [24, 40, 112], grid: (16, 16), k: 3 };

#[test]
fn generated_descriptor_matches_anomalib_in_onnx_runtime() {
    let (weights, [f1, f2, f3], expected) = golden_weights();
    let model = graph::descriptor_model(SHAPE, &weights).unwrap().encode();
    let (mut session, _) = runtime().session("descriptor (test)", &model).unwrap();
    let out =
        session.run(ort::inputs!["f1" => tensor(&f1), "f2" => tensor(&f2), "f3" => tensor(&f3)]).unwrap();
    let phi = out["phi"].try_extract_array::<f32>().unwrap();
    assert_close("onnx descriptor", phi.view(), expected.view(), 1e-4);
}

#[test]
fn fused_knn_graph_matches_cpu_distances() {
    let (weights, [f1, f2, f3], expected_phi) = golden_weights();
    let bank_file = golden("cfa_golden/distance.safetensors");
    let bank = bank_file.get("memory_bank").unwrap().into_dimensionality::<Ix2>().unwrap();
    // A chunk of 64 patches makes the Scan take four steps per image.
    let model = graph::descriptor_knn_model(SHAPE, &weights, bank.view(), 64).unwrap().encode();
    let (mut session, _) = runtime().session("descriptor+knn (test)", &model).unwrap();
    let out =
        session.run(ort::inputs!["f1" => tensor(&f1), "f2" => tensor(&f2), "f3" => tensor(&f3)]).unwrap();
    let topk = out["topk"].try_extract_array::<f32>().unwrap();
    assert_eq!(topk.shape(), &[2, 256, 3]);
    let phi = expected_phi.into_dimensionality::<Ix4>().unwrap();
    for b in 0..2 {
        let p: Array2<f32> =
            phi.index_axis(Axis(0), b).to_owned().into_shape_with_order((176, 256)).unwrap().reversed_axes();
        let d = distance::squared_distances(p.view(), bank.view());
        let mut want = Array2::<f32>::zeros((256, 3));
        for (i, row) in d.axis_iter(Axis(0)).enumerate() {
            for (k, (_, v)) in distance::smallest_k(row.as_slice().unwrap(), 3).into_iter().enumerate() {
                want[(i, k)] = v;
            }
        }
        assert_close("onnx knn", topk.index_axis(Axis(0), b).into_dyn(), want.view().into_dyn(), 1e-4);
    }
}
