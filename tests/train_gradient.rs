//! The CFA loss and its analytic gradient: against anomalib's golden loss and gradient, and
//! against finite differences through the descriptor.

mod common;

use common::{assert_close, golden};
use inspectd::cfa::descriptor::DescriptorWeights;
use inspectd::cfa::distance::{smallest_k, squared_distances};
use inspectd::train::fit::{backprop, descriptor_rows};
use inspectd::train::loss::{cfa_loss, LossGrad};
use inspectd::util::rng::SplitMix64;
use ndarray::{Array2, ArrayD, Axis, Ix3};

/// Each row's `width` smallest distances and their columns, flattened.
fn nearest_rows(d: &Array2<f32>, width: usize) -> (Vec<f32>, Vec<i64>) {
    let mut dist = Vec::new();
    let mut index = Vec::new();
    for row in d.axis_iter(Axis(0)) {
        for (i, v) in smallest_k(row.as_slice().unwrap(), width) {
            dist.push(v);
            index.push(i as i64);
        }
    }
    (dist, index)
}

#[test]
fn loss_and_gradient_match_anomalib() {
    let g = golden("cfa_golden/loss.safetensors");
    let distance = g.get("distance").unwrap().into_dimensionality::<Ix3>().unwrap();
    let want_grad = g.get("grad").unwrap();
    let want_loss = g.get("loss").unwrap()[[0]];
    let flat = distance.to_shape((512, 64)).unwrap().to_owned();
    let (dist, index) = nearest_rows(&flat, 6);
    let lg = cfa_loss(&dist, 3, 3, 0.5);
    assert!((lg.loss - want_loss).abs() <= 1e-4 * want_loss.abs(), "loss {} vs {want_loss}", lg.loss);
    let mut grad = ArrayD::<f32>::zeros(vec![512, 64]);
    for (p, chunk) in lg.grad.chunks(6).enumerate() {
        for (s, g) in chunk.iter().enumerate() {
            grad[[p, index[p * 6 + s] as usize]] += g;
        }
    }
    let grad = grad.into_shape_with_order(vec![2, 256, 64]).unwrap();
    assert_close("loss gradient", grad.view(), want_grad.view(), 1e-4);
}

/// Loss of the descriptor `w` (with radius `r`) on inputs `xs` against `bank`, in f64-friendly
/// small sizes, plus the analytic gradient.
fn evaluate(
    xs: &[Array2<f32>],
    w: &DescriptorWeights,
    bank: &Array2<f32>,
    r: f32,
) -> (LossGrad, Array2<f32>, Vec<i64>) {
    let parts: Vec<Array2<f32>> = xs.iter().map(|x| descriptor_rows(x.view(), w)).collect();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let phi = ndarray::concatenate(Axis(0), &views).unwrap();
    let (dist, index) = nearest_rows(&squared_distances(phi.view(), bank.view()), 5);
    (cfa_loss(&dist, 2, 3, r), phi, index)
}

#[test]
fn analytic_gradient_matches_finite_differences() {
    let mut rng = SplitMix64::new(11);
    let (patches, c_in, c_out, n) = (12, 6, 4, 9);
    let xs: Vec<Array2<f32>> = (0..2)
        .map(|_| Array2::from_shape_simple_fn((patches, c_in + 2), || rng.unit() * 2.0 - 1.0))
        .collect();
    let mut w = DescriptorWeights::init(c_in, c_out, 3);
    let bank = Array2::from_shape_simple_fn((c_out, n), || rng.unit() - 0.5);
    // A radius where both attraction and repulsion are active for some neighbours.
    let r = 0.55;
    let (lg, phi, index) = evaluate(&xs, &w, &bank, r);
    assert!(lg.grad.iter().any(|g| *g > 0.0) && lg.grad.iter().any(|g| *g < 0.0), "both terms active");
    let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
    let bank_rows = bank.t().to_owned();
    let (d_weight, d_bias) = backprop(&views, &phi, &index, &lg, bank_rows.view());
    let eps = 1e-3;
    let numeric = |w: &DescriptorWeights, r: f32| evaluate(&xs, w, &bank, r).0.loss as f64;
    let mut checked = 0;
    for (o, i) in [(0, 0), (1, 3), (2, 7), (3, 5), (0, 6)] {
        let mut plus = w.clone();
        plus.weight[(o, i)] += eps;
        let mut minus = w.clone();
        minus.weight[(o, i)] -= eps;
        let fd = (numeric(&plus, r) - numeric(&minus, r)) / (2.0 * eps as f64);
        let an = d_weight[(o, i)] as f64;
        assert!((fd - an).abs() <= 2e-2 * an.abs().max(1.0), "dW[{o},{i}]: analytic {an} vs numeric {fd}");
        checked += 1;
    }
    for o in 0..c_out {
        w.bias[o] += eps;
        let up = numeric(&w, r);
        w.bias[o] -= 2.0 * eps;
        let down = numeric(&w, r);
        w.bias[o] += eps;
        let fd = (up - down) / (2.0 * eps as f64);
        assert!((fd - d_bias[o] as f64).abs() <= 2e-2 * (d_bias[o] as f64).abs().max(1.0), "db[{o}]");
    }
    let fd_r = (numeric(&w, r + eps) - numeric(&w, r - eps)) / (2.0 * eps as f64);
    assert!(
        (fd_r - lg.grad_radius as f64).abs() <= 2e-2 * fd_r.abs().max(1.0),
        "dr: {} vs {fd_r}",
        lg.grad_radius
    );
    assert_eq!(checked, 5);
}
