//! The set-up page and its API (`/ui/`, `/api/`) on a running daemon: off by default;
//! cameras and their recent scores readable; a threshold changed only with the token, through
//! the runtime-threshold path (echoed on MQTT); the token never logged. The page itself is
//! loaded in headless Chromium against a daemon playing a video with defect episodes: the
//! live view updates, the chart has points and the threshold line, alarms reach the review
//! list, and acknowledging, marking as good and applying a threshold work from the page.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/browser.rs"]
mod browser;
#[path = "common/daemon.rs"]
mod daemon;

use std::net::SocketAddr;
use std::time::Duration;

use broker::{Broker, Subscriber, TestDir};
use browser::Browser;
use daemon::{config_head, test_camera, washer_model, washer_video, Daemon};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "Zq7-set-up-token-91";

/// One HTTP/1.1 request on its own connection: (status, JSON body).
async fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr")
}

fn start(dir: &TestDir, node: &str, port: u16, http: &str) -> Daemon {
    let head = config_head(node, &dir.0, port).replace("[http]\nbind = \"\"\n", http);
    Daemon::start(&dir.0, node, &format!("{head}{}", test_camera("cam", 5)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reads_cameras_and_scores_and_changes_a_threshold_only_with_the_token() {
    let dir = TestDir::new("service-api");
    let broker = Broker::start(&dir);
    tokio::task::block_in_place(daemon::washer_model);

    // Off by default.
    let off = free_addr();
    let mut daemon = start(&dir, "api0", broker.port, &format!("[http]\nbind = \"{off}\"\n"));
    let (status, body) = poll_status(off, "/api/cameras").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("http.ui = true")), "{body}");
    let (status, body) = call(off, "GET", "/ui/", None, "").await;
    assert_eq!(status, 404, "the page is off by default too: {body}");
    assert_eq!(daemon.signal_and_wait("TERM", WAIT), Some(0));

    let addr = free_addr();
    let http = format!("[http]\nbind = \"{addr}\"\nui = true\nui_token = \"{TOKEN}\"\n");
    let mut daemon = start(&dir, "api1", broker.port, &http);
    let mut sub = Subscriber::connect(broker.port, "inspectd/api1/cam/threshold/state").await;

    // Cameras and scores.
    let cameras = wait_for(addr, "/api/cameras", |v| v[0]["last"]["threshold"].is_number()).await;
    assert_eq!((cameras[0]["id"].as_str(), cameras[0]["state"].as_str()), (Some("cam"), Some("streaming")));
    let scores =
        wait_for(addr, "/api/cameras/cam/scores", |v| v["points"].as_array().is_some_and(|p| p.len() >= 3))
            .await;
    let points = scores["points"].as_array().expect("points");
    assert!(points.windows(2).all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64()), "oldest first");
    assert!(points.iter().all(|p| p["score"].is_number() && p["threshold"].is_number()));
    assert_eq!(call(addr, "GET", "/api/cameras/nope/scores", None, "").await.0, 404);
    // Only the points after a given frame, as the page polls.
    let held = points[points.len() - 2]["seq"].as_u64().expect("seq");
    let (status, newer) = call(addr, "GET", &format!("/api/cameras/cam/scores?since={held}"), None, "").await;
    assert_eq!(status, 200, "{newer}");
    let newer = newer["points"].as_array().expect("points").clone();
    assert!(!newer.is_empty() && newer.iter().all(|p| p["seq"].as_u64() > Some(held)), "{newer:?}");
    assert_eq!(call(addr, "GET", "/api/cameras/cam/scores?since=soon", None, "").await.0, 400);

    // Live views: a bounded number at once, and a closed one frees its place.
    let mut views = Vec::new();
    for _ in 0..4 {
        let (head, stream) = open_stream(addr, "/api/cameras/cam/live.mjpg?fps=2").await;
        assert!(head.contains(" 200 ") && head.contains("multipart/x-mixed-replace"), "{head}");
        views.push(stream);
    }
    let (head, _) = open_stream(addr, "/api/cameras/cam/live.mjpg").await;
    assert!(head.contains(" 503 "), "a fifth view: {head}");
    assert_eq!(call(addr, "GET", "/api/cameras/cam/live.mjpg?fps=99", None, "").await.0, 400);
    drop(views);
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let (head, _) = open_stream(addr, "/api/cameras/cam/live.mjpg").await;
        if head.contains(" 200 ") {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "closed views never freed their places: {head}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Changes need the token.
    let set = r#"{"threshold": 5.5}"#;
    let path = "/api/cameras/cam/threshold";
    assert_eq!(call(addr, "POST", path, None, set).await.0, 401);
    assert_eq!(call(addr, "POST", path, Some("Zq7-set-up-token-9"), set).await.0, 401);
    let (status, body) = call(addr, "POST", path, Some(TOKEN), r#"{"threshold": "high"}"#).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(addr, "POST", path, Some(TOKEN), set).await;
    assert_eq!(status, 202, "{body}");
    let state = sub
        .expect("threshold set from the API", WAIT, |m| m.json()["runtime"]["set_by"] == "ui")
        .await
        .json();
    assert_eq!(state["threshold"], 5.5);
    wait_for(addr, "/api/cameras", |v| v[0]["last"]["threshold"] == 5.5).await;

    assert_eq!(daemon.signal_and_wait("TERM", WAIT), Some(0), "{}", daemon.log());
    assert!(!daemon.log().contains(TOKEN), "the token must never be logged");
}

/// Sends a GET and returns the response head, keeping the connection (a stream) open.
async fn open_stream(addr: SocketAddr, path: &str) -> (String, tokio::net::TcpStream) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n =
            tokio::time::timeout(WAIT, stream.read(&mut byte)).await.expect("a response head").expect("read");
        assert!(n == 1, "closed before the head: {}", String::from_utf8_lossy(&got));
        got.push(byte[0]);
    }
    (String::from_utf8_lossy(&got).into_owned(), stream)
}

