//! The CFA math against numbers from anomalib 2.7.0's own modules (tests/fixtures/cfa_golden).

mod common;

use common::{assert_close, golden};
use inspectd::cfa::{anomaly_map, blur::GaussianBlur, descriptor, distance};
use ndarray::{s, Array2, Array3, Axis, Ix2, Ix3, Ix4};

#[test]
fn descriptor_matches_anomalib() {
    let g = golden("cfa_golden/descriptor.safetensors");
    let f1 = g.get("f1").unwrap().into_dimensionality::<Ix4>().unwrap();
    let f2 = g.get("f2").unwrap().into_dimensionality::<Ix4>().unwrap();
    let f3 = g.get("f3").unwrap().into_dimensionality::<Ix4>().unwrap();
    let weight = g.get("weight").unwrap().into_shape_with_order((176, 178)).unwrap();
    let bias = g.get("bias").unwrap().into_shape_with_order(176).unwrap();
    let expected = g.get("output").unwrap();
    let weights = descriptor::DescriptorWeights { weight, bias };
    for b in 0..2 {
        let x = descriptor::descriptor_input(
            f1.index_axis(Axis(0), b),
            f2.index_axis(Axis(0), b),
            f3.index_axis(Axis(0), b),
        );
        let phi = descriptor::apply(&weights, &x); // [hw, C']
        let planar = phi.t().to_owned().into_shape_with_order((176, 16, 16)).unwrap();
        let want = expected.slice(s![b, .., .., ..]);
        assert_close("descriptor", planar.into_dyn().view(), want.into_dyn(), 1e-4);
    }
}

#[test]
fn distance_matches_anomalib() {
    let g = golden("cfa_golden/distance.safetensors");
    let features = g.get("features").unwrap().into_dimensionality::<Ix4>().unwrap();
    let bank = g.get("memory_bank").unwrap().into_dimensionality::<Ix2>().unwrap();
    let expected = g.get("distance").unwrap().into_dimensionality::<Ix3>().unwrap();
    for b in 0..2 {
        let phi: Array2<f32> = features
            .index_axis(Axis(0), b)
            .to_owned()
            .into_shape_with_order((176, 256))
            .unwrap()
            .reversed_axes();
        let d = distance::squared_distances(phi.view(), bank.view());
        assert_close("distance", d.into_dyn().view(), expected.index_axis(Axis(0), b).into_dyn(), 1e-4);
    }
}

#[test]
fn anomaly_map_and_score_match_anomalib() {
    let g = golden("cfa_golden/anomaly_map.safetensors");
    let dist = g.get("distance").unwrap().into_dimensionality::<Ix3>().unwrap();
    let want_patch = g.get("patch_score").unwrap().into_dimensionality::<Ix4>().unwrap();
    let want_map = g.get("anomaly_map").unwrap().into_dimensionality::<Ix4>().unwrap();
    let want_score = g.get("image_score").unwrap();
    let blur = GaussianBlur::new(4.0);
    for b in 0..2 {
        let topk: Array2<f32> = Array2::from_shape_fn((256, 3), |_| 0.0);
        let mut topk = topk;
        for (p, row) in dist.index_axis(Axis(0), b).axis_iter(Axis(0)).enumerate() {
            let best = distance::smallest_k(row.as_slice().unwrap(), 3);
            for (k, (_, v)) in best.into_iter().enumerate() {
                topk[(p, k)] = v;
            }
        }
        let patch = anomaly_map::patch_scores(topk.view(), 16, 16);
        let want = want_patch.slice(s![b, 0, .., ..]);
        assert_close("patch score", patch.view().into_dyn(), want.into_dyn(), 1e-4);
        let map = anomaly_map::anomaly_map(patch.view(), 64, 64, &blur);
        let want = want_map.slice(s![b, 0, .., ..]);
        assert_close("anomaly map", map.view().into_dyn(), want.into_dyn(), 1e-4);
        let score = anomaly_map::image_score(map.view());
        assert!(
            (score - want_score[b]).abs() <= 1e-4 * want_score[b].abs(),
            "score {score} vs {}",
            want_score[b]
        );
    }
}

#[test]
fn non_square_descriptor_input_has_coordinates_last() {
    let f1 = Array3::<f32>::zeros((2, 6, 10));
    let f2 = Array3::<f32>::ones((3, 3, 5));
    let f3 = Array3::<f32>::ones((4, 2, 3));
    let x = descriptor::descriptor_input(f1.view(), f2.view(), f3.view());
    assert_eq!(x.dim(), (2 + 3 + 4 + 2, 60));
    // Last patch: bottom-right corner, row then column coordinate both 1.
    assert_eq!((x[(9, 59)], x[(10, 59)]), (1.0, 1.0));
    // Patch 9 is row 0, column 9.
    assert_eq!((x[(9, 9)], x[(10, 9)]), (-1.0, 1.0));
}
