//! Frame health (issue "Real camera frames", item 5) on a running daemon: a frozen stream (a
//! still checkerboard; videotestsrc's SMPTE bars carry a noise patch, so they change), a
//! dark and a bright camera (GStreamer `videotestsrc`) and an out-of-focus one (a washer
//! video the test blurs with GStreamer) each give verdict `invalid` with the right reason,
//! a camera-health alarm, and a `degraded` camera status; the same video unblurred is judged
//! as usual and never called invalid.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use broker::{assert_valid, Broker, Subscriber, TestDir};
use daemon::{config_head, washer_model, washer_video, Daemon, SIZE};

const WAIT: Duration = Duration::from_secs(60);

fn camera(id: &str, source: &str, health: &str) -> String {
    format!("\n[cameras.{id}]\nmodel = \"washer\"\n[cameras.{id}.source]\n{source}\n[cameras.{id}.health]\n{health}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_dark_bright_and_blurred_streams_are_invalid_with_a_camera_health_alarm() {
    let dir = TestDir::new("frame-health");
    let broker = Broker::start(&dir);
    let (sharp, blurred) = (dir.path("sharp.avi"), dir.path("blurred.avi"));
    tokio::task::block_in_place(|| {
        washer_model();
        washer_video(&sharp, 40, 10, vec![(0, 0)]);
        let status = Command::new("gst-launch-1.0")
            .args(["-q", "filesrc"])
            .arg(format!("location={}", sharp.display()))
            .args([
                "!",
                "decodebin",
                "!",
                "videoconvert",
                "!",
                "gaussianblur",
                "sigma=6",
                "!",
                "videoconvert",
            ])
            .args(["!", "jpegenc", "!", "avimux", "!", "filesink"])
            .arg(format!("location={}", blurred.display()))
            .output()
            .expect("gst-launch-1.0");
        let stderr = String::from_utf8_lossy(&status.stderr);
        assert!(status.status.success(), "blurring the test video (gaussianblur, gst-plugins-bad): {stderr}");
    });
    let node = "fh1";
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/#")).await;
    let test = |pattern: &str| {
        format!("kind = \"test\"\npattern = \"{pattern}\"\nfps = 10\nwidth = {SIZE}\nheight = {SIZE}")
    };
    let file = |path: &std::path::Path| {
        format!("kind = \"file\"\npath = \"{}\"\nloop = true\nrealtime = true", path.display())
    };
    let quick = "[cameras.X.health.alarm]\nk = 2\nn = 3\nclear_after = 2";
    let config = format!(
        "{head}{frozen}{dark}{bright}{blurred}{sharp}",
        head = config_head(node, &dir.0, broker.port),
        frozen = camera(
            "frozen",
            &test("checkers-8"),
            &format!("frozen_frames = 5\n{}", quick.replace('X', "frozen"))
        ),
        dark = camera("dark", &test("black"), &quick.replace('X', "dark")),
        bright = camera("bright", &test("white"), &quick.replace('X', "bright")),
        blurred = camera("blurred", &file(&blurred), &quick.replace('X', "blurred")),
        sharp = camera("sharp", &file(&sharp), &quick.replace('X', "sharp")),
    );
    let mut daemon = Daemon::start(&dir.0, node, &config);

    let expected = BTreeMap::from([
        ("frozen", "frozen"),
        ("dark", "underexposed"),
        ("bright", "overexposed"),
        ("blurred", "out of focus"),
    ]);
    let mut invalid = BTreeMap::new();
    let mut alarms = BTreeMap::new();
    let mut degraded = BTreeMap::new();
    let mut sharp_results = 0;
    let until = tokio::time::Instant::now() + WAIT;
    while invalid.len() < 4 || alarms.len() < 4 || degraded.len() < 4 || sharp_results < 20 {
        assert!(
            tokio::time::Instant::now() < until,
            "invalid {invalid:?}, alarms {alarms:?}, degraded {degraded:?}, sharp results {sharp_results}; log:\n{}",
            daemon.log()
        );
        let m = sub.expect("daemon messages", WAIT, |_| true).await;
        let Some(rest) = m.topic.strip_prefix(&format!("inspectd/{node}/")) else { continue };
        let Some((cam, leaf)) = rest.split_once('/') else { continue };
        let v = m.json();
        match leaf {
            "result" => {
                assert_valid("result", &v);
                if cam == "sharp" {
                    assert_ne!(v["verdict"], "invalid", "a sharp, changing video is judged: {v}");
                    sharp_results += 1;
                } else if v["verdict"] == "invalid" {
                    invalid
                        .entry(cam.to_string())
                        .or_insert(v["reason"].as_str().unwrap_or_default().to_string());
                }
            }
            "health/alarm" if v["event"] == "raised" => {
                assert_valid("alarm", &v);
                alarms.insert(cam.to_string(), v["reason"].as_str().unwrap_or_default().to_string());
            }
            "status" if v["state"] == "degraded" => {
                assert_valid("camera_status", &v);
                degraded.insert(cam.to_string(), v["reason"].as_str().unwrap_or_default().to_string());
            }
            _ => {}
        }
    }
    for (cam, code) in &expected {
        for (what, reasons) in [("result", &invalid), ("camera-health alarm", &alarms), ("status", &degraded)]
        {
            let reason = reasons.get(*cam).unwrap_or_else(|| panic!("no {what} for {cam}"));
            assert!(reason.starts_with(code), "{cam}: {what} reason '{reason}' should start with '{code}'");
        }
    }
    assert!(!invalid.contains_key("sharp") && !alarms.contains_key("sharp"));
    assert_eq!(daemon.signal_and_wait("TERM", WAIT), Some(0), "{}", daemon.log());
}
