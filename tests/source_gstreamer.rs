//! Camera sources and the video reader on real GStreamer pipelines: videotestsrc, and videos the
//! tests encode themselves (design.md §8).

#[path = "common/gst.rs"]
mod gst;

use std::sync::Arc;
use std::time::{Duration, Instant};

use inspectd::config::types::{FileSource, RawPipeline, Roi, SourceConfig, TestSource};
use inspectd::source::{sample_frames, SourceError, SourceSettings, SourceState, VideoReader};
use inspectd::telemetry::DropReason;

const SECOND: Duration = Duration::from_secs(1);

fn test_source(pattern: &str, fps: u32) -> SourceConfig {
    SourceConfig::Test(TestSource { pattern: pattern.into(), fps, width: 320, height: 240 })
}

fn file_source(path: &std::path::Path, looping: bool) -> SourceConfig {
    SourceConfig::File(FileSource { path: path.to_path_buf(), looping, realtime: false })
}

/// 30 frames of 160×120 at 10 fps, so frame i has pts i·100 ms.
fn thirty_frame_video(test: &str) -> std::path::PathBuf {
    let path = gst::scratch_dir(test).join("clip.avi");
    gst::encode_video(&path, "ball", 30, 160, 120, 10);
    path
}

/// Bytes no typefinder recognises (not text, no container magic).
fn garbage() -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn pts_ms(frame: &inspectd::flow::frame::Frame) -> u128 {
    frame.pts.expect("file frames have timestamps").as_millis()
}

#[test]
fn a_test_source_streams_model_sized_frames_and_stops_promptly() {
    let mut running = gst::start("test-cam", test_source("smpte", 30), (64, 48), 4);
    let frames = running.take(10, 5 * SECOND);
    assert!(frames.iter().all(|f| f.width == 64 && f.height == 48 && f.rgb.len() == 64 * 48 * 3));
    assert!(frames.iter().all(|f| &*f.camera == "test-cam"));
    assert!(frames.windows(2).all(|w| w[1].seq > w[0].seq), "sequence numbers increase");
    let status = running.wait_status("streaming with a frame rate", 5 * SECOND, |s| {
        s.state == SourceState::Streaming && s.fps > 0.0 && s.last_frame_at.is_some()
    });
    assert!(status.fps > 10.0 && status.fps < 60.0, "about 30 fps: {status:?}");
    let took = running.stop(2 * SECOND);
    assert!(took < SECOND, "shutdown took {took:?}");
    assert_eq!(running.status.borrow().state, SourceState::Stopped);
    // The edge drains what is queued and then reports its end.
    let _ = running.drain(SECOND);
}

#[test]
fn a_live_source_nobody_reads_drops_its_oldest_frames_and_counts_each_in_telemetry() {
    let mut running = gst::start("behind", test_source("smpte", 30), (32, 24), 2);
    // Nobody takes frames for a second: the edge holds 2, every later frame drops one.
    std::thread::sleep(Duration::from_millis(1000));
    running.stop(2 * SECOND);
    let status = running.status.borrow().clone();
    let t = &running.telemetry;
    let dropped = t.frames_dropped("behind", DropReason::QueueFull);
    assert!(status.frames >= 20, "about 30 frames in a second: {status:?}");
    assert_eq!(dropped, status.frames - 2, "all but the 2 the edge holds were dropped");
    assert_eq!(t.frames_captured("behind").get(), status.frames, "one count of captured frames");
    assert_eq!(running.frames.len(), 2);
}

#[test]
fn a_file_delivers_every_frame_in_order_with_back_pressure_then_stops() {
    let path = thirty_frame_video("file-all");
    let mut running = gst::start("replay", file_source(&path, false), (32, 32), 2);
    // A slow consumer: the blocking edge makes the source wait instead of dropping.
    std::thread::sleep(Duration::from_millis(300));
    let frames = running.drain(5 * SECOND);
    assert_eq!(frames.len(), 30);
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), (0..30).collect::<Vec<_>>());
    assert_eq!(frames.iter().map(pts_ms).collect::<Vec<_>>(), (0..30).map(|i| i * 100).collect::<Vec<_>>());
    assert_eq!(running.telemetry.frames_dropped("replay", DropReason::QueueFull), 0);
    running.join(2 * SECOND);
    let status = running.status.borrow().clone();
    assert_eq!((status.state, status.frames), (SourceState::Stopped, 30));
    assert_eq!(status.message.as_deref(), Some("end of stream"));
}

