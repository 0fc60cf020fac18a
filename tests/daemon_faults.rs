//! Faults around the daemon's disks, through the real binary, real mosquitto and a recorded
//! video: evidence on a full filesystem, the outbox on a full filesystem, and a corrupted
//! outbox entry. A full disk is a small tmpfs, filled up before the daemon starts, mounted in a
//! private mount namespace (`unshare -m`) that only the daemon sees and that goes when it ends.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use broker::{Broker, Subscriber, TestDir};
use daemon::{config_head, logged_alarms, strip_ansi, test_camera, washer_model, washer_video, Daemon};

const SECOND: Duration = Duration::from_secs(1);
const CAMERA: &str = "line";
/// Frames of the video; its defect episodes give 3 raises and 3 clears with k = n = 1.
const FRAMES: usize = 30;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The body of `GET /metrics`, or an empty string when nothing answers.
fn metrics(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return String::new() };
    let _ = s.set_read_timeout(Some(SECOND));
    let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// The value of one series in a Prometheus exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A config for a file camera playing `video` once, and an HTTP endpoint on `http`.
fn config(node: &str, dir: &Path, port: u16, http: u16, video: &Path) -> String {
    let head = config_head(node, dir, port).replace("bind = \"\"", &format!("bind = \"127.0.0.1:{http}\""));
    format!(
        r#"{head}
[cameras.{CAMERA}]
model = "washer"
[cameras.{CAMERA}.source]
kind = "file"
path = "{video}"
[cameras.{CAMERA}.alarm]
k = 1
n = 1
clear_after = 1
"#,
        video = video.display()
    )
}

fn video(dir: &TestDir) -> std::path::PathBuf {
    let video = dir.path("line.avi");
    washer_model();
    washer_video(&video, FRAMES, 10, vec![(0, 0), (5, 3), (15, 3), (25, 3)]);
    video
}

/// Starts `inspectd run` with a full 64 KiB tmpfs mounted at `full` (which must exist).
fn start_with_full_disk(dir: &TestDir, name: &str, config: &str, full: &Path) -> Daemon {
    let file = dir.path(&format!("{name}.toml"));
    std::fs::write(&file, config).unwrap();
    std::fs::create_dir_all(full).unwrap();
    let log = dir.path(&format!("{name}.log"));
    // unshare execs the shell, which execs inspectd: the child's pid is the daemon's.
    let script = r#"mount -t tmpfs -o size=64k tmpfs "$1" && { dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null; true; } && exec "$2" run --config "$3""#;
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(full)
        .arg(env!("CARGO_BIN_EXE_inspectd"))
        .arg(&file)
        .env("INSPECTD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux)");
    Daemon { child, log }
}

