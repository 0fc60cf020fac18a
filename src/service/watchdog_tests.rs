use std::os::unix::net::UnixDatagram;

use super::*;

const MIN: Duration = Duration::from_secs(60);

fn camera(id: &str, state: SourceState, fps: f64) -> CameraHealth {
    CameraHealth { id: id.into(), state, fps }
}

fn scorer(model: &str, last_beat: Option<SystemTime>) -> ScorerHealth {
    ScorerHealth { model: model.into(), last_beat, frames_waiting: 3 }
}

/// Everything up: two cameras streaming, MQTT connected, one scorer that just beat.
fn healthy(now: SystemTime) -> Health {
    Health {
        models_loaded: true,
        cameras: vec![
            camera("cam1", SourceState::Streaming, 24.9),
            camera("cam2", SourceState::Streaming, 25.2),
        ],
        mqtt_connected: true,
        scorers: vec![scorer("part-a", Some(now))],
        alarms_raised: 2,
        stopping: false,
        failed: None,
    }
}

#[test]
fn ready_only_when_models_cameras_and_mqtt_are_up() {
    let now = SystemTime::now();
    assert_eq!(readiness(&healthy(now), Duration::ZERO, MIN), Readiness::Ready);
    let mut h = healthy(now);
    h.cameras[1].state = SourceState::Reconnecting;
    h.mqtt_connected = false;
    assert_eq!(
        readiness(&h, Duration::from_secs(5), MIN),
        Readiness::Waiting("Starting: waiting for camera cam2 reconnecting, MQTT not connected".into())
    );
}

#[test]
fn after_the_timeout_ready_anyway_naming_what_is_missing() {
    let mut h = healthy(SystemTime::now());
    h.cameras[0].state = SourceState::Error;
    assert_eq!(readiness(&h, MIN, MIN), Readiness::TimedOut("Running without: camera cam1 in error".into()));
}

#[test]
fn models_still_loading_or_stopping_never_time_out_into_ready() {
    let mut h = healthy(SystemTime::now());
    h.models_loaded = false;
    assert_eq!(
        readiness(&h, 10 * MIN, MIN),
        Readiness::Waiting("Starting: waiting for models loading".into())
    );
    let mut h = healthy(SystemTime::now());
    h.stopping = true;
    assert_eq!(readiness(&h, 10 * MIN, MIN), Readiness::Waiting("Stopping".into()));
    assert_eq!(missing(&h), vec!["stopping".to_string()]);
}

#[test]
fn watchdog_needs_every_heartbeat_fresh() {
    let now = SystemTime::now();
    let mut h = healthy(now);
    h.scorers.push(scorer("part-b", Some(now - Duration::from_secs(9))));
    assert!(watchdog_ok(&h, now));
    h.scorers[1].last_beat = Some(now - Duration::from_secs(42));
    assert_eq!(
        watchdog_check(&h, now),
        Err("scoring 'part-b' stalled for 42 s with 3 frames waiting".into())
    );
    h.scorers[1].last_beat = None;
    assert_eq!(watchdog_check(&h, now), Err("scoring 'part-b' has not started".into()));
    h.scorers.clear();
    assert!(!watchdog_ok(&h, now), "nothing scoring: nothing to vouch for");
}

#[test]
fn a_heartbeat_from_the_future_is_fresh() {
    let now = SystemTime::now();
    let h = healthy(now + Duration::from_secs(30));
    assert!(watchdog_ok(&h, now));
}

#[test]
fn cameras_down_and_mqtt_do_not_stop_the_watchdog() {
    let now = SystemTime::now();
    let mut h = healthy(now);
    h.cameras[0].state = SourceState::Reconnecting;
    h.mqtt_connected = false;
    assert!(watchdog_ok(&h, now), "sources reconnect by themselves; a restart would not help");
}

#[test]
fn status_line_counts_cameras_fps_and_alarms() {
    let now = SystemTime::now();
    let mut h = healthy(now);
    assert_eq!(status_line(&h), "2/2 cameras streaming, 50 fps, MQTT connected, 2 alarms raised");
    h.cameras[1].state = SourceState::Reconnecting;
    h.mqtt_connected = false;
    h.alarms_raised = 1;
    assert_eq!(
        status_line(&h),
        "1/2 cameras streaming (cam2 reconnecting), 25 fps, MQTT disconnected, 1 alarm raised"
    );
}

