//! `inspectd train`: fitting a CFA bundle from good images (cfa.md §2–§6).

pub mod calibrate;
pub mod features;
pub mod fit;
mod frames;
pub mod kmeans;
pub mod loss;
pub mod optim;
pub mod run;
pub mod select;
