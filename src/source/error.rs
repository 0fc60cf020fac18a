//! What can go wrong with a camera source or a video file, with enough context (camera, element,
//! file) for the person reading the log to find the culprit without a debugger.

use std::path::PathBuf;
use std::time::Duration;

/// A source or video-file error.
///
/// [`SourceError::is_transient`] tells the supervisor whether rebuilding the pipeline can help:
/// a camera that dropped off the network comes back, a typo in the config does not.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The settings failed validation; every problem is listed as "key: why, and the fix".
    #[error("invalid source settings: {}", .problems.join("; "))]
    Invalid { problems: Vec<String> },

    /// GStreamer itself could not start (libraries missing or broken).
    #[error("GStreamer could not be initialised: {0}")]
    Init(#[from] gstreamer::glib::Error),

    /// A template in `pipelines/` uses a placeholder the code does not fill (a packaging bug).
    #[error("pipeline template {kind}: placeholder {{{name}}} has no value")]
    Template { kind: &'static str, name: String },

    /// The launch string did not parse, usually because a plugin is not installed.
    #[error("camera {camera}: the pipeline cannot be built: {reason}")]
    Build { camera: String, reason: String },

    /// The RTSP password file could not be read.
    #[error("camera {camera}: cannot read the password file {}: {source}", .path.display())]
    Credentials {
        camera: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A GStreamer element reported an error (lost camera, decode failure, negotiation).
    #[error("camera {camera}: {element}: {reason}")]
    Element {
        camera: String,
        /// Element path, e.g. `/GstPipeline:cam1/GstAravis:src`.
        element: String,
        reason: String,
        /// GStreamer's debug detail; logged, not put in status messages.
        debug: Option<String>,
    },

    /// A live source ended its stream (RTSP server closed it, camera stopped acquisition).
    #[error("camera {camera}: the stream ended")]
    Ended { camera: String },

    /// A live source delivered no frame for `after` and reported nothing: a camera that lost
    /// power or a network path that went silent sends no error.
    #[error(
        "camera {camera}: no frame for {:.1} s (cameras.{camera}.stall_timeout_s); the source is rebuilt",
        .after.as_secs_f64()
    )]
    Silent { camera: String, after: Duration },

    /// The pipeline refused a state change without saying why on the bus.
    #[error("camera {camera}: the pipeline could not go to {state}")]
    StateChange { camera: String, state: &'static str },

    /// A video file could not be opened or decoded.
    #[error("video {}: {element}: {reason}", .file.display())]
    File { file: PathBuf, element: String, reason: String },

    /// A video file stopped producing frames without an error or its end.
    /// The camera refused a GenICam setting, or does not have it; the reason names the
    /// camera's own range or entries.
    #[error("camera {camera}: GenICam feature {feature} ({key}): {reason}")]
    Feature { camera: String, feature: String, key: String, reason: String },
    #[error("video {}: no frame for {:.0?}; the decoder stalled", .file.display(), .after)]
    Stalled { file: PathBuf, after: Duration },
}

impl SourceError {
    /// Whether rebuilding the pipeline may help (live sources retry these with backoff).
    /// Configuration, missing plugins and unreadable credentials need a person instead.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Element { .. }
                | SourceError::Ended { .. }
                | SourceError::Silent { .. }
                | SourceError::StateChange { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runtime_failures_are_transient() {
        let element = SourceError::Element {
            camera: "cam1".into(),
            element: "/GstPipeline:cam1/GstAravis:src".into(),
            reason: "Internal data stream error.".into(),
            debug: None,
        };
        assert!(element.is_transient());
        assert!(element.to_string().contains("cam1"));
        assert!(element.to_string().contains("GstAravis:src"));
        assert!(!SourceError::Invalid { problems: vec!["source.fps: must be > 0".into()] }.is_transient());
        assert!(!SourceError::Build { camera: "c".into(), reason: "no element".into() }.is_transient());
    }
}