/// A notifier on a socket of the test's own, and its receiving end (non-blocking).
fn socket(name: &str) -> (Notifier, UnixDatagram, tempdir::Dir) {
    let dir = tempdir::Dir::new(name);
    let path = dir.0.join("notify");
    let rx = UnixDatagram::bind(&path).expect("bind");
    rx.set_nonblocking(true).expect("nonblocking");
    let n = Notifier::connect(path.as_os_str(), Some(Duration::from_secs(2))).expect("connect");
    (n, rx, dir)
}

fn drain(rx: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = rx.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

/// Lets the notifier task run after the paused clock moved.
async fn settle(d: Duration) {
    tokio::time::sleep(d).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn status_is_rate_limited_and_pings_stop_when_a_scorer_wedges() {
    let (n, rx, _dir) = socket("pace");
    let health = std::sync::Arc::new(std::sync::Mutex::new(healthy(SystemTime::now())));
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (source, beating) = (health.clone(), alive.clone());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run_notifier(
        n,
        move || {
            let mut h = source.lock().expect("lock").clone();
            if beating.load(std::sync::atomic::Ordering::Relaxed) {
                h.scorers[0].last_beat = Some(SystemTime::now()); // a live loop keeps beating
            }
            h
        },
        MIN,
        cancel.clone(),
    ));
    settle(Duration::from_millis(10)).await;
    let first = drain(&rx);
    assert_eq!(
        first[..2],
        ["READY=1".to_string(), format!("STATUS={}", status_line(&healthy(SystemTime::now())))]
    );
    // The frame rate moves: no new STATUS before STATUS_EVERY, pings every half interval.
    health.lock().expect("lock").cameras[0].fps = 30.0;
    settle(Duration::from_secs(2)).await;
    assert_eq!(drain(&rx), vec!["WATCHDOG=1".to_string(); 2]);
    settle(STATUS_EVERY).await;
    assert!(drain(&rx).iter().any(|m| m.starts_with("STATUS=2/2 cameras streaming, 55 fps")));
    // A wedged scorer: its last beat ages past the limit (the paused clock does not move
    // SystemTime, so the age is set here). No more pings; STATUS says why.
    alive.store(false, std::sync::atomic::Ordering::Relaxed);
    health.lock().expect("lock").scorers[0].last_beat = Some(SystemTime::now() - 2 * HEARTBEAT_STALE_AFTER);
    settle(Duration::from_secs(4)).await;
    let wedged = drain(&rx);
    assert!(!wedged.iter().any(|m| m == "WATCHDOG=1"), "no ping while the scorer is stuck: {wedged:?}");
    assert!(wedged.iter().any(|m| m.contains("scoring 'part-a' stalled for 20 s")), "{wedged:?}");
    // It recovers: pings resume.
    alive.store(true, std::sync::atomic::Ordering::Relaxed);
    settle(Duration::from_secs(2)).await;
    assert!(drain(&rx).iter().any(|m| m == "WATCHDOG=1"));
    cancel.cancel();
    task.await.expect("notifier task");
    assert_eq!(drain(&rx), vec!["STOPPING=1".to_string()]);
}

/// A directory removed on drop (the crate has no tempfile dependency).
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("inspectd-watchdog-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create test dir");
            Dir(dir)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[test]
fn a_failed_stage_is_neither_ready_nor_alive() {
    let now = SystemTime::now();
    let mut h = healthy(now);
    assert!(watchdog_ok(&h, now));
    h.failed = Some("stage decide failed: panicked".into());
    assert!(!watchdog_ok(&h, now), "no ping for a daemon that cannot raise alarms");
    assert_eq!(watchdog_check(&h, now), Err("stage decide failed: panicked".into()));
    assert_eq!(missing(&h), vec!["stage decide failed: panicked".to_string()]);
    let late = readiness(&h, Duration::from_secs(3600), Duration::from_secs(1));
    assert!(matches!(late, Readiness::Waiting(ref t) if t.contains("decide")), "{late:?}");
}
