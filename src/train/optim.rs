//! AdamW with the AMSGrad variant, exactly as PyTorch's `torch.optim.AdamW(amsgrad=True)`
//! (cfa.md §4: lr 1e-3, weight decay 5e-4).

/// Optimiser hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub lr: f32,
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, weight_decay: 5e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Optimiser state for one flat parameter vector.
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    step: i32,
    m: Vec<f32>,
    v: Vec<f32>,
    v_max: Vec<f32>,
}

impl AdamW {
    pub fn new(config: AdamWConfig, len: usize) -> Self {
        AdamW { config, step: 0, m: vec![0.0; len], v: vec![0.0; len], v_max: vec![0.0; len] }
    }

    /// One update of `params` with gradient `grad`.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) {
        assert_eq!(params.len(), self.m.len(), "parameter count");
        assert_eq!(grad.len(), self.m.len(), "gradient count");
        self.step += 1;
        let c = self.config;
        let bias1 = 1.0 - c.beta1.powi(self.step);
        let bias2_sqrt = (1.0 - c.beta2.powi(self.step)).sqrt();
        let step_size = c.lr / bias1;
        for i in 0..params.len() {
            params[i] *= 1.0 - c.lr * c.weight_decay;
            self.m[i] = c.beta1 * self.m[i] + (1.0 - c.beta1) * grad[i];
            self.v[i] = c.beta2 * self.v[i] + (1.0 - c.beta2) * grad[i] * grad[i];
            self.v_max[i] = self.v_max[i].max(self.v[i]);
            let denom = self.v_max[i].sqrt() / bias2_sqrt + c.eps;
            params[i] -= step_size * self.m[i] / denom;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        // After one step Adam's update is lr · sign(g) (bias-corrected m/sqrt(v) = ±1).
        let mut p = vec![1.0f32, -2.0];
        let mut opt = AdamW::new(AdamWConfig { weight_decay: 0.0, ..AdamWConfig::default() }, 2);
        opt.step(&mut p, &[0.5, -3.0]);
        assert!((p[0] - (1.0 - 1e-3)).abs() < 1e-6 && (p[1] - (-2.0 + 1e-3)).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn matches_pytorch_adamw_amsgrad_trajectory() {
        // torch.optim.AdamW([p], lr=0.1, weight_decay=0.01, amsgrad=True), p0 = 1.0, with a
        // gradient that changes sign so the amsgrad maximum matters.
        let mut p = vec![1.0f32];
        let mut opt = AdamW::new(AdamWConfig { lr: 0.1, weight_decay: 0.01, ..AdamWConfig::default() }, 1);
        let mut seen = Vec::new();
        for g in [1.0f32, -2.0, 0.5] {
            opt.step(&mut p, &[g]);
            seen.push(p[0]);
        }
        let want = expected_trajectory(0.1, 0.01, &[1.0, -2.0, 0.5]);
        for (a, b) in seen.iter().zip(&want) {
            assert!((a - b).abs() < 1e-5, "{seen:?} vs {want:?}");
        }
    }

    /// A direct double-precision transcription of PyTorch's `_single_tensor_adamw` with amsgrad.
    fn expected_trajectory(lr: f64, wd: f64, grads: &[f64]) -> Vec<f32> {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8f64);
        let (mut p, mut m, mut v, mut vmax) = (1.0f64, 0.0, 0.0, 0.0f64);
        let mut out = Vec::new();
        for (t, g) in grads.iter().enumerate() {
            let t = (t + 1) as i32;
            p *= 1.0 - lr * wd;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            vmax = vmax.max(v);
            let denom = vmax.sqrt() / (1.0 - b2.powi(t)).sqrt() + eps;
            p -= lr / (1.0 - b1.powi(t)) * m / denom;
            out.push(p as f32);
        }
        out
    }
}
