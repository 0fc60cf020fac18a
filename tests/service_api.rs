//! The set-up API (`/api/`, issue "A set-up page", items 3 and 5) of a running daemon: off
//! by default; cameras and their recent scores readable; a threshold changed only with the
//! token, through the runtime-threshold path (echoed on MQTT); the token never logged.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::net::SocketAddr;
use std::time::Duration;

use broker::{Broker, Subscriber, TestDir};
use daemon::{config_head, test_camera, Daemon};
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