#[test]
fn a_looping_file_starts_over_and_stops_even_with_a_full_edge() {
    let path = thirty_frame_video("file-loop");
    let mut running = gst::start("loop", file_source(&path, true), (32, 32), 2);
    let frames = running.take(75, 5 * SECOND);
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), (0..75).collect::<Vec<_>>());
    assert_eq!(pts_ms(&frames[29]), 2900);
    assert_eq!(pts_ms(&frames[30]), 0, "the second pass starts at the beginning");
    assert_eq!(pts_ms(&frames[74]), 1400);
    // Nobody consumes now: the source waits on the full blocking edge, and must still stop.
    std::thread::sleep(Duration::from_millis(200));
    let took = running.stop(2 * SECOND);
    assert!(took < SECOND, "shutdown took {took:?}");
    assert_eq!(running.status.borrow().state, SourceState::Stopped);
}

#[test]
fn a_garbage_file_source_ends_in_error_naming_camera_and_element() {
    let path = gst::scratch_dir("file-garbage").join("broken.avi");
    std::fs::write(&path, garbage()).unwrap();
    let mut running = gst::start("cam-9", file_source(&path, true), (32, 32), 2);
    let status = running.wait_state(SourceState::Error, 5 * SECOND);
    let message = status.message.unwrap();
    assert!(message.starts_with("camera cam-9: /GstPipeline:cam-9/"), "{message}");
    assert!(message.contains("GstDecodeBin") || message.contains("typefind"), "{message}");
    running.join(2 * SECOND);
    assert!(running.drain(SECOND).is_empty());
}

#[test]
fn a_live_pipeline_that_ends_is_rebuilt_and_keeps_counting() {
    let launch = "videotestsrc is-live=true num-buffers=5 ! video/x-raw,framerate=50/1 \
                  ! videoconvert ! videoscale ! appsink name=sink";
    let source = SourceConfig::Pipeline(RawPipeline { launch: launch.into(), live: true });
    let mut running = gst::start("flaky", source, (16, 16), 4);
    let mut states = Vec::new();
    let deadline = Instant::now() + 10 * SECOND;
    let mut last_seq = 0;
    while last_seq < 12 {
        assert!(Instant::now() < deadline, "no rebuilt pipeline delivered frames; states {states:?}");
        if let Ok(Some(frame)) = running.frames.recv_timeout(Duration::from_millis(20)) {
            assert_eq!((frame.width, frame.height), (16, 16));
            last_seq = frame.seq;
        }
        let state = running.status.borrow().state;
        if states.last() != Some(&state) {
            states.push(state);
        }
    }
    assert!(states.contains(&SourceState::Reconnecting), "{states:?}");
    let message = running.wait_status("any", SECOND, |_| true).message;
    assert!(message.is_none() || message.as_deref().unwrap().contains("flaky"), "{message:?}");
    running.stop(2 * SECOND);
}

/// Connects to `port` (retrying while the pipeline starts listening) and writes `count` JPEG
/// frames 50 ms apart; the connection is returned open, so the receiver then sees silence.
fn send_jpegs(port: u16, count: usize) -> std::net::TcpStream {
    use std::io::Write;
    let deadline = Instant::now() + 10 * SECOND;
    let mut stream = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(stream) => break stream,
            Err(e) => assert!(Instant::now() < deadline, "the pipeline never listened on {port}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut jpeg).encode_image(&img).expect("jpeg");
    for _ in 0..count {
        stream.write_all(&jpeg).expect("the pipeline reads");
        std::thread::sleep(Duration::from_millis(50));
    }
    stream
}

#[test]
fn a_live_source_that_goes_silent_without_an_error_is_rebuilt_after_its_stall_timeout() {
    // A camera that loses power sends no error and no end of stream: its connection just goes
    // quiet. Here the camera is this test, writing JPEGs over a TCP connection it keeps open.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let launch = format!(
        "tcpserversrc host=127.0.0.1 port={port} do-timestamp=true ! jpegparse ! jpegdec \
         ! videoconvert ! videoscale ! appsink name=sink"
    );
    let settings = SourceSettings {
        camera: Arc::from("silent"),
        source: SourceConfig::Pipeline(RawPipeline { launch, live: true }),
        roi: None,
        width: 16,
        height: 16,
        stall_timeout: Duration::from_secs(1),
        trigger: None,
    };
    let mut running = gst::start_settings(settings, 64);
    let _quiet = send_jpegs(port, 10);
    let stopped = Instant::now();
    let status = running
        .wait_status("reconnecting after the silence", 10 * SECOND, |s| s.state == SourceState::Reconnecting);
    let silent = stopped.elapsed();
    assert!(status.frames >= 5, "frames arrived before the silence: {status:?}");
    let message = status.message.unwrap_or_default();
    assert!(
        message.contains("camera silent: no frame for") && message.contains("stall_timeout_s"),
        "{message}"
    );
    assert!(silent >= Duration::from_millis(800) && silent < 5 * SECOND, "noticed after {silent:?}");

    // The camera is back: the rebuilt pipeline listens again and delivers.
    let before = status.frames;
    let _again = send_jpegs(port, 10);
    let status = running.wait_status("frames again", 5 * SECOND, |s| s.frames > before);
    assert_eq!(status.state, SourceState::Streaming);
    running.stop(2 * SECOND);
}

