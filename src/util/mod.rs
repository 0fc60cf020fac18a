//! Small helpers shared by several stages.

pub mod backoff;
pub mod rng;
pub mod supervise;
pub mod time;
pub mod video_writer;
pub mod workers;