/// Waits until `series` in `/metrics` reaches `at_least`.
async fn metric_at_least(http: u16, series: &str, at_least: f64, daemon: &Daemon) -> f64 {
    let until = Instant::now() + 60 * SECOND;
    loop {
        let value = sample(&metrics(http), series).unwrap_or(0.0);
        if value >= at_least {
            return value;
        }
        assert!(Instant::now() < until, "{series} stayed at {value}; log:\n{}", daemon.log());
        tokio::time::sleep(SECOND / 5).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_on_a_full_disk_alarms_still_go_out_counted_and_logged_once() {
    let dir = TestDir::new("fault-evidence");
    let video = tokio::task::block_in_place(|| video(&dir));
    let broker = Broker::start(&dir);
    let node = "fault-evidence";
    let http = free_port();
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/{CAMERA}/alarm")).await;
    let mut d = start_with_full_disk(
        &dir,
        node,
        &config(node, &dir.0, broker.port, http, &video),
        &dir.path("state/evidence"),
    );
    let mut raised = 0;
    while raised < 3 {
        let m = sub.expect("three raised alarms", 60 * SECOND, |m| m.json()["event"] == "raised").await;
        assert!(m.json()["evidence"].is_null(), "no evidence could be saved: {}", m.json());
        raised += 1;
    }
    let series = format!("inspectd_evidence_errors_total{{camera=\"{CAMERA}\"}}");
    assert_eq!(metric_at_least(http, &series, 3.0, &d).await, 3.0, "one failed save per raised alarm");
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon keeps running:\n{}", d.log());
    let log = strip_ansi(&d.log());
    assert_eq!(log.matches("Evidence not saved").count(), 1, "logged once for the episode:\n{log}");
    assert_eq!(tokio::task::block_in_place(|| d.signal_and_wait("TERM", 20 * SECOND)), Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_on_a_full_disk_refuses_alarms_counted_and_scoring_goes_on() {
    let dir = TestDir::new("fault-outbox");
    let video = tokio::task::block_in_place(|| video(&dir));
    let broker = Broker::start(&dir);
    let node = "fault-outbox";
    let http = free_port();
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/{CAMERA}/#")).await;
    let mut d = start_with_full_disk(
        &dir,
        node,
        &config(node, &dir.0, broker.port, http, &video),
        &dir.path("state/outbox"),
    );
    // Every frame is still judged and published, alarm states included.
    let (mut results, mut active_states) = (0, 0);
    let until = Instant::now() + 60 * SECOND;
    while results < FRAMES {
        let left = until.saturating_duration_since(Instant::now());
        let m = sub.expect("every result", left, |m| !m.topic.ends_with("/status")).await;
        if m.topic.ends_with("/result") {
            results += 1;
        } else if m.topic.ends_with("/alarm/state") && m.json()["active"] == true {
            active_states += 1;
        } else if m.topic.ends_with("/alarm") {
            panic!("an alarm the full outbox refused was sent: {}", m.json());
        }
    }
    assert!(active_states >= 1, "the retained alarm state still shows the alarm");
    let series = format!("inspectd_alarms_not_queued_total{{camera=\"{CAMERA}\"}}");
    assert_eq!(metric_at_least(http, &series, 6.0, &d).await, 6.0, "3 raises and 3 clears refused, counted");
    let scored = sample(&metrics(http), &format!("inspectd_frames_scored_total{{camera=\"{CAMERA}\"}}"));
    assert_eq!(scored, Some(FRAMES as f64));
    let log = strip_ansi(&d.log());
    assert_eq!(log.matches("ALARM NOT QUEUED").count(), 6, "each refusal is logged:\n{log}");
    assert_eq!(tokio::task::block_in_place(|| d.signal_and_wait("TERM", 20 * SECOND)), Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_outbox_entry_is_moved_aside_and_the_others_are_sent() {
    let dir = TestDir::new("fault-corrupt");
    let video = tokio::task::block_in_place(|| video(&dir));
    let node = "fault-corrupt";
    // Run 1: no broker, so every alarm stays in the outbox.
    let first = config(node, &dir.0, free_port(), free_port(), &video)
        .replace("shutdown_deadline_s = 5.0", "shutdown_deadline_s = 1.0");
    let mut d = Daemon::start(&dir.0, "run1", &first);
    let until = Instant::now() + 60 * SECOND;
    while logged_alarms(&d.log()).len() < 6 {
        assert!(Instant::now() < until, "six alarms; log:\n{}", d.log());
        tokio::time::sleep(SECOND / 5).await;
    }
    let generated: Vec<String> =
        logged_alarms(&d.log()).iter().map(|a| format!("{}:{}", a.alarm_id, a.event)).collect();
    tokio::task::block_in_place(|| d.signal_and_wait("TERM", 20 * SECOND));
    let outbox = dir.path("state/outbox");
    let mut entries: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 6, "{entries:?}");
    std::fs::write(&entries[1], b"{\"topic\": \"inspectd/x\", \"payl").unwrap();

    // Run 2 with a broker: the damaged entry goes to corrupt/, the five others are delivered.
    let broker = Broker::start(&dir);
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/{CAMERA}/alarm")).await;
    // Another camera, so that nothing but the stored alarms reaches line/alarm.
    let second = format!("{}{}", config_head(node, &dir.0, broker.port), test_camera("idle", 1));
    let mut d2 = Daemon::start(&dir.0, "run2", &second);
    let mut delivered = Vec::new();
    while delivered.len() < 5 {
        let m = sub.expect("the five intact alarms", 30 * SECOND, |_| true).await;
        let j = m.json();
        let key = format!("{}:{}", j["alarm_id"].as_str().unwrap(), j["event"].as_str().unwrap());
        if !delivered.contains(&key) {
            delivered.push(key);
        }
    }
    let mut expected = generated.clone();
    expected.remove(1);
    assert_eq!(delivered, expected, "the intact alarms, in order");
    let aside = outbox.join("corrupt").join(entries[1].file_name().unwrap());
    assert!(aside.is_file(), "the damaged entry is kept for a person to look at");
    let log = strip_ansi(&d2.log());
    assert!(log.contains("moved aside"), "{log}");
    tokio::task::block_in_place(|| d2.signal_and_wait("TERM", 20 * SECOND));
}
