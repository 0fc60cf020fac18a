//! Checks a camera's source settings before anything is built (design.md §4: typed, validated
//! parameters; nothing from config is pasted into a launch string unchecked).
//!
//! Risky strings (camera names, URLs, device and file paths) never enter the launch text: they
//! are set as element properties after parsing, so they cannot break out of the launch syntax.
//! Validation here is about values that are *meaningful*: known patterns and pixel formats, sane
//! numbers, no control characters, no credentials in a URL. Every problem is reported, each as
//! "key: why, and the fix", so `inspectd check-config` can list them all at once.

use std::path::Path;

use crate::config::types::{
    AravisSource, FeatureValue, RawPipeline, Roi, RtspSource, SourceConfig, TestSource, V4l2Source,
};

/// videotestsrc patterns in GStreamer 1.22 (`gst-inspect-1.0 videotestsrc`).
pub const TEST_PATTERNS: &[&str] = &[
    "smpte",
    "snow",
    "black",
    "white",
    "red",
    "green",
    "blue",
    "checkers-1",
    "checkers-2",
    "checkers-4",
    "checkers-8",
    "circular",
    "blink",
    "smpte75",
    "zone-plate",
    "gamut",
    "chroma-zone-plate",
    "solid-color",
    "ball",
    "smpte100",
    "bar",
    "pinwheel",
    "spokes",
    "gradient",
    "colors",
    "smpte-rp-219",
];

/// Sensor pixel formats the aravis templates know how to turn into RGB.
pub const PIXEL_FORMATS: &[&str] =
    &["mono8", "rgb8", "bayer_bggr8", "bayer_rggb8", "bayer_grbg8", "bayer_gbrg8"];

/// V4L2 formats offered in the template: `mjpeg` or a GStreamer raw format name.
pub const V4L2_FORMATS: &[&str] =
    &["mjpeg", "YUY2", "UYVY", "YVYU", "NV12", "NV21", "I420", "YV12", "GRAY8", "RGB", "BGR", "BGRx", "xRGB"];

/// Largest frame side we accept; beyond any industrial sensor, so a larger value is a typo.
const MAX_SIDE: u32 = 16_384;
/// Highest frame rate we accept for any source.
const MAX_FPS: f64 = 1_000.0;
/// Longest RTSP jitter buffer; more only delays verdicts.
const MAX_LATENCY_MS: u32 = 10_000;

/// Every problem with a source and its region of interest, each as "key: why, and the fix".
/// Empty means the settings can be rendered and built.
pub fn validate(source: &SourceConfig, roi: Option<Roi>) -> Vec<String> {
    let mut problems = Vec::new();
    match source {
        SourceConfig::Gige(a) => check_aravis(&mut problems, a),
        SourceConfig::Usb3vision(a) => {
            check_aravis(&mut problems, a);
            if a.packet_size.is_some() || a.packet_delay.is_some() {
                problems.push("source.packet_size, source.packet_delay: GigE only".to_string());
            }
        }
        SourceConfig::Rtsp(r) => check_rtsp(&mut problems, r),
        SourceConfig::V4l2(v) => check_v4l2(&mut problems, v),
        SourceConfig::File(f) => check_file(&mut problems, "source.path", &f.path),
        SourceConfig::Test(t) => check_test(&mut problems, t),
        SourceConfig::Pipeline(p) => check_raw(&mut problems, p, roi.is_some()),
    }
    if let Some(roi) = roi {
        check_roi(&mut problems, roi, frame_size(source));
    }
    problems
}

/// The source's frame size when the config fixes it, so an roi can be checked against it.
fn frame_size(source: &SourceConfig) -> Option<(u32, u32)> {
    match source {
        SourceConfig::Test(t) => Some((t.width, t.height)),
        SourceConfig::V4l2(V4l2Source { width: Some(w), height: Some(h), .. }) => Some((*w, *h)),
        _ => None,
    }
}

