//! A camera much faster than scoring (design.md §1: live edges drop the oldest frame and count
//! it): the daemon keeps up by dropping, so its memory and the age of its verdicts stay
//! bounded, and the drops show in the camera status.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::{Duration, Instant};

use broker::{assert_valid, Broker, Subscriber, TestDir};
use daemon::{config_head, washer_model, Daemon};

const SECOND: Duration = Duration::from_secs(1);
const MIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_faster_than_scoring_is_dropped_not_queued() {
    let dir = TestDir::new("daemon-overload");
    tokio::task::block_in_place(washer_model);
    let broker = Broker::start(&dir);
    let node = "overload1";
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/cam/#")).await;
    // A non-live videotestsrc renders as fast as the CPU allows, hundreds of frames a second;
    // `live = true` gives it the live camera's drop-oldest edge. One frame per scoring run.
    let config = format!(
        r#"{head}
[cameras.cam]
model = "washer"
[cameras.cam.source]
kind = "pipeline"
launch = "videotestsrc is-live=false pattern=ball ! video/x-raw,width=640,height=480 ! videoconvert ! videoscale ! video/x-raw,format=RGB,width=128,height=128 ! appsink name=sink"
live = true
# A small ball on black is more than 95 % clipped dark, and far from the washers' focus:
# frame health would call every frame invalid (tests/daemon_frame_health.rs tests it).
[cameras.cam.health]
enabled = false
"#,
        head = config_head(node, &dir.0, broker.port).replace("batch = 4", "batch = 1")
    );
    let daemon = Daemon::start(&dir.0, "daemon", &config);
    sub.expect("the first result", 30 * SECOND, |m| m.topic.ends_with("/result")).await;
    // Warm-up: allocator pools, ONNX Runtime arenas and the MQTT queues reach their size.
    sub.drain_for(3 * SECOND).await;

    let mut rss = vec![daemon.rss_kib()];
    let mut results = Vec::new();
    let mut dropped = Vec::new();
    let started = Instant::now();
    while started.elapsed() < 8 * SECOND {
        for msg in sub.drain_for(SECOND).await {
            let json = msg.json();
            if msg.topic.ends_with("/result") {
                assert_valid("result", &json);
                results.push(json);
            } else if msg.topic.ends_with("/cam/status") {
                assert_valid("camera_status", &json);
                assert_eq!(json["state"], "streaming");
                dropped.push(json["frames_dropped"].as_u64().expect("frames_dropped"));
            }
        }
        rss.push(daemon.rss_kib());
    }

    assert!(rss.iter().all(|&r| r > 0), "RSS readable: {rss:?}");
    let growth = rss.iter().max().unwrap() - rss[0];
    assert!(growth < 40 * MIB, "RSS grew by {} MiB over 8 s: {rss:?} KiB", growth / MIB);
    assert!(results.len() >= 16, "verdicts keep coming: {} in 8 s", results.len());
    let latencies: Vec<f64> = results.iter().map(|r| r["latency_ms"].as_f64().expect("latency")).collect();
    let worst = latencies.iter().cloned().fold(0.0, f64::max);
    assert!(worst < 1500.0, "verdicts stay fresh; worst latency {worst} ms of {latencies:?}");
    // The frames scoring could not take were dropped (counted), not queued: the sequence
    // numbers of the verdicts skip them.
    let seqs: Vec<u64> = results.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    let skipped = seqs.last().unwrap() - seqs[0] + 1 - seqs.len() as u64;
    assert!(dropped.len() >= 4, "periodic camera status (every second): {dropped:?}");
    assert!(dropped.windows(2).all(|w| w[0] <= w[1]) && dropped.last() > dropped.first(), "{dropped:?}");
    assert!(
        skipped > seqs.len() as u64,
        "more frames skipped ({skipped}) than scored ({}) by a source this fast",
        seqs.len()
    );
}
