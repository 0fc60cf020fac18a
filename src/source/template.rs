//! Launch templates: one file per camera kind in `pipelines/`, embedded at build time so the
//! binary does not depend on where it is installed.
//!
//! A template is gst-launch text with `#` comment lines and `{name}` placeholders. Placeholders
//! are filled only from validated, typed values (numbers, names from a fixed list); free text
//! such as camera names, URLs and paths is set as an element property after parsing (see
//! `assemble.rs`), so no config value can change the shape of the pipeline.

use crate::config::types::{AravisSource, Roi, RtspSource, SourceConfig, TestSource, V4l2Source};

use super::error::SourceError;
use super::validate::validate;

const GIGE: &str = include_str!("../../pipelines/gige.pipeline");
const USB3VISION: &str = include_str!("../../pipelines/usb3vision.pipeline");
const RTSP: &str = include_str!("../../pipelines/rtsp.pipeline");
const V4L2: &str = include_str!("../../pipelines/v4l2.pipeline");
const FILE: &str = include_str!("../../pipelines/file.pipeline");
const TEST: &str = include_str!("../../pipelines/test.pipeline");
const TAIL: &str = include_str!("../../pipelines/tail.pipeline");

/// Largest model input side we render; a larger one is a mistake upstream.
const MAX_MODEL_SIDE: u32 = 8_192;

/// The template text of a kind, comments included; `None` for the raw `pipeline` kind.
pub fn template(source: &SourceConfig) -> Option<&'static str> {
    match source {
        SourceConfig::Gige(_) => Some(GIGE),
        SourceConfig::Usb3vision(_) => Some(USB3VISION),
        SourceConfig::Rtsp(_) => Some(RTSP),
        SourceConfig::V4l2(_) => Some(V4L2),
        SourceConfig::File(_) => Some(FILE),
        SourceConfig::Test(_) => Some(TEST),
        SourceConfig::Pipeline(_) => None,
    }
}

/// The complete launch string for a source: its template, the optional roi crop and the tail
/// that converts to RGB at the model's `width × height` and ends in `appsink name=sink`.
/// A raw `pipeline` is returned as written (after validation).
pub fn launch_string(
    source: &SourceConfig,
    roi: Option<Roi>,
    width: u32,
    height: u32,
) -> Result<String, SourceError> {
    let mut problems = validate(source, roi);
    let native = (width, height) == super::NATIVE_SIZE;
    if !native && (!(1..=MAX_MODEL_SIDE).contains(&width) || !(1..=MAX_MODEL_SIDE).contains(&height)) {
        problems.push(format!(
            "model input size: {width}×{height} is out of range; \
             check the model's manifest (1 to {MAX_MODEL_SIDE})"
        ));
    }
    if !problems.is_empty() {
        return Err(SourceError::Invalid { problems });
    }
    if let SourceConfig::Pipeline(raw) = source {
        return Ok(raw.launch.trim().to_string());
    }
    let text = template(source).expect("every kind but `pipeline` has a template");
    let head = render(source.kind(), text, &placeholders(source))?;
    let tail = render("tail", TAIL, &tail_values(roi, width, height))?;
    Ok(format!("{head} ! {tail}"))
}

/// Fills `{name}` placeholders, drops comment lines and joins the rest into one line.
/// A placeholder left without a value is an error rather than text GStreamer would misparse.
fn render(kind: &'static str, template: &str, values: &[(&str, String)]) -> Result<String, SourceError> {
    let mut text = template
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    if let Some(start) = text.find('{') {
        let name = text[start + 1..].split('}').next().unwrap_or_default().to_string();
        return Err(SourceError::Template { kind, name });
    }
    Ok(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Placeholder values of the source-specific part.
fn placeholders(source: &SourceConfig) -> Vec<(&'static str, String)> {
    match source {
        SourceConfig::Gige(a) | SourceConfig::Usb3vision(a) => aravis_values(a),
        SourceConfig::Rtsp(r) => rtsp_values(r),
        SourceConfig::V4l2(v) => vec![("caps", v4l2_caps(v))],
        SourceConfig::Test(t) => test_values(t),
        SourceConfig::File(_) | SourceConfig::Pipeline(_) => Vec::new(),
    }
}

fn aravis_values(a: &AravisSource) -> Vec<(&'static str, String)> {
    let bayer = a.pixel_format.strip_prefix("bayer_").and_then(|f| f.strip_suffix('8'));
    let mut caps = match (a.pixel_format.as_str(), bayer) {
        (_, Some(order)) => format!("video/x-bayer,format={order}"),
        ("mono8", _) => "video/x-raw,format=GRAY8".to_string(),
        _ => "video/x-raw,format=RGB".to_string(),
    };
    if let Some(fps) = a.fps {
        let (num, den) = fraction(fps);
        caps.push_str(&format!(",framerate={num}/{den}"));
    }
    vec![("caps", caps), ("debayer", if bayer.is_some() { "! bayer2rgb".to_string() } else { String::new() })]
}

fn rtsp_values(r: &RtspSource) -> Vec<(&'static str, String)> {
    vec![("protocols", r.transport.clone()), ("latency", r.latency_ms.to_string())]
}

fn v4l2_caps(v: &V4l2Source) -> String {
    let mjpeg = v.format.as_deref() == Some("mjpeg");
    let mut fields = Vec::new();
    if let Some(format) = v.format.as_deref().filter(|_| !mjpeg) {
        fields.push(format!("format={format}"));
    }
    if let (Some(w), Some(h)) = (v.width, v.height) {
        fields.push(format!("width={w},height={h}"));
    }
    if let Some(fps) = v.fps {
        fields.push(format!("framerate={fps}/1"));
    }
    match (mjpeg, fields.is_empty()) {
        (true, _) => format!("! {} ! jpegdec", caps_with("image/jpeg", &fields)),
        (false, true) => String::new(),
        (false, false) => format!("! {}", caps_with("video/x-raw", &fields)),
    }
}

fn caps_with(media: &str, fields: &[String]) -> String {
    std::iter::once(media.to_string()).chain(fields.iter().cloned()).collect::<Vec<_>>().join(",")
}

fn test_values(t: &TestSource) -> Vec<(&'static str, String)> {
    vec![
        ("pattern", t.pattern.clone()),
        ("width", t.width.to_string()),
        ("height", t.height.to_string()),
        ("fps", t.fps.to_string()),
    ]
}

fn tail_values(roi: Option<Roi>, width: u32, height: u32) -> Vec<(&'static str, String)> {
    let crop = roi.map(|r| {
        format!(
            "videoconvert ! video/x-raw,format=RGB ! videocrop name=roi left={} top={} right=-1 bottom=-1 \
             ! video/x-raw,width={},height={} !",
            r.x, r.y, r.width, r.height
        )
    });
    let scale = if (width, height) == super::NATIVE_SIZE {
        "video/x-raw,format=RGB".to_string()
    } else {
        format!("videoscale ! video/x-raw,format=RGB,width={width},height={height}")
    };
    vec![("crop", crop.unwrap_or_default()), ("scale", scale)]
}

/// A frame rate as a GStreamer fraction, to the millihertz (e.g. 12.5 → 25/2).
fn fraction(fps: f64) -> (u64, u64) {
    let milli = (fps * 1000.0).round().max(1.0) as u64;
    let divisor = gcd(milli, 1000);
    (milli / divisor, 1000 / divisor)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