fn check_aravis(problems: &mut Vec<String>, a: &AravisSource) {
    if let Some(camera) = &a.camera {
        check_text(problems, "source.camera", camera, "use the name `arv-tool-0.8` lists");
    }
    if !PIXEL_FORMATS.contains(&a.pixel_format.as_str()) {
        problems.push(format!(
            "source.pixel_format: '{}' is not supported; use one of {}",
            printable(&a.pixel_format),
            PIXEL_FORMATS.join(", ")
        ));
    }
    check_range(problems, "source.exposure_us", a.exposure_us, 1.0, 1e8, "µs");
    check_range(problems, "source.gain_db", a.gain_db, 0.0, 500.0, "dB");
    check_range(problems, "source.fps", a.fps, 0.01, MAX_FPS, "frames per second");
    // Feature names and text values go to aravis' `Name=value` feature list, so both must be
    // GenICam names (no spaces); numbers and booleans are typed.
    for (name, value) in &a.features {
        if !is_genicam_name(name) {
            problems.push(format!("source.features: '{}' is not a GenICam feature name", printable(name)));
        }
        if let FeatureValue::Text(t) = value {
            if !is_genicam_name(t) {
                problems.push(format!(
                    "source.features.{}: '{}' is not an enumeration entry name (letters, digits, '_')",
                    printable(name),
                    printable(t)
                ));
            }
        }
    }
    if a.camera.is_none() && (!a.features.is_empty() || a.packet_size.is_some() || a.packet_delay.is_some()) {
        problems
            .push("source.camera: GenICam settings need the camera's name (as aravis lists it)".to_string());
    }
}

/// A GenICam node name: a letter, then letters, digits and '_'.
pub fn is_genicam_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_rtsp(problems: &mut Vec<String>, r: &RtspSource) {
    check_url(problems, &r.url);
    if !matches!(r.transport.as_str(), "tcp" | "udp") {
        problems.push(format!(
            "source.transport: '{}' is not a transport; use \"tcp\" or \"udp\"",
            printable(&r.transport)
        ));
    }
    if r.latency_ms > MAX_LATENCY_MS {
        problems.push(format!(
            "source.latency_ms: {} delays every verdict; use at most {MAX_LATENCY_MS}",
            r.latency_ms
        ));
    }
    if let Some(user) = &r.username {
        check_text(problems, "source.username", user, "write the user name only");
    }
    match (&r.username, &r.password_file) {
        (None, Some(_)) => problems
            .push("source.password_file: a password needs a user; set source.username too".to_string()),
        (_, Some(path)) => check_file(problems, "source.password_file", path),
        _ => {}
    }
}

/// An RTSP URL: the scheme, a host, URL characters only and no credentials (they would end up
/// in logs and status messages). The URL is never echoed back, in case it holds a secret.
fn check_url(problems: &mut Vec<String>, url: &str) {
    let Some(rest) = url.strip_prefix("rtsp://").or_else(|| url.strip_prefix("rtsps://")) else {
        problems.push("source.url: must start with rtsp:// or rtsps://".to_string());
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        problems.push(
            "source.url: contains credentials; put the user in source.username and the \
             password in a file named by source.password_file"
                .to_string(),
        );
    }
    if authority.is_empty() {
        problems.push("source.url: has no host; write rtsp://host[:port]/path".to_string());
    }
    if let Some(bad) = url.chars().find(|c| !is_url_char(*c)) {
        problems.push(format!(
            "source.url: {} is not allowed in a URL; percent-encode it (e.g. %20 for a space)",
            describe(bad)
        ));
    }
}

/// RFC 3986 unreserved, reserved and `%` characters.
fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

fn check_v4l2(problems: &mut Vec<String>, v: &V4l2Source) {
    match v.device.to_str() {
        None => problems.push("source.device: is not valid UTF-8; use a /dev path".to_string()),
        Some(d) if !d.starts_with("/dev/") => problems.push(format!(
            "source.device: '{}' is not a device; use a path like /dev/video0 or /dev/v4l/by-id/…",
            printable(d)
        )),
        Some(d) => check_text(problems, "source.device", d, "use the device path"),
    }
    if let Some(format) = &v.format {
        if !V4L2_FORMATS.contains(&format.as_str()) {
            problems.push(format!(
                "source.format: '{}' is not supported; use one of {} (or leave it out to negotiate)",
                printable(format),
                V4L2_FORMATS.join(", ")
            ));
        }
    }
    if v.width.is_some() != v.height.is_some() {
        problems.push("source.width: set source.width and source.height together".to_string());
    }
    check_side(problems, "source.width", v.width);
    check_side(problems, "source.height", v.height);
    check_range(problems, "source.fps", v.fps.map(f64::from), 1.0, MAX_FPS, "frames per second");
}

