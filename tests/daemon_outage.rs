//! Alarms of the running daemon survive broker outages and a restart of the daemon itself
//! (design.md §3: the durable outbox), while inspection goes on. A PLC gateway with a
//! persistent session must end up with every alarm the daemon raised or cleared, in order.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use broker::{assert_valid, Broker, Received, Subscriber, TestDir};
use daemon::{config_head, logged_alarms, strip_ansi, washer_model, washer_video, Daemon};
use inspectd::util::time::rfc3339;

const SECOND: Duration = Duration::from_secs(1);
const NODE: &str = "outage1";
const CAMERA: &str = "line";

/// What a subscriber has received so far, one entry per alarm message.
#[derive(Default)]
struct Alarms {
    /// `alarm_id:event` in order of first arrival (delivery is at least once).
    distinct: Vec<String>,
    /// `started_at` of every raise, as received.
    raised_at: Vec<String>,
    /// `alarm_id:event` of every message, duplicates included.
    received: Vec<String>,
}

impl Alarms {
    fn add(&mut self, msg: &Received) {
        let json = msg.json();
        assert_valid("alarm", &json);
        let key = format!("{}:{}", json["alarm_id"].as_str().unwrap(), json["event"].as_str().unwrap());
        if json["event"] == "raised" {
            self.raised_at.push(json["started_at"].as_str().unwrap().to_string());
        }
        self.received.push(key.clone());
        if !self.distinct.contains(&key) {
            self.distinct.push(key);
        }
    }

    /// Receives until every alarm of `want` has arrived.
    async fn until_all(&mut self, sub: &mut Subscriber, want: &[String], timeout: std::time::Duration) {
        let until = tokio::time::Instant::now() + timeout;
        while let Some(missing) = want.iter().find(|w| !self.distinct.contains(w)) {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let what = format!("alarm {missing} (have {:?})", self.distinct);
            let msg = sub.expect(&what, left, |m| m.topic.ends_with("/alarm")).await;
            self.add(&msg);
        }
    }
}

/// `alarm_id:event` of every alarm a daemon's log reports, in the order it generated them.
fn generated(daemon: &Daemon) -> Vec<String> {
    logged_alarms(&daemon.log())
        .into_iter()
        .inspect(|a| assert_eq!(a.camera, CAMERA))
        .map(|a| format!("{}:{}", a.alarm_id, a.event))
        .collect()
}

/// Polls the daemon's log until it has generated more than `count` alarms.
async fn wait_generated(daemon: &Daemon, count: usize, timeout: Duration) -> Vec<String> {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        let alarms = generated(daemon);
        if alarms.len() > count {
            return alarms;
        }
        assert!(tokio::time::Instant::now() < until, "no new alarms in {timeout:?}; log:\n{}", daemon.log());
        tokio::time::sleep(SECOND / 10).await;
    }
}

/// Now, as the payloads write times; RFC 3339 strings of one format sort like the times.
fn now() -> String {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970");
    rfc3339(t.as_secs() as i64, t.subsec_millis())
}

/// `alarm_id:event` of the alarms waiting in the daemon's outbox, oldest first.
fn outbox(dir: &TestDir) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir.path("state/outbox"))
        .expect("the outbox directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let entry: serde_json::Value =
                serde_json::from_slice(&std::fs::read(file).expect("read entry")).expect("entry");
            assert_eq!(entry["topic"], format!("inspectd/{NODE}/{CAMERA}/alarm"));
            let alarm: serde_json::Value =
                serde_json::from_str(entry["payload"].as_str().expect("payload")).expect("json");
            assert_valid("alarm", &alarm);
            format!("{}:{}", alarm["alarm_id"].as_str().unwrap(), alarm["event"].as_str().unwrap())
        })
        .collect()
}

/// A 3 s loop with a defect every second (a stain, a hole, a foreign patch; the empty first
/// episode skips the scratch, which the small test model scores near its threshold), and a
/// broker whose persistence keeps the gateway's session, and what is queued for it, across
/// restarts.
fn line_and_broker(dir: &TestDir) -> (Broker, std::path::PathBuf) {
    let video = dir.path("line.avi");
    tokio::task::block_in_place(|| {
        washer_model();
        washer_video(&video, 30, 10, vec![(0, 0), (5, 3), (15, 3), (25, 3)]);
    });
    let persistence =
        format!("persistence true\npersistence_location {}/\nallow_anonymous true\n", dir.0.display());
    (Broker::start_with(dir, &persistence), video)
}

