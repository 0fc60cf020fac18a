//! A real RTSP camera: a test RTSP server (GStreamer's rtsp-server library, in its own process
//! so the test can kill it like a camera losing power) streams a recorded video. Killing it and
//! starting it again makes the daemon's RTSP camera go `reconnecting` and come back with
//! backoff, while a second camera keeps being scored without a gap.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::{Broker, Subscriber, TestDir};
use daemon::{config_head, test_camera, washer_video, Daemon};

const SECOND: Duration = Duration::from_secs(1);
const PORT_ENV: &str = "INSPECTD_TEST_RTSP_PORT";
const VIDEO_ENV: &str = "INSPECTD_TEST_RTSP_VIDEO";

/// Not a test: the RTSP server, run in a child process by the test below (this same binary
/// with `--ignored --exact`), serving `/line` until it is killed.
#[test]
#[ignore = "helper process of the RTSP camera test"]
fn rtsp_server_process() {
    use gstreamer_rtsp_server::prelude::*;
    let (Ok(port), Ok(video)) = (std::env::var(PORT_ENV), std::env::var(VIDEO_ENV)) else { return };
    gstreamer::init().unwrap();
    let server = gstreamer_rtsp_server::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&port);
    let factory = gstreamer_rtsp_server::RTSPMediaFactory::new();
    factory
        .set_launch(&format!("( filesrc location={video} ! avidemux ! jpegdec ! videoconvert ! video/x-raw,format=I420 ! jpegenc ! rtpjpegpay name=pay0 )"));
    factory.set_shared(true);
    server.mount_points().unwrap().add_factory("/line", factory);
    let _attached = server.attach(None).unwrap();
    println!("serving");
    gstreamer::glib::MainLoop::new(None, false).run();
}

fn start_server(port: u16, video: &Path) -> Child {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "rtsp_server_process", "--nocapture"])
        .env(PORT_ENV, port.to_string())
        .env(VIDEO_ENV, video)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + 10 * SECOND;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "the RTSP server did not listen on {port}");
        std::thread::sleep(SECOND / 20);
    }
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_reconnects_after_its_server_restarts_while_another_keeps_scoring() {
    let dir = TestDir::new("daemon-rtsp");
    let video = dir.path("line.avi");
    // 60 s at 10 fps, played in real time by the server: longer than the test. RTP/JPEG
    // carries 4:2:0 JPEG only, so the server re-encodes the frames.
    tokio::task::block_in_place(|| washer_video(&video, 600, 10, vec![]));
    let port = free_port();
    let mut server = start_server(port, &video);
    let broker = Broker::start(&dir);
    let node = "rtsp";
    let config = format!(
        r#"{head}
[cameras.ip]
model = "washer"
[cameras.ip.source]
kind = "rtsp"
url = "rtsp://127.0.0.1:{port}/line"
transport = "tcp"
latency_ms = 50
"#,
        head = config_head(node, &dir.0, broker.port)
    ) + &test_camera("live", 5);
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/+/+")).await;
    let _daemon = Daemon::start(&dir.0, node, &config);
    let state = |m: &broker::Received, camera: &str, s: &str| {
        m.topic == format!("inspectd/{node}/{camera}/status") && m.json()["state"] == s
    };
    sub.expect("the RTSP camera's results", 60 * SECOND, |m| m.topic.ends_with("/ip/result")).await;

    // The camera loses power; the other camera's results must keep coming meanwhile.
    server.kill().unwrap();
    server.wait().unwrap();
    let killed = Instant::now();
    let mut last_live = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut reconnecting = false;
    while !reconnecting || killed.elapsed() < 4 * SECOND {
        assert!(
            killed.elapsed() < 30 * SECOND,
            "the RTSP camera did not report reconnecting within 30 s of its server going away"
        );
        let m = sub.expect("traffic during the outage", 30 * SECOND, |_| true).await;
        if m.topic.ends_with("/live/result") {
            longest_gap = longest_gap.max(last_live.elapsed());
            last_live = Instant::now();
        }
        reconnecting |= state(&m, "ip", "reconnecting");
    }
    assert!(longest_gap < 2 * SECOND, "the live camera paused {longest_gap:?} during the outage");

    // Power back: the camera reconnects by itself and its results resume.
    let mut server = start_server(port, &video);
    let restarted = Instant::now();
    sub.expect("the RTSP camera streaming again", 60 * SECOND, |m| state(m, "ip", "streaming")).await;
    sub.expect("the RTSP camera's results again", 30 * SECOND, |m| m.topic.ends_with("/ip/result")).await;
    assert!(restarted.elapsed() < 45 * SECOND, "reconnect took {:?}", restarted.elapsed());
    server.kill().unwrap();
    let _ = server.wait();
}
