//! The `inspectd` binary end to end (design.md §1, §3): real cameras (videotestsrc and an
//! encoded video with defects at known frames), the real scorer, real mosquitto. A user sees
//! every frame of a recording judged, alarms raised and cleared around the defects, and the
//! node's status go offline on a graceful stop and through the last will when it dies.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker::{assert_valid, Broker, Received, Subscriber, TestDir};
use daemon::{config_head, logged_alarms, strip_ansi, test_camera, washer_model, washer_video, Daemon};
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);

/// Frames of the recording and its defect episodes `(first frame, length)`: a stain, a hole
/// and a foreign patch (defect kinds rotate per episode).
const FRAMES: usize = 52;
const EPISODES: [(usize, usize); 3] = [(10, 5), (24, 5), (38, 5)];
/// The file camera's alarm debounce.
const K: u64 = 2;
const CLEAR_AFTER: u64 = 3;

/// The message kind of a topic under `inspectd/{node}/`, for schema validation.
fn kind(topic: &str) -> &'static str {
    let parts: Vec<&str> = topic.split('/').collect();
    match parts.as_slice() {
        [_, _, "status"] => "node_status",
        [_, _, _, "status"] => "camera_status",
        [_, _, _, "result"] => "result",
        [_, _, _, "alarm"] => "alarm",
        [_, _, _, "alarm", "state"] => "alarm_state",
        [_, _, _, "threshold", "state"] => "threshold_state",
        _ => panic!("unexpected topic {topic}"),
    }
}

