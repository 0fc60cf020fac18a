//! The daemon under a systemd-like supervisor: the sd_notify sequence on a real datagram
//! socket (READY, WATCHDOG pings, RELOADING/READY around SIGHUP, STOPPING), and reloads that
//! swap a replaced bundle without losing frames or refuse a broken one.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use broker::{Broker, Subscriber, TestDir};
use daemon::{config_head, washer_model};
use serde_json::Value;

/// Copies a bundle directory.
fn copy_bundle(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Notifications received so far.
fn notifications(socket: &UnixDatagram) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = socket.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

fn wait_for(socket: &UnixDatagram, seen: &mut Vec<String>, what: &str, timeout: Duration) {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        seen.extend(notifications(socket));
        if seen.iter().any(|m| m.lines().any(|l| l == what)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {what} within {timeout:?}; got {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_sequence_and_reloads_swap_or_refuse_models() {
    let dir = TestDir::new("reload");
    let broker = Broker::start(&dir);
    // The daemon reads a bundle the test can replace.
    let bundle = dir.path("model");
    copy_bundle(washer_model(), &bundle);
    let socket_path = dir.path("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let head = config_head("reload", &dir.0, broker.port)
        .replace(&washer_model().display().to_string(), &bundle.display().to_string());
    let config = format!(
        "{head}\n[cameras.cam1]\nmodel = \"washer\"\n[cameras.cam1.source]\nkind = \"test\"\npattern = \"snow\"\nfps = 8\n"
    );
    let file = dir.path("reload.toml");
    std::fs::write(&file, config).unwrap();
    let log = dir.path("reload.log");
    let mut sub = Subscriber::connect(broker.port, "inspectd/reload/cam1/result").await;
    let child = Command::new(env!("CARGO_BIN_EXE_inspectd"))
        .args(["run", "--config"])
        .arg(&file)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .env("INSPECTD_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // Killed if an assertion fails, so a failed run leaves no daemon behind.
    let guard = KillOnDrop(Some(child));
    let mut seen = Vec::new();
    wait_for(&socket, &mut seen, "READY=1", Duration::from_secs(30));
    wait_for(&socket, &mut seen, "WATCHDOG=1", Duration::from_secs(5));
    let first = sub.expect("a result", Duration::from_secs(10), |_| true).await.json();
    let old_sha = first["model"]["sha"].as_str().unwrap().to_string();

    // Replace the bundle with a retrained one (different weights), then SIGHUP.
    let retrained = dir.path("retrained");
    retrain(&retrained, 2, None);
    copy_bundle(&retrained, &bundle);
    seen.clear();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_for(&socket, &mut seen, "RELOADING=1", Duration::from_secs(10));
    wait_for(&socket, &mut seen, "READY=1", Duration::from_secs(30));
    let new = sub
        .expect("a result from the new model", Duration::from_secs(15), |m| {
            m.json()["model"]["sha"] != old_sha.as_str()
        })
        .await
        .json();
    assert_ne!(new["model"]["sha"], old_sha.as_str());
    // No frame lost for the unchanged camera across the swap.
    let batch = sub.drain_for(Duration::from_secs(2)).await;
    let seqs: Vec<u64> = std::iter::once(new["seq"].as_u64().unwrap())
        .chain(batch.iter().map(|m| m.json()["seq"].as_u64().unwrap()))
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "contiguous sequence after the swap: {seqs:?}");

    // A broken new bundle (the original model, its weights damaged in the copy) is refused;
    // the running model keeps scoring.
    copy_bundle(washer_model(), &bundle);
    let weights = bundle.join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes.extend_from_slice(b"junk");
    std::fs::write(&weights, bytes).unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_for(&socket, &mut seen, "RELOADING=1", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Reload refused") && text.contains("weights.safetensors"), "{text}");
    let after: Value =
        sub.expect("a result after the refused reload", Duration::from_secs(10), |_| true).await.json();
    assert_eq!(after["model"]["sha"], new["model"]["sha"], "the swapped-in model keeps running");

    // A bundle with a stored view needs frames at the camera's own size, which only new
    // pipelines deliver: refused, naming the restart.
    let viewed = dir.path("viewed");
    retrain(&viewed, 3, Some(inspectd::train::run::ViewRequest::default()));
    copy_bundle(&viewed, &bundle);
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    wait_for(&socket, &mut seen, "RELOADING=1", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("stored view") && text.contains("needs a restart"), "{text}");
    let after: Value =
        sub.expect("a result after the refused view", Duration::from_secs(10), |_| true).await.json();
    assert_eq!(after["model"]["sha"], new["model"]["sha"], "the running model keeps scoring");

    seen.clear();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let mut child = guard.defuse();
    let status = child.wait().unwrap();
    seen.extend(notifications(&socket));
    assert!(status.success(), "clean exit");
    assert!(seen.iter().any(|m| m.contains("STOPPING=1")), "{seen:#?}");
}

/// The test model again, with another `seed`: same input size, different weights, and `view`.
fn retrain(out: &Path, seed: u64, view: Option<inspectd::train::run::ViewRequest>) {
    use inspectd::model::manifest::RadiusMode;
    use inspectd::model::runtime::{Runtime, RuntimeSettings};
    use inspectd::synth::{write_category, Category, SynthSpec};
    use inspectd::train::{
        calibrate::NormalCalibration,
        fit::FitConfig,
        run::{train, TrainSettings},
    };
    let spec = SynthSpec {
        category: Category::Washer,
        size: daemon::SIZE,
        train_good: 8,
        test_good: 1,
        test_defect_per_type: 1,
        seed: 4,
    };
    let data = write_category(&spec, out.parent().unwrap()).unwrap().category_dir;
    let settings = TrainSettings {
        inputs: vec![data],
        out: out.to_path_buf(),
        backbone: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".local/models/backbone.onnx"),
        model_id: "washer-retrained".into(),
        width: daemon::SIZE,
        height: daemon::SIZE,
        fit: FitConfig {
            epochs: 1,
            seed,
            batch: 4,
            radius_mode: RadiusMode::Trainable,
            ..FitConfig::default()
        },
        select: None,
        sigma: 4.0,
        position_norm: true,
        holdout: 0.25,
        calibration: NormalCalibration::default(),
        validation: None,
        min_images: 2,
        video_frames: 1,
        live: None,
        view,
    };
    train(&Runtime::init(RuntimeSettings::default()).unwrap(), &settings, &mut |_| {}).unwrap();
}

/// A child process killed when dropped (a panicking test must not leave a daemon running).
struct KillOnDrop(Option<std::process::Child>);

impl KillOnDrop {
    fn defuse(mut self) -> std::process::Child {
        self.0.take().expect("child present until defused")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
