use std::path::PathBuf;

use super::*;
use crate::config::types::{FileSource, RawPipeline};

fn test_source(pattern: &str) -> SourceConfig {
    SourceConfig::Test(TestSource { pattern: pattern.into(), fps: 10, width: 320, height: 240 })
}

fn gige(camera: &str, pixel_format: &str) -> SourceConfig {
    SourceConfig::Gige(AravisSource {
        camera: Some(camera.into()),
        pixel_format: pixel_format.into(),
        ..AravisSource::default()
    })
}

fn rtsp(url: &str) -> SourceConfig {
    SourceConfig::Rtsp(RtspSource {
        url: url.into(),
        transport: "tcp".into(),
        latency_ms: 200,
        username: None,
        password_file: None,
    })
}

fn raw(launch: &str) -> SourceConfig {
    SourceConfig::Pipeline(RawPipeline { launch: launch.into(), live: true })
}

fn problems(source: &SourceConfig) -> Vec<String> {
    match launch_string(source, None, 64, 64) {
        Err(SourceError::Invalid { problems }) => problems,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

/// A file whose name is itself an injection attempt; validation wants the file to exist.
fn hostile_file() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("inspectd-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.avi ! filesink location=pwn");
    std::fs::write(&path, b"not a video").unwrap();
    path
}

#[test]
fn test_source_renders_with_the_tail_at_model_size() {
    let launch = launch_string(&test_source("ball"), None, 224, 160).unwrap();
    assert_eq!(
        launch,
        "videotestsrc name=src pattern=ball is-live=true ! video/x-raw,width=320,height=240,framerate=10/1 \
         ! videoconvert ! videoscale ! video/x-raw,format=RGB,width=224,height=160 ! appsink name=sink"
    );
}

#[test]
fn aravis_maps_pixel_formats_and_frame_rate_and_never_pastes_genicam_values() {
    let mut source = gige("Aravis-Fake-GV01", "bayer_bggr8");
    if let SourceConfig::Gige(a) = &mut source {
        a.exposure_us = Some(1500.0);
        a.gain_db = Some(3.5);
        a.fps = Some(12.5);
    }
    let launch = launch_string(&source, None, 64, 64).unwrap();
    assert!(launch.starts_with(
        "aravissrc name=src ! video/x-bayer,format=bggr,framerate=25/2 ! bayer2rgb ! videoconvert"
    ));
    assert!(
        !launch.contains("1500") && !launch.contains("3.5"),
        "exposure and gain go through aravis: {launch}"
    );
    let mono = launch_string(&gige("cam", "mono8"), None, 64, 64).unwrap();
    assert!(mono.starts_with("aravissrc name=src ! video/x-raw,format=GRAY8 ! videoconvert"), "{mono}");
    let rgb = launch_string(&gige("cam", "rgb8"), None, 64, 64).unwrap();
    assert!(rgb.starts_with("aravissrc name=src ! video/x-raw,format=RGB ! videoconvert"), "{rgb}");
}

#[test]
fn roi_adds_a_named_crop_before_scaling() {
    let roi = Roi { x: 10, y: 20, width: 100, height: 50 };
    let launch = launch_string(&test_source("smpte"), Some(roi), 64, 64).unwrap();
    assert!(launch.contains(
        "! videoconvert ! video/x-raw,format=RGB ! videocrop name=roi left=10 top=20 right=-1 bottom=-1 \
         ! video/x-raw,width=100,height=50 ! videoconvert ! videoscale"
    ));
    let outside = Roi { x: 300, y: 0, width: 100, height: 50 };
    let found = match launch_string(&test_source("smpte"), Some(outside), 64, 64) {
        Err(SourceError::Invalid { problems }) => problems,
        other => panic!("{other:?}"),
    };
    assert_eq!(found, ["roi: x + width = 400 exceeds the frame width 320; shrink or move the roi"]);
}

#[test]
fn a_camera_name_cannot_add_elements() {
    let source = gige("x ! filesink location=/tmp/pwn", "bayer_bggr8");
    let launch = launch_string(&source, None, 64, 64).unwrap();
    assert!(!launch.contains("filesink") && !launch.contains("pwn"), "{launch}");
    let newline = problems(&gige("cam\n! filesink location=/tmp/pwn", "mono8"));
    assert_eq!(newline, ["source.camera: contains a newline; use the name `arv-tool-0.8` lists"]);
}

#[test]
fn a_url_cannot_break_out_and_credentials_are_refused_without_echo() {
    let found = problems(&rtsp("rtsp://cam/stream\" ! filesink location=/tmp/pwn"));
    assert!(found.iter().any(|p| p.starts_with("source.url: '\"' is not allowed")), "{found:?}");
    let found = problems(&rtsp("rtsp://admin:hunter2@10.0.0.5/stream"));
    assert!(found[0].starts_with("source.url: contains credentials"), "{found:?}");
    assert!(found.iter().all(|p| !p.contains("hunter2")));
    assert_eq!(problems(&rtsp("http://cam/x")), ["source.url: must start with rtsp:// or rtsps://"]);
    let launch = launch_string(&rtsp("rtsp://10.0.0.5:554/stream?ch=1"), None, 64, 64).unwrap();
    assert!(launch.starts_with("rtspsrc name=src protocols=tcp latency=200 ! application/x-rtp,media=video"));
    assert!(!launch.contains("10.0.0.5"), "the URL is a property, not launch text: {launch}");
}

#[test]
fn a_file_path_is_a_property_not_launch_text() {
    let path = hostile_file();
    let source = SourceConfig::File(FileSource { path: path.clone(), looping: false, realtime: false });
    let launch = launch_string(&source, None, 64, 64).unwrap();
    assert!(launch.starts_with("filesrc name=src ! decodebin ! video/x-raw ! videoconvert"));
    assert!(!launch.contains("filesink") && !launch.contains("pwn"), "{launch}");
    let missing = SourceConfig::File(FileSource {
        path: "/nonexistent/clip.avi".into(),
        looping: false,
        realtime: false,
    });
    assert_eq!(
        problems(&missing),
        ["source.path: /nonexistent/clip.avi is not a readable file; check the path"]
    );
}

#[test]
fn unknown_pattern_names_the_key_and_the_choices() {
    let found = problems(&test_source("foo"));
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("source.pattern: 'foo' is not a videotestsrc pattern; use one of smpte, snow,")
    );
    let escaped = problems(&test_source("ball\nFAKE LOG LINE"));
    assert!(escaped[0].contains("'ball\\nFAKE LOG LINE'"), "a newline is shown escaped: {escaped:?}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let source = SourceConfig::Test(TestSource { pattern: "nope".into(), fps: 0, width: 0, height: 240 });
    let found = match launch_string(&source, Some(Roi { x: 0, y: 0, width: 0, height: 5 }), 0, 64) {
        Err(SourceError::Invalid { problems }) => problems,
        other => panic!("{other:?}"),
    };
    let keys: Vec<&str> = found.iter().map(|p| p.split(':').next().unwrap()).collect();
    assert_eq!(keys, ["source.pattern", "source.fps", "source.width", "roi", "model input size"]);
}

#[test]
fn raw_pipelines_must_end_in_the_named_appsink() {
    let found = problems(&raw("videotestsrc ! videoconvert ! autovideosink"));
    assert!(found[0].starts_with("source.launch: has no `appsink name=sink`"), "{found:?}");
    assert!(!problems(&raw("videotestsrc ! appsink name=other")).is_empty());
    let ok = "videotestsrc ! videoconvert ! videoscale ! appsink name=sink max-buffers=1";
    assert_eq!(launch_string(&raw(ok), None, 64, 64).unwrap(), ok);
    let with_roi = launch_string(&raw(ok), Some(Roi { x: 0, y: 0, width: 8, height: 8 }), 64, 64);
    assert!(matches!(with_roi, Err(SourceError::Invalid { problems }) if problems[0].starts_with("roi:")));
}

#[test]
fn v4l2_caps_follow_the_format() {
    let v4l2 = |format: Option<&str>| {
        SourceConfig::V4l2(V4l2Source {
            device: "/dev/video0".into(),
            format: format.map(String::from),
            width: Some(640),
            height: Some(480),
            fps: Some(30),
        })
    };
    let mjpeg = launch_string(&v4l2(Some("mjpeg")), None, 64, 64).unwrap();
    assert!(mjpeg.starts_with(
        "v4l2src name=src ! image/jpeg,width=640,height=480,framerate=30/1 ! jpegdec ! videoconvert"
    ));
    let yuy2 = launch_string(&v4l2(Some("YUY2")), None, 64, 64).unwrap();
    assert!(yuy2.starts_with(
        "v4l2src name=src ! video/x-raw,format=YUY2,width=640,height=480,framerate=30/1 ! videoconvert"
    ));
    assert!(problems(&v4l2(Some("h264")))[0].starts_with("source.format: 'h264' is not supported"));
    let relative = SourceConfig::V4l2(V4l2Source {
        device: "video0".into(),
        format: None,
        width: None,
        height: None,
        fps: None,
    });
    assert!(problems(&relative)[0].starts_with("source.device: 'video0' is not a device"));
}

#[test]
fn an_unfilled_placeholder_is_an_error_not_launch_text() {
    let err = render("test", "# {ignored} in a comment\nvideotestsrc pattern={pattern}", &[]).unwrap_err();
    assert!(matches!(err, SourceError::Template { kind: "test", ref name } if name == "pattern"));
}

#[test]
fn every_template_parses_in_gstreamer() {
    gstreamer::init().unwrap();
    let path = hostile_file();
    let sources = [
        gige("cam", "bayer_rggb8"),
        SourceConfig::Usb3vision(AravisSource {
            camera: None,
            pixel_format: "mono8".into(),
            fps: Some(30.0),
            ..AravisSource::default()
        }),
        rtsp("rtsp://127.0.0.1:8554/test"),
        SourceConfig::V4l2(V4l2Source {
            device: "/dev/video0".into(),
            format: Some("mjpeg".into()),
            width: None,
            height: None,
            fps: None,
        }),
        SourceConfig::File(FileSource { path, looping: false, realtime: false }),
        test_source("smpte"),
    ];
    for source in &sources {
        let launch = launch_string(source, Some(Roi { x: 0, y: 0, width: 16, height: 16 }), 64, 48).unwrap();
        let parsed = gstreamer::parse::launch(&launch);
        assert!(parsed.is_ok(), "{}: {launch}: {:?}", source.kind(), parsed.err());
    }
}

#[test]
fn fractional_frame_rates_become_exact_fractions() {
    assert_eq!(fraction(30.0), (30, 1));
    assert_eq!(fraction(12.5), (25, 2));
    assert_eq!(fraction(29.97), (2997, 100));
}