/// Validates every message against the schema and returns them with their parsed payloads.
fn validated(messages: &[Received]) -> Vec<(String, Value)> {
    messages
        .iter()
        .map(|m| {
            let json = m.json();
            assert_valid(kind(&m.topic), &json);
            (m.topic.clone(), json)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_and_a_live_camera_are_judged_frame_by_frame_and_sigterm_leaves_offline() {
    let dir = TestDir::new("daemon-run");
    let video = dir.path("line.avi");
    let plan = tokio::task::block_in_place(|| {
        washer_model();
        // The first kind, a scratch, is a pixel-wide stroke that the small 128×128 test model
        // scores near its threshold; an empty first episode skips it.
        washer_video(&video, FRAMES, 10, [(0, 0)].into_iter().chain(EPISODES).collect())
    });
    let broker = Broker::start(&dir);
    let node = "run1";
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/#")).await;
    let config = format!(
        r#"{head}
[cameras.live]
model = "washer"
[cameras.live.source]
kind = "test"
pattern = "ball"
fps = 5
width = 160
height = 120
# A small ball on black has a fraction of the washers' focus measure: the out-of-focus check
# would call every frame invalid (tests/daemon_frame_health.rs tests it).
[cameras.live.health]
min_focus_ratio = 0.0

[cameras.line]
model = "washer"
[cameras.line.source]
kind = "file"
path = "{video}"
realtime = false
loop = false
[cameras.line.alarm]
k = {K}
n = 3
clear_after = {CLEAR_AFTER}
"#,
        head = config_head(node, &dir.0, broker.port),
        video = video.display()
    );
    let mut daemon = Daemon::start(&dir.0, "daemon", &config);

    // The recording ends on its own: every frame is judged, then its camera stops.
    let mut seen = Vec::new();
    loop {
        let msg = sub.expect("the recording's camera to stop", 60 * SECOND, |_| true).await;
        let stopped = msg.topic == format!("inspectd/{node}/line/status") && msg.json()["state"] == "stopped";
        seen.push(msg);
        if stopped {
            break;
        }
    }
    // The live camera goes on; a few of its verdicts, and the recording's last ones.
    let live_topic = format!("inspectd/{node}/live/result");
    while seen.iter().filter(|m| m.topic == live_topic).count() < 3 {
        seen.push(sub.expect("live camera results", 10 * SECOND, |_| true).await);
    }
    seen.extend(sub.drain_for(SECOND).await);
    let messages = validated(&seen);
    let of = |suffix: &str| -> Vec<&Value> {
        let topic = format!("inspectd/{node}/{suffix}");
        messages.iter().filter(|(t, _)| *t == topic).map(|(_, j)| j).collect()
    };

    // Every frame of the recording exactly once, in order, judged as labelled.
    let results = of("line/result");
    let seqs: Vec<u64> = results.iter().map(|r| r["seq"].as_u64().expect("seq")).collect();
    assert_eq!(seqs, (0..FRAMES as u64).collect::<Vec<_>>(), "one result per frame, none lost");
    let wrong: Vec<String> = results
        .iter()
        .enumerate()
        .filter(|(i, r)| (r["verdict"] == "NG") != plan.defect_at(*i).is_some())
        .map(|(i, r)| {
            format!("frame {i}: {} score {} (threshold {})", r["verdict"], r["score"], r["threshold"])
        })
        .collect();
    assert!(wrong.is_empty(), "verdicts that disagree with the labels: {wrong:#?}");
    for r in results.iter().filter(|r| r["verdict"] == "NG") {
        assert!(!r["regions"].as_array().expect("regions").is_empty(), "an NG frame says where: {r}");
    }

    // One alarm per defect episode: raised inside it, cleared once the parts are good again.
    let alarms = of("line/alarm");
    assert_eq!(alarms.len(), 2 * EPISODES.len(), "a raise and a clear per episode: {alarms:#?}");
    for (pair, &(first, len)) in alarms.chunks(2).zip(EPISODES.iter()) {
        let (raise, clear) = (pair[0], pair[1]);
        let (first, end) = (first as u64, (first + len) as u64);
        assert_eq!((raise["event"].as_str(), clear["event"].as_str()), (Some("raised"), Some("cleared")));
        assert_eq!(raise["alarm_id"], clear["alarm_id"], "the clear names the alarm it ends");
        let raised_at = raise["seq"].as_u64().expect("seq");
        assert!((first + K - 1..end).contains(&raised_at), "episode {first}..{end} raised at {raised_at}");
        let cleared_at = clear["seq"].as_u64().expect("seq");
        assert!(
            (end + CLEAR_AFTER - 1..=end + CLEAR_AFTER + 2).contains(&cleared_at),
            "episode {first}..{end} cleared at {cleared_at}"
        );
        let evidence = &raise["evidence"];
        for file in [&evidence["frame"], &evidence["heatmap"]] {
            let path = file.as_str().unwrap_or_else(|| panic!("the raise has evidence: {raise}"));
            assert!(std::path::Path::new(path).is_file(), "evidence file {path} exists");
        }
    }
    // The retained state keeps only the newest value, so quick changes may collapse; what
    // arrives follows the alarms in order and ends inactive.
    let states: Vec<Option<&str>> = of("line/alarm/state")
        .iter()
        .map(|s| {
            assert_eq!(s["active"].as_bool(), Some(!s["alarm_id"].is_null()), "{s}");
            s["alarm_id"].as_str()
        })
        .collect();
    // A daemon may first say that there is no alarm yet.
    let expected: Vec<Option<&str>> = std::iter::once(None)
        .chain(alarms.iter().map(|a| (a["event"] == "raised").then(|| a["alarm_id"].as_str().unwrap())))
        .collect();
    let mut rest = expected.iter();
    assert!(states.iter().all(|s| rest.any(|e| e == s)), "states {states:?} follow the alarms {expected:?}");
    assert_eq!(states.last(), Some(&None), "no alarm active after the recording");
    let logged: Vec<String> = logged_alarms(&daemon.log())
        .iter()
        .filter(|a| a.camera == "line")
        .map(|a| format!("{}:{}", a.alarm_id, a.event))
        .collect();
    let published: Vec<String> = alarms
        .iter()
        .map(|a| format!("{}:{}", a["alarm_id"].as_str().unwrap(), a["event"].as_str().unwrap()))
        .collect();
    assert_eq!(logged, published, "the log and MQTT agree on the alarms");

    // The live camera is scored alongside, in frame order.
    let live = of("live/result");
    assert!(live.len() >= 3, "live camera results: {}", live.len());
    let live_seqs: Vec<u64> = live.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(live_seqs.windows(2).all(|w| w[0] < w[1]), "{live_seqs:?}");
    let live_status = of("live/status");
    assert!(live_status.iter().any(|s| s["state"] == "streaming" && s["fps"].as_f64() > Some(0.0)));
    let online = of("status");
    assert_eq!(online.first().map(|s| s["state"].clone()), Some("online".into()), "{online:?}");

    // SIGTERM: a clean exit that says offline (retained) itself rather than through the will.
    let code = tokio::task::block_in_place(|| daemon.signal_and_wait("TERM", 10 * SECOND));
    assert_eq!(code, Some(0), "log:\n{}", daemon.log());
    let tail = validated(&sub.drain_for(SECOND / 2).await);
    let offline = tail.iter().find(|(t, _)| *t == format!("inspectd/{node}/status")).expect("offline status");
    assert_eq!(offline.1["state"], "offline");
    assert_eq!(offline.1["started_at"], online[0]["started_at"], "the same run says offline");
    let live_final = tail.iter().rev().find(|(t, _)| *t == format!("inspectd/{node}/live/status"));
    assert_eq!(live_final.map(|(_, s)| s["state"].clone()), Some("stopped".into()), "{tail:#?}");
    let log = strip_ansi(&daemon.log());
    assert!(log.contains("offline_acknowledged=true"), "offline acknowledged before the exit:\n{log}");
    let client = format!("inspectd-{node}");
    assert!(
        broker.log().contains(&format!("Client {client} disconnected.")),
        "a graceful DISCONNECT, so no last will:\n{}",
        broker.log()
    );

    // A consumer that connects now finds the node offline and both cameras stopped.
    let mut late = Subscriber::connect(broker.port, &format!("inspectd/{node}/#")).await;
    let retained: BTreeMap<String, Value> =
        validated(&late.drain_for(SECOND / 2).await).into_iter().collect();
    assert_eq!(retained[&format!("inspectd/{node}/status")]["state"], "offline");
    for camera in ["live", "line"] {
        assert_eq!(retained[&format!("inspectd/{node}/{camera}/status")]["state"], "stopped", "{camera}");
    }
    assert_eq!(retained[&format!("inspectd/{node}/line/alarm/state")]["active"], false);
}

/// A daemon with one slow live camera, publishing to its own broker.
fn small_daemon(dir: &TestDir, node: &str, port: u16) -> Daemon {
    let config = format!(
        r#"{head}
[cameras.cam]
model = "washer"
[cameras.cam.source]
kind = "test"
fps = 5
width = 128
height = 128
"#,
        head = config_head(node, &dir.0, port)
    );
    Daemon::start(&dir.0, node, &config)
}

/// Waits for the node's `online` status and returns its `started_at`.
async fn online(sub: &mut Subscriber, node: &str) -> Value {
    let topic = format!("inspectd/{node}/status");
    let msg = sub
        .expect("the node online", 30 * SECOND, |m| m.topic == topic && m.json()["state"] == "online")
        .await;
    assert_valid("node_status", &msg.json());
    msg.json()["started_at"].clone()
}

/// Waits for `offline` on the node status and checks that the broker keeps it for late comers.
async fn offline_retained(sub: &mut Subscriber, node: &str, port: u16, timeout: Duration) -> Value {
    let topic = format!("inspectd/{node}/status");
    let msg =
        sub.expect("the node offline", timeout, |m| m.topic == topic && m.json()["state"] == "offline").await;
    assert_valid("node_status", &msg.json());
    let mut late = Subscriber::connect(port, &topic).await;
    let retained = late.expect("the retained node status", 2 * SECOND, |m| m.retain).await;
    assert_eq!(retained.json(), msg.json(), "the broker keeps the offline status");
    msg.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_is_reported_offline_by_its_last_will() {
    let dir = TestDir::new("daemon-kill");
    tokio::task::block_in_place(washer_model);
    let broker = Broker::start(&dir);
    let node = "kill1";
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/#")).await;
    let mut daemon = small_daemon(&dir, node, broker.port);
    let started_at = online(&mut sub, node).await;
    sub.expect("a result", 30 * SECOND, |m| m.topic.ends_with("/cam/result")).await;

    let killed = Instant::now();
    tokio::task::block_in_place(|| daemon.signal_and_wait("KILL", 5 * SECOND));
    // keep_alive_s = 2: the will must be out within 1.5 keep-alives even if the broker only
    // noticed by the missing pings; a killed process's socket closes at once.
    let will = offline_retained(&mut sub, node, broker.port, 3 * SECOND).await;
    assert!(killed.elapsed() < 3 * SECOND, "the will took {:?}", killed.elapsed());
    assert_eq!(will["started_at"], started_at, "the will belongs to the run that died");
    let client = format!("inspectd-{node}");
    assert!(!broker.log().contains(&format!("Client {client} disconnected.")), "no graceful DISCONNECT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_daemon_is_offline_after_one_and_a_half_keep_alives_and_back_online_when_it_resumes() {
    let dir = TestDir::new("daemon-freeze");
    tokio::task::block_in_place(washer_model);
    let broker = Broker::start(&dir);
    let node = "freeze1";
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/#")).await;
    let daemon = small_daemon(&dir, node, broker.port);
    let started_at = online(&mut sub, node).await;
    sub.expect("a result", 30 * SECOND, |m| m.topic.ends_with("/cam/result")).await;

    // A hung process keeps its socket open: only the missing keep-alive (2 s) tells the broker.
    let pid = daemon.child.id().to_string();
    let signal = |name: &str| {
        let ok =
            std::process::Command::new("kill").args([name, pid.as_str()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill {name} {pid}");
    };
    let client = format!("inspectd-{node}");
    assert!(
        broker.log().contains(&format!(" as {client} (p2, c1, k2)")),
        "keep_alive_s = 2 reaches the broker"
    );
    signal("-STOP");
    let frozen = Instant::now();
    let will = offline_retained(&mut sub, node, broker.port, 10 * SECOND).await;
    let took = frozen.elapsed();
    signal("-CONT");
    // mosquitto 2.0 gives up on a client 1.5 keep-alives after its last packet but checks only
    // every second or two: 4-5.5 s here for k = 2 (the default 15 s would mean 22 s or more).
    assert!(
        (2 * SECOND..7 * SECOND).contains(&took),
        "last will {took:?} after the freeze; keep_alive_s = 2"
    );
    assert_eq!(will["started_at"], started_at);

    // Resumed, the daemon finds its connection gone, reconnects and says online again.
    assert_eq!(online(&mut sub, node).await, started_at, "the same run is back");
    let result = sub.expect("results again", 10 * SECOND, |m| m.topic.ends_with("/cam/result")).await;
    assert_valid("result", &result.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_camera_reports_its_status_at_the_configured_interval_not_faster() {
    let dir = TestDir::new("daemon-status-rate");
    tokio::task::block_in_place(washer_model);
    let broker = Broker::start(&dir);
    let node = "rate1";
    let topic = format!("inspectd/{node}/cam/status");
    let mut sub = Subscriber::connect(broker.port, &topic).await;
    let config = format!(
        r#"{head}
[cameras.cam]
model = "washer"
[cameras.cam.source]
kind = "test"
fps = 10
width = 128
height = 128
"#,
        head = config_head(node, &dir.0, broker.port)
            .replace("status_interval_s = 1.0", "status_interval_s = 10.0")
    );
    let _daemon = Daemon::start(&dir.0, node, &config);
    sub.expect("status streaming", 30 * SECOND, |m| m.json()["state"] == "streaming").await;

    // design.md §3: camera status "on change + every N s". A camera that keeps streaming has
    // no change to report, so within 4 s of a 10 s interval at most one periodic status comes.
    let statuses = sub.drain_for(4 * SECOND).await;
    for s in &statuses {
        assert_valid("camera_status", &s.json());
        assert_eq!(s.json()["state"], "streaming");
    }
    assert!(
        statuses.len() <= 1,
        "{} camera status messages in 4 s with status_interval_s = 10: {:?}",
        statuses.len(),
        statuses.iter().map(|s| s.json()["last_frame_at"].clone()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_replaces_the_alarm_state_its_previous_run_left_retained() {
    let dir = TestDir::new("daemon-stale-state");
    let (defective, good) = (dir.path("defective.avi"), dir.path("good.avi"));
    tokio::task::block_in_place(|| {
        washer_model();
        // The recording ends in a defect episode (a stain), so its alarm is still raised when
        // the daemon stops; the second run sees only good parts.
        washer_video(&defective, 20, 10, vec![(0, 0), (14, 6)]);
        washer_video(&good, 20, 10, vec![]);
    });
    let broker = Broker::start(&dir);
    let node = "stale1";
    let state_topic = format!("inspectd/{node}/line/alarm/state");
    let config = |video: &std::path::Path| {
        format!(
            r#"{head}
[cameras.line]
model = "washer"
[cameras.line.source]
kind = "file"
path = "{video}"
[cameras.line.alarm]
k = 2
n = 3
clear_after = 3
"#,
            head = config_head(node, &dir.0, broker.port),
            video = video.display()
        )
    };
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/line/#")).await;
    let mut first = Daemon::start(&dir.0, "first", &config(&defective));
    let is_stopped = |m: &Received| m.topic.ends_with("/line/status") && m.json()["state"] == "stopped";
    let (mut active, mut ended) = (false, false);
    while !(active && ended) {
        let msg = sub.expect("the alarm raised and the recording ended", 30 * SECOND, |_| true).await;
        active |= msg.topic == state_topic && msg.json()["active"] == true;
        ended |= is_stopped(&msg);
    }
    assert_eq!(tokio::task::block_in_place(|| first.signal_and_wait("TERM", 10 * SECOND)), Some(0));

    // The next run starts with no alarm and judges only good parts; the retained state a PLC
    // gateway reads must say so, not show the previous run's alarm as active forever.
    let mut second = Daemon::start(&dir.0, "second", &config(&good));
    sub.expect("the second recording to end", 30 * SECOND, is_stopped).await;
    let mut late = Subscriber::connect(broker.port, &state_topic).await;
    let retained = late.expect("the retained alarm state", 2 * SECOND, |m| m.retain).await.json();
    assert_valid("alarm_state", &retained);
    assert_eq!(
        (retained["active"].as_bool(), retained["alarm_id"].as_str()),
        (Some(false), None),
        "after a restart the retained alarm state still shows the previous run's alarm: {retained}"
    );
    assert_eq!(tokio::task::block_in_place(|| second.signal_and_wait("TERM", 10 * SECOND)), Some(0));
}

/// `runtime.required_providers = ["cuda"]` with the default `providers = ["cpu"]` on a machine
/// without CUDA: the daemon must try CUDA, fail, and exit 78 naming it, never run on the CPU.
#[test]
fn a_required_provider_that_is_missing_stops_the_daemon() {
    let dir = TestDir::new("daemon-required-provider");
    // No broker is needed: the daemon must stop before it publishes anything.
    let head = config_head("required", &dir.0, 1);
    let config = format!("{head}\n[runtime]\nrequired_providers = [\"cuda\"]\n{}", test_camera("cam", 5));
    let mut daemon = Daemon::start(&dir.0, "required", &config);
    let code = daemon.signal_and_wait("0", 60 * SECOND);
    let log = strip_ansi(&daemon.log());
    assert_eq!(code, Some(78), "exit 78 (configuration), log:\n{log}");
    assert!(log.contains("'cuda' is required"), "the error names the provider:\n{log}");
    assert!(!log.contains("inspectd running"), "it never runs without its provider:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_with_a_knn_window_scores_with_the_windowed_search() {
    let dir = TestDir::new("daemon-window");
    tokio::task::block_in_place(washer_model);
    let broker = Broker::start(&dir);
    let node = "window1";
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/#")).await;
    let config = config_head(node, &dir.0, broker.port)
        .replace("max_wait_ms = 10\n", "max_wait_ms = 10\nknn_window = 4\n")
        + &test_camera("cam", 5);
    assert!(config.contains("knn_window = 4"), "{config}");
    let daemon = Daemon::start(&dir.0, node, &config);
    let result = sub.expect("a result", 30 * SECOND, |m| m.topic.ends_with("/cam/result")).await;
    assert_valid("result", &result.json());
    let log = strip_ansi(&daemon.log());
    assert!(log.contains("knn=Kernel") && log.contains("knn_window=Some(4)"), "{log}");
}
