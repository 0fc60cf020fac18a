//! Evidence: the frame and a heatmap overlay of NG frames, kept on disk for the operator who
//! has to decide whether an alarm was real (design.md §1).
//!
//! - [`EvidenceStore`] writes files atomically and ages out the oldest evidence, across all
//!   cameras, to stay within `evidence.max_files` and `evidence.max_bytes`. It blocks (file
//!   I/O, PNG/JPEG encoding), so it belongs on its own thread behind a bounded queue.
//! - [`EvidenceLayout`] names the files from (camera, seq, capture time) alone, so an alarm
//!   message can carry the paths before the images are encoded.
//! - [`EvidenceLimiter`] keeps `every_ng` evidence to one frame per camera per interval.

mod error;
mod format;
mod inventory;
mod limiter;
mod naming;
mod store;

pub use error::EvidenceError;
pub use format::EvidenceFormat;
pub use inventory::Usage;
pub use limiter::EvidenceLimiter;
pub use naming::{EvidenceLayout, EvidencePaths};
pub use store::{EvidenceStore, Heat};