#[test]
fn an_roi_crops_before_scaling() {
    // SMPTE bars at 320 px: seven bars about 46 px wide; bar 2 is yellow, bar 6 red.
    let yellow = Roi { x: 55, y: 10, width: 28, height: 100 };
    let red = Roi { x: 238, y: 10, width: 28, height: 100 };
    for (roi, want) in [(yellow, "yellow"), (red, "red")] {
        let mut running = gst::start_with_roi("roi", test_source("smpte", 30), Some(roi), (16, 16), 2);
        let frame = running.take(1, 5 * SECOND).remove(0);
        assert_eq!((frame.width, frame.height), (16, 16));
        let (r, g, b) = gst::mean_rgb(&frame, 0, 0, 16, 16);
        let is =
            |hi: [bool; 3]| [r, g, b].iter().zip(hi).all(|(v, h)| if h { *v > 150.0 } else { *v < 60.0 });
        let ok = if want == "yellow" { is([true, true, false]) } else { is([true, false, false]) };
        assert!(ok, "{want} bar expected, got mean ({r:.0}, {g:.0}, {b:.0})");
        running.stop(2 * SECOND);
    }
}

#[test]
fn the_video_reader_reads_every_frame_and_knows_the_length() {
    let path = thirty_frame_video("reader");
    let reader = VideoReader::open(&path, None, 40, 30).unwrap();
    assert_eq!(reader.frame_rate(), Some(10.0));
    assert_eq!(reader.frame_count(), Some(30));
    assert_eq!(reader.duration(), Some(Duration::from_secs(3)));
    let frames: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(frames.len(), 30);
    assert!(frames.iter().all(|f| f.width == 40 && f.height == 30 && f.rgb.len() == 40 * 30 * 3));
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), (0..30).collect::<Vec<_>>());
    assert_eq!(&*frames[0].camera, "clip.avi");
}

#[test]
fn broken_videos_fail_with_the_file_name_and_the_reason() {
    let dir = gst::scratch_dir("reader-broken");
    let garbage = dir.join("garbage.avi");
    std::fs::write(&garbage, self::garbage()).unwrap();
    let err = VideoReader::open(&garbage, None, 32, 32).expect_err("garbage is refused");
    assert!(matches!(err, SourceError::File { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.avi") && err.to_string().contains("type of stream"), "{err}");

    // Matroska states its duration up front; AVI does not help here: avidemux rebuilds a
    // missing index by scanning and ends a truncated file cleanly, just early.
    let complete = dir.join("complete.mkv");
    gst::encode_video(&complete, "ball", 30, 160, 120, 10);
    let whole = std::fs::read(&complete).unwrap();
    let truncated = dir.join("truncated.mkv");
    std::fs::write(&truncated, &whole[..whole.len() * 2 / 5]).unwrap();
    let outcome: Result<Vec<_>, _> = VideoReader::open(&truncated, None, 32, 32).and_then(|r| r.collect());
    let err = outcome.expect_err("a truncated file is reported").to_string();
    assert!(err.contains("truncated.mkv") && err.contains("of the 30 frames"), "{err}");

    let missing =
        VideoReader::open(dir.join("missing.avi"), None, 32, 32).expect_err("a missing file is refused");
    assert!(missing.to_string().contains("missing.avi"), "{missing}");
}

#[test]
fn sample_frames_spreads_over_the_whole_video() {
    let path = thirty_frame_video("sample");
    let frames = sample_frames(&path, 32, 32, 5).unwrap();
    let times: Vec<u128> = frames.iter().map(pts_ms).collect();
    assert_eq!(times.len(), 5);
    assert_eq!((times[0], times[4]), (0, 2900), "first and last frame: {times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] >= 400 && w[1] - w[0] <= 1000), "evenly spread: {times:?}");
    assert_eq!(sample_frames(&path, 32, 32, 100).unwrap().len(), 30, "a short video gives all it has");
}
