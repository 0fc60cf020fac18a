//! Where frames come from: image files and folders (cameras and videos arrive with the daemon).

pub mod images;
pub mod mvtec;
