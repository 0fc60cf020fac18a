//! Offline evaluation of anomaly scores against ground truth.
//!
//! Everything here is pure computation on in-memory scores, so accuracy tests,
//! the demo and the CLI's `eval` path share one implementation of each metric
//! instead of each re-deriving AUROC/AUPRO with slightly different tie rules.

mod components;
pub mod evaluate;
mod keys;
pub mod metrics;

pub use metrics::{aupro, auroc, best_f1_threshold, f1_at, pixel_auroc, quantile, Confusion};
