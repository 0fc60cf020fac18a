//! Helpers shared by the integration tests: fixture paths, tolerance checks and running the binary.
#![allow(dead_code)]

use std::path::PathBuf;

use inspectd::model::tensors::TensorFile;
use ndarray::ArrayViewD;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn golden(name: &str) -> TensorFile {
    TensorFile::open(&fixture(name)).expect("fixture readable")
}

/// Asserts every element is within `rel` of the reference, relative to the element's magnitude
/// with a floor of `rel · max|reference| · 1e-2` so values near zero are not held to nothing.
pub fn assert_close(what: &str, actual: ArrayViewD<f32>, expected: ArrayViewD<f32>, rel: f32) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shape");
    let scale = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let floor = scale * 1e-2;
    let mut worst = (0.0f32, 0usize);
    for (i, (a, e)) in actual.iter().zip(expected.iter()).enumerate() {
        let err = (a - e).abs() / e.abs().max(floor);
        if err > worst.0 {
            worst = (err, i);
        }
    }
    assert!(
        worst.0 <= rel,
        "{what}: relative error {:.3e} at flat index {} exceeds {rel:e}",
        worst.0,
        worst.1
    );
}

/// Directory of set-up artefacts (ONNX Runtime, backbone, sample images) made by scripts/setup.
pub fn local(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local").join(name)
}

/// Runs the `inspectd` binary with `args` and returns its output; panics with both streams
/// when it fails.
pub fn inspectd(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_inspectd")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "inspectd {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