/// The first answer once the endpoint listens.
async fn poll_status(addr: SocketAddr, path: &str) -> (u16, Value) {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return call(addr, "GET", path, None, "").await;
        }
        assert!(tokio::time::Instant::now() < until, "{addr} never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `path` until its JSON satisfies `want`.
async fn wait_for(addr: SocketAddr, path: &str, want: impl Fn(&Value) -> bool) -> Value {
    let until = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = poll_status(addr, path).await;
        if status == 200 && want(&body) {
            return body;
        }
        assert!(tokio::time::Instant::now() < until, "{path} never became what the test waits for: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_set_up_page_works_in_a_real_browser() {
    let dir = TestDir::new("service-ui");
    let broker = Broker::start(&dir);
    let video = dir.path("line.avi");
    // Defects in frames 20-44 of every 60 (6 s at 10 fps): a latched alarm per episode.
    tokio::task::block_in_place(|| washer_video(&video, 60, 10, vec![(20, 25)]));
    let model = dir.path("model");
    copy_dir(washer_model(), &model);
    let addr = free_addr();
    let head = config_head("ui1", &dir.0, broker.port)
        .replace(
            "[http]\nbind = \"\"\n",
            &format!("[http]\nbind = \"{addr}\"\nui = true\nui_token = \"{TOKEN}\"\n"),
        )
        .replace(&washer_model().display().to_string(), &model.display().to_string());
    let camera = format!(
        "\n[cameras.cam]\nmodel = \"washer\"\n[cameras.cam.source]\nkind = \"file\"\npath = \"{}\"\nloop = true\n\
         realtime = true\n[cameras.cam.alarm]\nk = 2\nn = 4\nclear_after = 3\nlatch = true\n",
        video.display()
    );
    let mut daemon = Daemon::start(&dir.0, "ui1", &format!("{head}{camera}"));
    let mut sub = Subscriber::connect(broker.port, "inspectd/ui1/cam/#").await;
    wait_for(addr, "/api/cameras", |v| v[0]["last"]["threshold"].is_number()).await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let long = Duration::from_secs(40);

    let mut page = tokio::task::block_in_place(|| {
        let mut page = Browser::start(&dir.path("chromium"), 1280, 1100);
        page.navigate(&format!("http://{addr}/ui/"));
        page
    });
    tokio::task::block_in_place(|| {
        // The live view updates: two screenshots of it a second apart differ.
        page.wait_for("the live view", "document.getElementById('live').naturalWidth > 0", WAIT);
        let first = page.screenshot(Some("#live"));
        std::thread::sleep(Duration::from_millis(1500));
        let second = page.screenshot(Some("#live"));
        std::fs::write(shots.join("live-1.png"), &first).unwrap();
        std::fs::write(shots.join("live-2.png"), &second).unwrap();
        assert_ne!(first, second, "the live view did not change in 1.5 s");

        // The chart has points and the threshold line.
        let n = page.wait_for(
            "ten points on the chart",
            "(document.querySelector('#chart polyline.scores')?.points.numberOfItems ?? 0) >= 10 \
             && document.querySelector('#chart polyline.scores').points.numberOfItems",
            WAIT,
        );
        assert!(n.as_u64() >= Some(10), "{n}");
        let threshold =
            page.eval("document.querySelector('#chart polyline.threshold')?.points.numberOfItems ?? 0");
        assert!(threshold.as_u64() >= Some(2), "threshold line: {threshold}");

        // An alarm of a defect episode reaches the review list, with its evidence images.
        page.wait_for(
            "an alarm with its evidence in the review list",
            "[...document.querySelectorAll('#alarms li.alarm img')].some(i => i.complete && i.naturalWidth > 0)",
            long,
        );
        std::fs::write(shots.join("page-alarm.png"), page.screenshot(None)).unwrap();
    });

    // Acknowledged from the page: the same path as MQTT (alarm/state says so).
    tokio::task::block_in_place(|| {
        page.wait_for("an Acknowledge button", "document.querySelector('#alarms button.ack') !== null", long);
        page.eval(&format!(
            "document.getElementById('token').value = '{TOKEN}'; document.querySelector('#alarms button.ack').click(); true"
        ));
    });
    // Latched, the alarm clears only through an acknowledgement: either it stays up marked
    // acknowledged (the camera is still NG) or the acknowledgement clears it at once.
    sub.expect("the alarm acknowledged from the page", WAIT, |m| {
        (m.topic.ends_with("/alarm/state") && m.json()["acknowledged"] == true)
            || (m.topic.ends_with("/cam/alarm") && m.json()["event"] == "cleared")
    })
    .await;

    // Marked as good from the page: the frame lands in the model's feedback/good/.
    tokio::task::block_in_place(|| {
        page.eval("document.querySelector('#alarms button.good').click(); true");
        page.wait_for(
            "the copy confirmed",
            "document.getElementById('review-message').textContent.startsWith('Copied')",
            WAIT,
        );
    });
    let feedback: Vec<_> = std::fs::read_dir(model.join("feedback/good")).expect("feedback/good").collect();
    assert_eq!(feedback.len(), 1, "{feedback:?}");
    let copied = feedback[0].as_ref().unwrap().path();
    assert!(copied.to_string_lossy().contains("_frame."), "{copied:?}");
    image::open(&copied).expect("the copied frame is an image a training run can read");

    // Applying a threshold: refused without the token, echoed on MQTT with it.
    let without = tokio::task::block_in_place(|| {
        page.eval("document.getElementById('token').value = ''; inspectd.setSlider(0.5); document.getElementById('apply').click(); true");
        page.wait_for(
            "the refusal",
            "document.getElementById('tune-message').dataset.status === '401'",
            WAIT,
        );
        page.eval("document.getElementById('tune-message').textContent")
    });
    assert!(without.as_str().is_some_and(|t| t.contains("Refused")), "{without}");
    let changed = sub.drain_for(Duration::from_millis(1500)).await;
    assert!(
        !changed
            .iter()
            .any(|m| m.topic.ends_with("/threshold/state") && m.json()["runtime"]["set_by"] == "ui"),
        "a refused change reached threshold/state"
    );
    let applied = tokio::task::block_in_place(|| {
        let value = page.eval(&format!(
            "document.getElementById('token').value = '{TOKEN}'; inspectd.setSlider(7.25); \
             document.getElementById('apply').click(); Number(document.getElementById('slider').value)"
        ));
        page.wait_for(
            "the acceptance",
            "document.getElementById('tune-message').dataset.status === '202'",
            WAIT,
        );
        value.as_f64().expect("slider value")
    });
    let state = sub
        .expect("the threshold applied from the page", WAIT, |m| {
            m.topic.ends_with("/threshold/state") && m.json()["runtime"]["set_by"] == "ui"
        })
        .await
        .json();
    assert!((state["threshold"].as_f64().unwrap() - applied).abs() < 1e-4, "{state} vs {applied}");
    tokio::task::block_in_place(|| {
        std::thread::sleep(Duration::from_millis(2500));
        std::fs::write(shots.join("page-threshold.png"), page.screenshot(None)).unwrap();
    });

    // Evidence URLs cannot leave the evidence folder.
    let link = dir.path("state/evidence/cam/2026-01-01T00-00-00.000Z_1_frame.jpg");
    std::os::unix::fs::symlink("/etc/passwd", &link).expect("symlink");
    for path in [
        "/api/evidence/../../etc/passwd",
        "/api/evidence/cam/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/evidence/cam/../../ui1.toml",
        "/api/evidence/cam/2026-01-01T00-00-00.000Z_1_frame.jpg",
        "/api/evidence/cam/.x/good",
    ] {
        let (status, body) = call(addr, "GET", path, None, "").await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| e.starts_with("refused")), "{path}: {body}");
    }
    let (status, _) = call(addr, "POST", "/api/evidence/cam/x_frame.jpg/good", None, "").await;
    assert!(status == 404 || status == 401, "{status}");

    drop(page);
    assert_eq!(daemon.signal_and_wait("TERM", WAIT), Some(0), "{}", daemon.log());
    assert!(!daemon.log().contains(TOKEN), "the token must never be logged");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create");
    for entry in std::fs::read_dir(from).expect("read").filter_map(Result::ok) {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}
