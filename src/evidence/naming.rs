//! Where evidence files go and how their names are read back.
//!
//! `{dir}/{camera}/{time}_{seq}_frame.{ext}` and `…_heatmap.{ext}`, where `time` is the
//! frame's capture time as RFC 3339 UTC with `-` instead of `:` (a colon is awkward on
//! shares and in URLs), e.g. `2026-11-28T15-04-08.123Z_4711_frame.jpg`. The fixed-width
//! time first makes name order chronological order, so retention can find the oldest
//! files from names alone, and an operator browsing the folder sees them in order.
//!
//! Paths are a pure function of (camera, seq, time), so the decision stage can put them
//! into an alarm payload without waiting for the evidence thread to encode the images.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::error::EvidenceError;
use super::format::EvidenceFormat;
use crate::util::time::rfc3339;

/// The two files of one piece of evidence, as the `alarm` payload's `evidence` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidencePaths {
    pub frame: PathBuf,
    pub heatmap: PathBuf,
}

/// The evidence directory and format: enough to name files without the store itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceLayout {
    dir: PathBuf,
    format: EvidenceFormat,
}

impl EvidenceLayout {
    pub fn new(dir: impl Into<PathBuf>, format: EvidenceFormat) -> Self {
        EvidenceLayout { dir: dir.into(), format }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn format(&self) -> EvidenceFormat {
        self.format
    }

    /// Where the evidence of frame `seq` of `camera`, captured at `at`, is written.
    pub fn paths(&self, camera: &str, seq: u64, at: SystemTime) -> Result<EvidencePaths, EvidenceError> {
        let dir = self.camera_dir(camera)?;
        let stem = format!("{}_{seq}", stamp(at));
        let ext = self.format.extension();
        Ok(EvidencePaths {
            frame: dir.join(format!("{stem}_frame.{ext}")),
            heatmap: dir.join(format!("{stem}_heatmap.{ext}")),
        })
    }

    /// The camera's folder. Camera ids come from the config; one that is not a single plain
    /// name could write outside the evidence directory or clash with temporary files.
    pub(crate) fn camera_dir(&self, camera: &str) -> Result<PathBuf, EvidenceError> {
        let plain = !camera.is_empty() && !camera.starts_with('.') && !camera.contains(['/', '\\', '\0']);
        if plain {
            Ok(self.dir.join(camera))
        } else {
            Err(EvidenceError::Camera { camera: camera.to_string() })
        }
    }
}

/// Identifies one saved piece of evidence (its frame and heatmap files). Field order gives
/// the retention order: oldest capture time first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ItemKey {
    stamp: String,
    camera: String,
    seq: u64,
}

impl ItemKey {
    pub(crate) fn new(camera: &str, seq: u64, at: SystemTime) -> Self {
        ItemKey { stamp: stamp(at), camera: camera.to_string(), seq }
    }

    /// Reads a file name this module wrote (either format, so files written before a
    /// format change are still counted and aged out). Anything else is not ours: `None`,
    /// and retention never touches it.
    pub(crate) fn parse(camera: &str, file_name: &str) -> Option<Self> {
        let (rest, ext) = file_name.rsplit_once('.')?;
        if ext != "png" && ext != "jpg" {
            return None;
        }
        let (rest, kind) = rest.rsplit_once('_')?;
        if kind != "frame" && kind != "heatmap" {
            return None;
        }
        let (stamp, seq) = rest.rsplit_once('_')?;
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let seq = seq.parse().ok()?;
        is_stamp(stamp).then(|| ItemKey { stamp: stamp.to_string(), camera: camera.to_string(), seq })
    }
}

/// The capture time as it appears in file names; a time before 1970 (a broken clock)
/// reads as the epoch, so it is the first to be aged out.
fn stamp(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(since.as_secs() as i64, since.subsec_millis()).replace(':', "-")
}

/// Whether `s` has the shape of [`stamp`]'s output: `dddd-dd-ddTdd-dd-dd.dddZ`.
fn is_stamp(s: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd-dd-dd.dddZ";
    s.len() == SHAPE.len()
        && s.bytes().zip(SHAPE).all(|(c, &want)| if want == b'd' { c.is_ascii_digit() } else { c == want })
}

/// The temporary name a file is written under before it is renamed into place. It starts
/// with a dot, so neither [`ItemKey::parse`] nor a casual `ls` picks up a half-written file.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("evidence");
    path.with_file_name(format!(".{name}.tmp"))
}

/// Whether `file_name` is a temporary file left by a crash in the middle of a write.
pub(crate) fn is_temp_name(file_name: &str) -> bool {
    file_name.starts_with('.') && file_name.ends_with(".tmp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at_ms(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn paths_are_per_camera_time_first_and_use_the_format_extension() {
        let layout = EvidenceLayout::new("/ev", EvidenceFormat::Jpeg);
        let p = layout.paths("line1", 4711, at_ms(1_795_878_248_123)).expect("plain camera id");
        assert_eq!(p.frame, Path::new("/ev/line1/2026-11-28T15-04-08.123Z_4711_frame.jpg"));
        assert_eq!(p.heatmap, Path::new("/ev/line1/2026-11-28T15-04-08.123Z_4711_heatmap.jpg"));
    }

    #[test]
    fn camera_ids_that_would_escape_the_directory_are_refused() {
        let layout = EvidenceLayout::new("/ev", EvidenceFormat::Png);
        for bad in ["", "..", ".hidden", "a/b", "a\\b", "nul\0"] {
            assert!(layout.paths(bad, 1, at_ms(0)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn written_names_parse_back_and_foreign_names_do_not() {
        let layout = EvidenceLayout::new("/ev", EvidenceFormat::Png);
        let p = layout.paths("cam", 12, at_ms(5_000)).expect("plain");
        let name = p.heatmap.file_name().and_then(|n| n.to_str()).expect("utf-8");
        assert_eq!(ItemKey::parse("cam", name), Some(ItemKey::new("cam", 12, at_ms(5_000))));
        for foreign in [
            "notes.txt",
            "photo.jpg",
            "2026-11-28T15-04-08.123Z_12_thumb.png",
            "2026-11-28T15-04-08.123Z_+12_frame.png",
            "2026-11-28_12_frame.png",
            ".2026-11-28T15-04-08.123Z_12_frame.png.tmp",
        ] {
            assert_eq!(ItemKey::parse("cam", foreign), None, "{foreign}");
        }
    }

    #[test]
    fn keys_order_by_capture_time_before_camera_and_seq() {
        let older = ItemKey::new("zeta", 99, at_ms(1_000));
        let newer = ItemKey::new("alpha", 1, at_ms(2_000));
        assert!(older < newer);
    }

    #[test]
    fn temporary_names_are_hidden_and_recognised() {
        let tmp = temp_path(Path::new("/ev/cam/x_1_frame.png"));
        assert_eq!(tmp, Path::new("/ev/cam/.x_1_frame.png.tmp"));
        assert!(is_temp_name(".x_1_frame.png.tmp") && !is_temp_name("x_1_frame.png"));
    }
}