/// The line camera playing `video` in a loop at its frame rate; with k = 1 and clear_after = 1
/// that is a raise and a clear per second.
fn line_config(node: &str, dir: &TestDir, port: u16, video: &std::path::Path, deadline_s: f64) -> String {
    format!(
        r#"{head}
[cameras.{CAMERA}]
model = "washer"
[cameras.{CAMERA}.source]
kind = "file"
path = "{video}"
realtime = true
loop = true
[cameras.{CAMERA}.alarm]
k = 1
n = 1
clear_after = 1
"#,
        head = config_head(node, &dir.0, port)
            .replace("shutdown_deadline_s = 5.0", &format!("shutdown_deadline_s = {deadline_s:.1}")),
        video = video.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alarms_raised_while_the_broker_is_down_arrive_in_order_also_across_a_daemon_restart() {
    let dir = TestDir::new("daemon-outage");
    let (mut broker, video) = line_and_broker(&dir);
    let mut gateway =
        Subscriber::connect_as(broker.port, &format!("inspectd/{NODE}/#"), Some("plc-gateway")).await;
    // Short, so the shutdown during the outage below gives up on the broker quickly.
    let config = line_config(NODE, &dir, broker.port, &video, 1.0);
    let mut first = Daemon::start(&dir.0, "first", &config);
    let mut alarms = Alarms::default();
    let flowing = wait_generated(&first, 1, 30 * SECOND).await;
    alarms.until_all(&mut gateway, &flowing, 10 * SECOND).await;

    // 1. The broker goes away for 4 s while the line keeps producing defects.
    tokio::task::block_in_place(|| broker.stop());
    let down = now();
    let before = generated(&first).len();
    tokio::time::sleep(4 * SECOND).await;
    let up = now();
    tokio::task::block_in_place(|| broker.restart());
    let during = generated(&first);
    assert!(during.len() >= before + 4, "inspection went on during the outage: {during:?}");
    alarms.until_all(&mut gateway, &during, 20 * SECOND).await;
    assert_eq!(alarms.distinct[..during.len()], during[..], "every alarm, in the order it was generated");
    let in_outage =
        alarms.raised_at.iter().filter(|t| (down.as_str()..up.as_str()).contains(&t.as_str())).count();
    assert!(in_outage >= 2, "alarms raised during the outage {down}..{up}: {:?}", alarms.raised_at);

    // 2. Down again, and the daemon is stopped before the broker returns: what it could not
    // deliver waits on disk for the next run.
    tokio::task::block_in_place(|| broker.stop());
    let count = generated(&first).len();
    wait_generated(&first, count + 1, 10 * SECOND).await;
    let stopping = std::time::Instant::now();
    let code = tokio::task::block_in_place(|| first.signal_and_wait("TERM", 10 * SECOND));
    assert_eq!(code, Some(0), "a graceful stop although the broker is gone; log:\n{}", first.log());
    assert!(
        stopping.elapsed() < 4 * SECOND,
        "the shutdown deadline (1 s) bounds the stop: {:?}",
        stopping.elapsed()
    );
    // Everything generated after the broker went (and maybe a little before) is on disk.
    let first_run = generated(&first);
    let waiting = outbox(&dir);
    assert!(first_run.ends_with(&waiting), "the outbox {waiting:?} holds the newest of {first_run:?}");
    assert!(
        waiting.len() >= first_run.len() - count,
        "{waiting:?} holds what came after {count}: {first_run:?}"
    );
    let first_log = strip_ansi(&first.log());
    assert!(
        first_log.contains("stay in the outbox"),
        "the log says alarms wait for the next start:\n{first_log}"
    );

    tokio::task::block_in_place(|| broker.restart());
    let second = Daemon::start(&dir.0, "second", &config);
    let second_run = wait_generated(&second, 1, 30 * SECOND).await;
    let all: Vec<String> = first_run.iter().chain(&second_run).cloned().collect();
    alarms.until_all(&mut gateway, &all, 20 * SECOND).await;
    assert_eq!(
        alarms.distinct[..all.len()],
        all[..],
        "the first run's survivors first, then the second run's"
    );
}

/// Five faults during a live alarm stream: the broker restarted three times, then the daemon
/// stopped with SIGTERM and killed with SIGKILL, each time started again. A PLC gateway with a
/// persistent session gets every alarm event of all three runs, in order; only the one in
/// flight when SIGKILL hit may come twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_faults_lose_no_alarm_and_duplicate_at_most_the_one_in_flight_at_sigkill() {
    const NODE5: &str = "outage5";
    let dir = TestDir::new("daemon-five-faults");
    let (mut broker, video) = line_and_broker(&dir);
    let mut gateway =
        Subscriber::connect_as(broker.port, &format!("inspectd/{NODE5}/+/alarm"), Some("plc-gateway-5"))
            .await;
    let config = line_config(NODE5, &dir, broker.port, &video, 2.0);
    let mut alarms = Alarms::default();
    let mut run1 = Daemon::start(&dir.0, "run1", &config);
    wait_generated(&run1, 1, 30 * SECOND).await;
    for _ in 0..3 {
        tokio::task::block_in_place(|| broker.stop());
        tokio::time::sleep(2 * SECOND).await;
        tokio::task::block_in_place(|| broker.restart());
        let count = generated(&run1).len();
        wait_generated(&run1, count + 1, 10 * SECOND).await;
    }
    assert_eq!(tokio::task::block_in_place(|| run1.signal_and_wait("TERM", 10 * SECOND)), Some(0));
    let mut all = generated(&run1);

    let mut run2 = Daemon::start(&dir.0, "run2", &config);
    wait_generated(&run2, 2, 30 * SECOND).await;
    tokio::task::block_in_place(|| run2.signal_and_wait("KILL", 10 * SECOND));
    all.extend(generated(&run2));

    let run3 = Daemon::start(&dir.0, "run3", &config);
    let third = wait_generated(&run3, 2, 30 * SECOND).await;
    all.extend(third);
    alarms.until_all(&mut gateway, &all, 30 * SECOND).await;
    for msg in gateway.drain_for(2 * SECOND).await {
        if msg.topic.ends_with("/alarm") {
            alarms.add(&msg);
        }
    }
    assert_eq!(alarms.distinct[..all.len()], all[..], "every alarm event of the three runs, in order");
    let mut counts = std::collections::BTreeMap::new();
    for key in &alarms.received {
        *counts.entry(key.clone()).or_insert(0) += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.len() <= 1, "only the alarm in flight at SIGKILL may come twice: {twice:?}");
}