fn check_test(problems: &mut Vec<String>, t: &TestSource) {
    if !TEST_PATTERNS.contains(&t.pattern.as_str()) {
        problems.push(format!(
            "source.pattern: '{}' is not a videotestsrc pattern; use one of {}",
            printable(&t.pattern),
            TEST_PATTERNS.join(", ")
        ));
    }
    check_range(problems, "source.fps", Some(f64::from(t.fps)), 1.0, MAX_FPS, "frames per second");
    check_side(problems, "source.width", Some(t.width));
    check_side(problems, "source.height", Some(t.height));
}

/// A raw launch string is the expert's responsibility, but it must hand frames to us.
fn check_raw(problems: &mut Vec<String>, p: &RawPipeline, has_roi: bool) {
    if p.launch.contains('\0') {
        problems.push("source.launch: contains a NUL character; remove it".to_string());
    }
    if !has_named_appsink(&p.launch) {
        problems.push(
            "source.launch: has no `appsink name=sink`; end the pipeline with \
             `... ! videoconvert ! videoscale ! appsink name=sink`"
                .to_string(),
        );
    }
    if has_roi {
        problems.push(
            "roi: is not applied to a raw pipeline; remove it and put a videocrop in source.launch"
                .to_string(),
        );
    }
}

/// Whether some `!`-separated element of the launch string is an appsink named `sink`.
fn has_named_appsink(launch: &str) -> bool {
    launch.split('!').any(|element| {
        let mut words = element.split_whitespace();
        words.next() == Some("appsink") && words.any(|w| w == "name=sink" || w == "name=\"sink\"")
    })
}

/// A file that must exist: a video to play or a password to read.
fn check_file(problems: &mut Vec<String>, key: &str, path: &Path) {
    let Some(text) = path.to_str() else {
        problems.push(format!("{key}: is not valid UTF-8; rename the file"));
        return;
    };
    if text.is_empty() {
        problems.push(format!("{key}: is empty; name a file"));
        return;
    }
    check_text(problems, key, text, "rename the file");
    if !path.is_file() {
        problems.push(format!("{key}: {} is not a readable file; check the path", printable(text)));
    }
}

fn check_roi(problems: &mut Vec<String>, roi: Roi, frame: Option<(u32, u32)>) {
    if roi.width == 0 || roi.height == 0 {
        problems.push("roi: width and height must be at least 1 pixel".to_string());
        return;
    }
    let Some((fw, fh)) = frame else { return };
    if u64::from(roi.x) + u64::from(roi.width) > u64::from(fw) {
        problems.push(format!(
            "roi: x + width = {} exceeds the frame width {fw}; shrink or move the roi",
            u64::from(roi.x) + u64::from(roi.width)
        ));
    }
    if u64::from(roi.y) + u64::from(roi.height) > u64::from(fh) {
        problems.push(format!(
            "roi: y + height = {} exceeds the frame height {fh}; shrink or move the roi",
            u64::from(roi.y) + u64::from(roi.height)
        ));
    }
}

/// Free text that becomes a property value: not empty, no control characters.
fn check_text(problems: &mut Vec<String>, key: &str, value: &str, fix: &str) {
    if value.trim().is_empty() {
        problems.push(format!("{key}: is empty; {fix}"));
    } else if let Some(bad) = value.chars().find(|c| c.is_control()) {
        problems.push(format!("{key}: contains {}; {fix}", describe(bad)));
    }
}

fn check_range(problems: &mut Vec<String>, key: &str, value: Option<f64>, min: f64, max: f64, unit: &str) {
    if let Some(v) = value {
        if !(v.is_finite() && (min..=max).contains(&v)) {
            problems.push(format!("{key}: {v} is out of range; use {min} to {max} {unit}"));
        }
    }
}

fn check_side(problems: &mut Vec<String>, key: &str, value: Option<u32>) {
    if let Some(v) = value {
        if v == 0 || v > MAX_SIDE {
            problems.push(format!("{key}: {v} is out of range; use 1 to {MAX_SIDE} pixels"));
        }
    }
}

/// A character named so that it can be read in a log line.
fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_string(),
        '\n' => "a newline".to_string(),
        '\0' => "a NUL character".to_string(),
        c if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
        c => format!("'{c}'"),
    }
}

/// A config value shown in a message with control characters escaped, so a value containing a
/// newline cannot forge extra log lines.
fn printable(value: &str) -> String {
    value.escape_debug().to_string()
}
