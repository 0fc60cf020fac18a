//! The health and metrics endpoint over real TCP, with a real mosquitto behind the MQTT
//! readiness check: status codes of /healthz and /readyz as the service's state changes, and
//! /metrics as Prometheus text with the expected series.

#[path = "common/broker.rs"]
mod broker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use broker::{configs, Broker, TestDir};
use inspectd::pipeline::scoring::{ModelIdentity, ScoringStats};
use inspectd::publish::MqttPublisher;
use inspectd::service::api::Api;
use inspectd::service::board::HealthBoard;
use inspectd::service::health::HealthServer;
use inspectd::service::metrics::Metrics;
use inspectd::source::{SourceState, SourceStatus};
use inspectd::telemetry::{AlarmRaised, Event, FrameQueueFull, FrameWrongSize, Telemetry, COUNTERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection, read to the end.
async fn request(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{accept}Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply { status, headers, body: body.to_string() }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None).await
}

/// Parses Prometheus text (0.0.4): `# HELP`/`# TYPE` comments and `name{labels} value` samples.
/// Returns every sample as (`name{labels}`, value); panics on a line that is neither.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    let mut typed = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("HELP"), Some(_), _) => {}
                (Some("TYPE"), Some(name), Some("counter" | "gauge" | "histogram" | "untyped")) => {
                    typed.push(name.to_string())
                }
                _ => panic!("malformed comment: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = series.split('{').next().expect("name");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "labels: {line}"
            );
        }
        assert!(typed.iter().any(|t| name.starts_with(t.as_str())), "sample before its TYPE: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

fn streaming(frames: u64) -> SourceStatus {
    let mut s = SourceStatus::starting();
    (s.state, s.fps, s.frames, s.last_frame_at) =
        (SourceState::Streaming, 25.0, frames, Some(SystemTime::now()));
    s
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("clock").as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_the_service_state_and_metrics_parse() {
    let dir = TestDir::new("http");
    let board = HealthBoard::new();
    let telemetry = Arc::new(Telemetry::default());
    let metrics = Arc::new(Metrics::new(telemetry.clone()));
    assert!(HealthServer::bind("", board.clone(), metrics.clone(), Api::default())
        .await
        .expect("disabled")
        .is_none());
    let bad = HealthServer::bind("not an address", board.clone(), metrics.clone(), Api::default()).await;
    assert!(bad.as_ref().err().is_some_and(|e| e.is_configuration()), "a malformed bind is a config error");
    let server = HealthServer::bind("127.0.0.1:0", board.clone(), metrics.clone(), Api::default())
        .await
        .expect("bind")
        .expect("enabled");
    let addr = server.local_addr().expect("addr");
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(server.serve(cancel.clone()));

    // Starting: alive, not ready.
    let r = get(addr, "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok: starting\n"));
    let r = get(addr, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (503, "not ready: models loading, MQTT not connected\n"));

    // Models loaded, a camera streaming, its scorer beating; MQTT comes up.
    let (status_tx, status_rx) = watch::channel(streaming(120));
    let stats = Arc::new(ScoringStats::default());
    stats.heartbeat_ms.store(now_ms(), Ordering::Relaxed);
    board.set_telemetry(telemetry.clone());
    board.add_camera("cam1", "part-a", status_rx);
    // What the camera's source counts: 120 frames delivered, 7 of them dropped by its edge.
    telemetry.frames_captured("cam1").inc_by(120);
    for i in 0..7 {
        FrameQueueFull { camera: "cam1", first: i == 0 }.emit(&telemetry);
    }
    board.add_scorer("part-a", stats.clone());
    board.set_models_loaded(true);
    let broker = Broker::start(&dir);
    let (mqtt, node) = configs(broker.port, "http", &dir);
    let (publisher, _acks) = MqttPublisher::start(&mqtt, &node, &dir.0.join("outbox")).expect("publisher");
    board.set_publisher(publisher.handle());
    let until = Instant::now() + Duration::from_secs(5);
    while get(addr, "/readyz").await.status != 200 {
        assert!(
            Instant::now() < until,
            "not ready after MQTT connected: {}",
            get(addr, "/readyz").await.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(addr, "/healthz").await.body, "ok\n");

    // Per-frame metrics from the decision stage, and the model per camera.
    let cam = metrics.camera("cam1");
    cam.observe_result(0.8, Duration::from_millis(40));
    AlarmRaised { camera: "cam1" }.emit(&telemetry);
    FrameWrongSize { camera: "cam1", size: (64, 64), model: (128, 128) }.emit(&telemetry);
    let model = ModelIdentity {
        name: "part-a".into(),
        id: "part-a-v3".into(),
        sha: "9f2c1e".into(),
        threshold: None,
    };
    metrics.set_model("cam1", &model);

    let r = get(addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].starts_with("text/plain; version=0.0.4"), "{:?}", r.headers);
    let samples = parse_prometheus(&r.body);
    let expect = |series: &str, value: f64| {
        assert_eq!(samples.get(series), Some(&value), "{series} in\n{}", r.body);
    };
    expect("inspectd_frames_captured_total{camera=\"cam1\"}", 120.0);
    expect("inspectd_frames_scored_total{camera=\"cam1\"}", 1.0);
    expect("inspectd_frames_dropped_total{camera=\"cam1\",reason=\"queue_full\"}", 7.0);
    expect("inspectd_frames_dropped_total{camera=\"cam1\",reason=\"wrong_size\"}", 1.0);
    expect("inspectd_alarms_raised_total{camera=\"cam1\"}", 1.0);
    expect("inspectd_evidence_errors_total{camera=\"cam1\"}", 0.0);
    for name in COUNTERS {
        assert!(
            r.body.contains(&format!("# TYPE inspectd_{name}_total counter")),
            "{name} not served:\n{}",
            r.body
        );
    }
    expect("inspectd_score_normalised_count{camera=\"cam1\"}", 1.0);
    expect("inspectd_frame_latency_seconds_bucket{camera=\"cam1\",le=\"0.04\"}", 1.0);
    expect("inspectd_camera_fps{camera=\"cam1\"}", 25.0);
    expect("inspectd_camera_streaming{camera=\"cam1\"}", 1.0);
    expect(
        "inspectd_camera_model{camera=\"cam1\",model=\"part-a\",model_id=\"part-a-v3\",sha=\"9f2c1e\"}",
        1.0,
    );
    expect("inspectd_mqtt_connected", 1.0);
    expect("inspectd_mqtt_outbox_alarms", 0.0);
    expect("inspectd_ready", 1.0);
    assert!(samples.contains_key("inspectd_scoring_heartbeat_age_seconds{model=\"part-a\"}"));
    assert!(samples.contains_key("inspectd_mqtt_results_dropped_total{reason=\"offline\"}"));

    // Scrapers that ask for OpenMetrics get it.
    let r =
        request(addr, "GET", "/metrics", Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"))
            .await;
    assert!(r.headers["content-type"].starts_with("application/openmetrics-text"));
    assert!(r.body.ends_with("# EOF\n"));

    // A camera drops out: not ready, still healthy. A wedged scorer: unhealthy.
    status_tx.send_replace(SourceStatus { state: SourceState::Reconnecting, ..streaming(120) });
    let r = get(addr, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (503, "not ready: camera cam1 reconnecting\n"));
    assert_eq!(get(addr, "/healthz").await.status, 200);
    stats.heartbeat_ms.store(now_ms() - 60_000, Ordering::Relaxed);
    let r = get(addr, "/healthz").await;
    assert_eq!(r.status, 503);
    assert!(r.body.starts_with("unhealthy: scoring 'part-a' stalled for 60 s"), "{}", r.body);

    assert_eq!(get(addr, "/nope").await.status, 404);
    let r = request(addr, "POST", "/readyz", None).await;
    assert_eq!((r.status, r.headers.get("allow").map(String::as_str)), (405, Some("GET, HEAD")));

    board.set_stopping();
    assert_eq!(get(addr, "/readyz").await.body, "not ready: stopping, camera cam1 reconnecting\n");
    cancel.cancel();
    serving.await.expect("server task");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener closes with the server");
    publisher.shutdown(Duration::from_secs(2)).await;
}
