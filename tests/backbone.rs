//! The converted EfficientNet-Lite0 (scripts/setup → tools/export_backbone.py) in the real
//! ONNX Runtime, against the reference implementation's features and ImageNet classes.

mod common;

use common::{golden, local};
use inspectd::cfa::preprocess::Normalisation;
use inspectd::input::images::load_rgb;
use inspectd::model::backbone;
use inspectd::model::runtime::{Runtime, RuntimeSettings};
use inspectd::model::scorer::ImageBatch;
use ndarray::ArrayD;
use ort::session::Session;
use ort::value::Tensor;

fn session(file: &str) -> Session {
    let path = local(file);
    let bytes =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup)", path.display()));
    let runtime = Runtime::init(RuntimeSettings::default()).expect("ONNX Runtime (run scripts/setup)");
    runtime.session(file, &bytes).unwrap().0
}

fn tensor(a: &ArrayD<f32>) -> Tensor<f32> {
    Tensor::from_array((a.shape().to_vec(), a.iter().copied().collect::<Vec<f32>>())).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn lite0_features_match_the_reference_on_chelsea() {
    let g = golden("efficientnet_lite0_chelsea.safetensors");
    let mut s = session("models/backbone.onnx");
    let out = s.run(ort::inputs!["image" => tensor(&g.get("input").unwrap())]).unwrap();
    for name in ["f1", "f2", "f3"] {
        let want = g.get(name).unwrap();
        let got = out[name].try_extract_array::<f32>().unwrap();
        assert_eq!(got.shape(), want.shape(), "{name} shape");
        let diff = max_abs_diff(got.as_slice().unwrap(), want.as_slice().unwrap());
        assert!(diff <= 1e-3, "{name}: max abs diff {diff} > 1e-3");
    }
}

fn argmax(logits: &[f32]) -> usize {
    logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0
}

fn classify(s: &mut Session, batch: &ImageBatch) -> usize {
    let input =
        Tensor::from_array(([batch.count, 3, batch.height, batch.width], batch.data.clone())).unwrap();
    let out = s.run(ort::inputs!["image" => input]).unwrap();
    argmax(out["logits"].try_extract_array::<f32>().unwrap().as_slice().unwrap())
}

#[test]
fn classifier_recognises_the_cat_and_the_coffee() {
    let g = golden("efficientnet_lite0_chelsea.safetensors");
    let mut s = session("models/efficientnet_lite0_classifier.onnx");
    let out = s.run(ort::inputs!["image" => tensor(&g.get("input224").unwrap())]).unwrap();
    let logits = out["logits"].try_extract_array::<f32>().unwrap();
    let want = g.get("logits224").unwrap();
    assert_eq!(argmax(logits.as_slice().unwrap()), 285, "Egyptian cat");
    assert!(max_abs_diff(logits.as_slice().unwrap(), want.as_slice().unwrap()) < 1e-3);
    drop(out);
    // Through inspectd's own decode + resize + normalise path.
    for (file, class) in [("data/chelsea.png", 285), ("data/coffee.png", 967)] {
        let img = load_rgb(&local(file)).unwrap();
        let batch = ImageBatch::from_images(&[img], 224, 224, &Normalisation::IMAGENET);
        assert_eq!(classify(&mut s, &batch), class, "{file}");
    }
}

#[test]
fn backbone_layout_is_read_from_the_graph() {
    let path = local("models/backbone.onnx");
    let bytes = std::fs::read(&path).unwrap();
    let runtime = Runtime::init(RuntimeSettings::default()).unwrap();
    let desc = backbone::describe(&runtime, "backbone.onnx", &bytes).unwrap();
    assert_eq!(desc.name, "efficientnet_lite0");
    assert_eq!(desc.channels, [24, 40, 112]);
    // A descriptor graph is not a backbone: the error says so and names the file.
    let not_backbone = inspectd::onnx::Model::new({
        let mut g = inspectd::onnx::Graph::new("x");
        g.input("x", inspectd::onnx::ElemType::Float, &[inspectd::onnx::Dim::Fixed(1)]);
        g.node(inspectd::onnx::Node::new("Identity", &["x"], &["y"]));
        g.output("y", inspectd::onnx::ElemType::Float, &[inspectd::onnx::Dim::Fixed(1)]);
        g
    })
    .encode();
    let err = backbone::describe(&runtime, "wrong.onnx", &not_backbone).unwrap_err().to_string();
    assert!(err.contains("wrong.onnx") && err.contains("image"), "{err}");
}
