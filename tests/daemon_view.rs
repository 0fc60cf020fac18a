//! The daemon with a tiled model: a file camera delivers 512×384 frames at their own
//! resolution, results carry regions in sensor pixels where the defect is, and the alarm's
//! evidence is the whole frame, heatmap and boxes included, at that resolution.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use broker::{assert_valid, Broker, Subscriber, TestDir};
use daemon::Daemon;
use inspectd::synth::frames::{frame_good, write_frame_set, FrameSetSpec};
use inspectd::synth::Category;
use inspectd::util::video_writer::VideoWriter;

const W: u32 = 512;
const H: u32 = 384;
/// Where the blot of the defect frames lies, in sensor pixels.
const BLOT: (u32, u32, u32) = (300, 200, 14);

fn spec() -> FrameSetSpec {
    FrameSetSpec {
        category: Category::Fabric,
        width: W,
        height: H,
        train_good: 10,
        test_good: 0,
        test_defect: 0,
        seed: 5,
    }
}

/// Trains a 128 px tiled model on good 512×384 fabric frames.
fn train(root: &Path) -> std::path::PathBuf {
    let data = write_frame_set(&spec(), root).unwrap();
    let model = root.join("model");
    let out = Command::new(env!("CARGO_BIN_EXE_inspectd"))
        .args(["train", data.to_str().unwrap(), "--out", model.to_str().unwrap()])
        .args(["--tile", "128", "--tile-overlap", "16", "--epochs", "3", "--seed", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "train failed: {}", String::from_utf8_lossy(&out.stderr));
    model
}

/// 8 good frames, 8 with a dark blot, 8 good again, at 4 fps.
fn video(path: &Path) {
    let mut writer = VideoWriter::create(path, W, H, 4).unwrap();
    for i in 0..24 {
        let mut frame = frame_good(&spec(), 1000 + i);
        if (8..16).contains(&i) {
            let (bx, by, s) = BLOT;
            for y in by..by + s {
                for x in bx..bx + s {
                    frame.put_pixel(x, y, image::Rgb([10, 10, 10]));
                }
            }
        }
        writer.push(frame).unwrap();
    }
    writer.finish().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiled_model_reports_regions_and_evidence_in_sensor_pixels() {
    let dir = TestDir::new("daemon-view");
    let line = dir.path("line.avi");
    let model = tokio::task::block_in_place(|| {
        video(&line);
        train(&dir.0)
    });
    let broker = Broker::start(&dir);
    let mut sub = Subscriber::connect(broker.port, "inspectd/view1/#").await;
    let config = format!(
        r#"
[node]
id = "view1"
state_dir = "{state}"
shutdown_deadline_s = 5.0

[mqtt]
port = {port}

[http]
bind = ""

[models.tiled]
path = "{model}"

[cameras.line]
model = "tiled"
[cameras.line.source]
kind = "file"
path = "{video}"
[cameras.line.alarm]
k = 2
n = 3
[cameras.line.health]
enabled = false
"#,
        state = dir.0.join("state").display(),
        port = broker.port,
        model = model.display(),
        video = line.display(),
    );
    let mut daemon = Daemon::start(&dir.0, "view", &config);
    let ng = sub
        .expect("an NG result", Duration::from_secs(90), |m| {
            m.topic.ends_with("/line/result") && m.json()["verdict"] == "NG"
        })
        .await
        .json();
    assert_valid("result", &ng);
    let (bx, by, s) = BLOT;
    let found = ng["regions"].as_array().unwrap().iter().any(|r| {
        let [x, y, w, h] = [&r["x"], &r["y"], &r["w"], &r["h"]].map(|v| v.as_u64().unwrap() as u32);
        // Within one tile stride (112 px) of the blot, in the frame's own pixels.
        x < bx + s + 112 && bx < x + w + 112 && y < by + s + 112 && by < y + h + 112
    });
    assert!(found, "no region near the blot at ({bx}, {by}): {ng}");
    let raised = sub
        .expect("the alarm", Duration::from_secs(60), |m| {
            m.topic.ends_with("/line/alarm") && m.json()["event"] == "raised"
        })
        .await
        .json();
    assert_valid("alarm", &raised);
    let near = raised["regions"].as_array().unwrap().iter().any(|r| {
        let (x, y) = (r["x"].as_u64().unwrap() as u32, r["y"].as_u64().unwrap() as u32);
        x.abs_diff(bx) <= 112 && y.abs_diff(by) <= 112
    });
    assert!(near, "the raise carries the blot's region in sensor pixels: {raised}");
    for file in [&raised["evidence"]["frame"], &raised["evidence"]["heatmap"]] {
        let path = file.as_str().unwrap_or_else(|| panic!("the raise has evidence: {raised}"));
        let img = image::open(path).unwrap();
        assert_eq!((img.width(), img.height()), (W, H), "{path} is at the camera's resolution");
    }
    let log = daemon.log();
    assert!(!log.contains("Frame dropped"), "{log}");
    assert_eq!(daemon.signal_and_wait("TERM", Duration::from_secs(10)), Some(0), "{}", daemon.log());
}
