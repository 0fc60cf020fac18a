//! `inspectd replay` through the real binary: a video encoded from known frames, some with
//! generated defects.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

use daemon::{washer_model, washer_video, SIZE};
use inspectd::source::VideoReader;
use inspectd::synth::video::VideoPlan;
use serde_json::Value;

struct Fixture {
    dir: PathBuf,
    video: PathBuf,
    labels: PathBuf,
    plan: VideoPlan,
}

/// A 60-frame washer video at 10 fps with defect episodes at frames 15..19 and 40..44.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("inspectd-replay-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let video = dir.join("run.mkv");
        let plan = washer_video(&video, 60, 10, vec![(15, 4), (40, 4)]);
        let labels = dir.join("labels.json");
        std::fs::write(&labels, serde_json::to_vec(&plan.labels()).unwrap()).unwrap();
        washer_model();
        Fixture { dir, video, labels, plan }
    })
}

fn inspectd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inspectd")).args(args).env("INSPECTD_LOG", "warn").output().unwrap()
}

fn replay(extra: &[&str], out: &Path) -> Output {
    let model = washer_model().to_str().unwrap().to_string();
    let mut args = vec!["replay", "--model", &model, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    inspectd(&args)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn replay_scores_like_score_finds_defects_and_raises_the_expected_alarms() {
    let f = fixture();
    let out = f.dir.join("results.jsonl");
    let summary = f.dir.join("summary.json");
    let video = f.video.to_str().unwrap();
    let o = replay(
        &["--labels", f.labels.to_str().unwrap(), "--summary", summary.to_str().unwrap(), video],
        &out,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = lines(&out);
    assert_eq!(rows.len(), 60, "every frame scored once");
    assert!(rows.iter().enumerate().all(|(i, r)| r["frame"] == i as u64));

    // Same frames through `inspectd score` on the decoded images.
    let frames: Vec<_> = VideoReader::open(&f.video, None, SIZE, SIZE).unwrap().map(Result::unwrap).collect();
    let picks = [0usize, 16, 41, 59];
    let mut files = Vec::new();
    for &i in &picks {
        let path = f.dir.join(format!("frame{i}.png"));
        frames[i].to_image().save(&path).unwrap();
        files.push(path.to_str().unwrap().to_string());
    }
    let model = washer_model().to_str().unwrap().to_string();
    let mut args = vec!["score", "--model", model.as_str()];
    args.extend(files.iter().map(String::as_str));
    let scored = inspectd(&args);
    let scores: Vec<f64> = String::from_utf8_lossy(&scored.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["score"].as_f64().unwrap())
        .collect();
    for (&i, s) in picks.iter().zip(&scores) {
        let r = rows[i]["score"].as_f64().unwrap();
        assert!((r - s).abs() <= 1e-4 * s.abs().max(1.0), "frame {i}: replay {r} vs score {s}");
    }

    // Defect frames stand out: frame AUROC from the summary.
    let s: Value = serde_json::from_slice(&std::fs::read(&summary).unwrap()).unwrap();
    let auroc = s["labels"]["auroc"].as_f64().unwrap();
    assert!(auroc >= 0.95, "frame AUROC {auroc}");
    assert_eq!(s["frames_scored"], 60);

    // Default alarm settings (k = 3 of n = 5, clear after 5): one raise inside each episode and
    // a clear after it.
    let events: Vec<(u64, String)> = rows
        .iter()
        .flat_map(|r| {
            r["alarms"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |a| (r["frame"].as_u64().unwrap(), a["event"].as_str().unwrap().to_string()))
        })
        .collect();
    let raised: Vec<u64> = events.iter().filter(|e| e.1 == "raised").map(|e| e.0).collect();
    let cleared: Vec<u64> = events.iter().filter(|e| e.1 == "cleared").map(|e| e.0).collect();
    assert_eq!(raised.len(), 2, "{events:?}");
    assert!((15..19).contains(&raised[0]) && (40..44).contains(&raised[1]), "{events:?}");
    assert!(
        cleared.len() == 2 && (19..=26).contains(&cleared[0]) && (44..=51).contains(&cleared[1]),
        "{events:?}"
    );
    assert!(f.plan.defect_at(raised[0] as usize).is_some());
}

#[test]
fn the_same_input_gives_byte_identical_output() {
    let f = fixture();
    let (a, b) = (f.dir.join("a.jsonl"), f.dir.join("b.jsonl"));
    let video = f.video.to_str().unwrap();
    assert!(replay(&["--every", "2", video], &a).status.success());
    assert!(replay(&["--every", "2", video], &b).status.success());
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert_eq!(lines(&a).len(), 30, "--every 2 scores every other frame");
}

#[test]
fn a_corrupt_file_is_named_and_the_other_inputs_still_run() {
    let f = fixture();
    let broken = f.dir.join("broken.mkv");
    std::fs::write(&broken, b"this is not a matroska file at all").unwrap();
    let out = f.dir.join("mixed.jsonl");
    let o = replay(&["--end", "10", broken.to_str().unwrap(), f.video.to_str().unwrap()], &out);
    assert_eq!(o.status.code(), Some(1), "a failed input makes the run fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("broken.mkv"), "{err}");
    assert_eq!(lines(&out).len(), 10, "the good input was replayed up to --end");
}

#[test]
fn realtime_pace_takes_about_the_videos_duration() {
    let f = fixture();
    let out = f.dir.join("realtime.jsonl");
    let started = Instant::now();
    let o = replay(&["--pace", "realtime", "--end", "3s", f.video.to_str().unwrap()], &out);
    let took = started.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // 3 s of video; start-up (model load, warm-up) adds a little.
    assert!((2.8..6.0).contains(&took), "took {took:.2} s");
}

#[test]
fn image_folders_and_annotated_video_work() {
    let f = fixture();
    let folder = f.dir.join("frames");
    std::fs::create_dir_all(&folder).unwrap();
    for (i, frame) in VideoReader::open(&f.video, None, SIZE, SIZE).unwrap().take(6).enumerate() {
        frame.unwrap().to_image().save(folder.join(format!("{i:03}.png"))).unwrap();
    }
    let out = f.dir.join("folder.jsonl");
    let annotated = f.dir.join("annotated.mkv");
    let o = replay(
        &["--annotate", annotated.to_str().unwrap(), "--format", "csv", folder.to_str().unwrap()],
        &out,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 7, "header + 6 frames:\n{csv}");
    assert!(csv.starts_with("input,frame,pts_ms,score"));
    let back: Vec<_> = VideoReader::open(&annotated, None, SIZE, SIZE).unwrap().map(Result::unwrap).collect();
    assert_eq!(back.len(), 6, "the annotated video has every frame");
}

/// Evidence follows the daemon's policy (the one judge): by default one save per raised alarm,
/// not one per NG frame as replay used to do.
#[test]
fn evidence_is_saved_per_raised_alarm_like_the_daemon() {
    let f = fixture();
    let out = f.dir.join("evidence.jsonl");
    let evidence = f.dir.join("evidence");
    let _ = std::fs::remove_dir_all(&evidence);
    let o = replay(&["--evidence", evidence.to_str().unwrap(), f.video.to_str().unwrap()], &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = lines(&out);
    let ng = rows.iter().filter(|r| r["verdict"] == "NG").count();
    let raised: Vec<&Value> = rows
        .iter()
        .flat_map(|r| r["alarms"].as_array().unwrap())
        .filter(|a| a["event"] == "raised")
        .collect();
    assert_eq!(raised.len(), 2);
    assert!(ng > raised.len(), "more NG frames ({ng}) than alarms");
    let mut files = Vec::new();
    let mut dirs = vec![evidence.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            if e.file_type().unwrap().is_dir() {
                dirs.push(e.path());
            } else {
                files.push(e.path().display().to_string());
            }
        }
    }
    files.sort();
    // A frame and its heatmap per raised alarm.
    assert_eq!(files.len(), 2 * raised.len(), "{files:?}");
}

/// With `--mqtt`, replay publishes what the daemon publishes for the same frames: results,
/// alarm events, and the retained `alarm/state` (which it used to leave out), under node
/// `{node}-replay`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_replay_publishes_alarm_state_like_the_daemon() {
    let f = fixture();
    let dir = broker::TestDir::new("replay-mqtt");
    let broker = broker::Broker::start(&dir);
    let config = format!(
        "{}\n[cameras.line]\nmodel = \"washer\"\n[cameras.line.source]\nkind = \"file\"\npath = \"{}\"\n",
        daemon::config_head("station", &dir.0, broker.port),
        f.video.display()
    );
    let file = dir.path("replay.toml");
    std::fs::write(&file, config).unwrap();
    let mut sub = broker::Subscriber::connect(broker.port, "inspectd/station-replay/line/#").await;
    let out = f.dir.join("mqtt.jsonl");
    let video = f.video.to_str().unwrap().to_string();
    let args = ["--mqtt", "--config", file.to_str().unwrap(), "--camera", "line", video.as_str()];
    let o = tokio::task::block_in_place(|| replay(&args, &out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = sub.drain_for(std::time::Duration::from_secs(2)).await;
    let of = |leaf: &str| -> Vec<Value> {
        got.iter()
            .filter(|m| m.topic == format!("inspectd/station-replay/line/{leaf}"))
            .map(|m| m.json())
            .collect()
    };
    assert_eq!(of("result").len(), 60, "every frame's result");
    assert!(of("result").iter().all(|r| r["replay"] == true));
    let alarms = of("alarm");
    assert_eq!(alarms.iter().filter(|a| a["event"] == "raised").count(), 2, "{alarms:?}");
    let states = of("alarm/state");
    for s in &states {
        broker::assert_valid("alarm_state", s);
    }
    // Retained states are latest-value: when the publisher lags behind a fast replay (a loaded
    // machine), an alarm raised and cleared in between goes out only as cleared, so whether an
    // active state is seen is timing. The raised events above are the durable record.
    assert!(!states.is_empty(), "replay publishes the retained alarm state");
    assert_eq!(states.last().map(|s| s["active"].clone()), Some(Value::Bool(false)), "cleared at the end");
}
