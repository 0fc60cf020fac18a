//! Log lines as journald and log shippers receive them. The subscriber is process-global, so
//! each case runs in a child process: this test binary again, told by an environment variable
//! to log a few events and exit.

use std::process::Command;

const CHILD: &str = "INSPECTD_TEST_LOG_CHILD";

/// The child's side: installs logging as `inspectd run` would, and logs.
#[test]
fn child_logs_when_asked() {
    let Ok(format) = std::env::var(CHILD) else { return };
    let format = if format == "json" {
        inspectd::logging::LogFormat::Json
    } else {
        inspectd::logging::LogFormat::Text
    };
    inspectd::logging::init_with("info", format);
    tracing::info!(camera = "cam1", "Source streaming.");
    tracing::warn!("MQTT disconnected.");
    tracing::error!(model = "part-a", "Scoring failed.");
    tracing::debug!("filtered out at info");
}

/// Runs the child with stderr in a file; `journal` sets JOURNAL_STREAM to that file's
/// device:inode as systemd does for the journal socket, or to another one.
fn run_child(name: &str, format: &str, journal: Option<bool>) -> Vec<String> {
    let path = std::env::temp_dir().join(format!("inspectd-log-{name}-{}", std::process::id()));
    let file = std::fs::File::create(&path).expect("log file");
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", "child_logs_when_asked", "--nocapture", "--test-threads=1"])
        .env(CHILD, format)
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(file.try_clone().expect("clone"));
    if let Some(matching) = journal {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().expect("stat");
        let (dev, ino) = (meta.dev(), if matching { meta.ino() } else { meta.ino() + 1 });
        cmd.env("JOURNAL_STREAM", format!("{dev}:{ino}"));
    }
    assert!(cmd.status().expect("run child").success());
    let text = std::fs::read_to_string(&path).expect("read log");
    let _ = std::fs::remove_file(&path);
    text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[test]
fn under_journald_lines_carry_a_priority_and_no_timestamp() {
    let lines = run_child("journal", "text", Some(true));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("<6>") && lines[0].contains("Source streaming. camera=\"cam1\""),
        "{lines:?}"
    );
    assert!(lines[1].starts_with("<4>") && lines[1].contains("MQTT disconnected."), "{lines:?}");
    assert!(lines[2].starts_with("<3>") && lines[2].contains("Scoring failed."), "{lines:?}");
    for (line, level) in lines.iter().zip(["INFO", "WARN", "ERROR"]) {
        let rest = line.split_once('>').map(|(_, r)| r.trim_start()).unwrap_or_default();
        assert!(rest.starts_with(level), "the level right after the priority, no timestamp: {line}");
    }
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "no colour codes: {lines:?}");
}

#[test]
fn elsewhere_lines_keep_their_timestamp_and_no_priority() {
    // Another stream's JOURNAL_STREAM (inherited, stderr redirected) must not switch formats.
    for journal in [None, Some(false)] {
        let lines = run_child(&format!("plain-{journal:?}"), "text", journal);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines.iter().all(|l| !l.starts_with('<')), "{lines:?}");
        let stamp = lines[0].split_whitespace().next().expect("first word");
        assert!(
            stamp.len() >= 20 && stamp.contains('T') && stamp.ends_with('Z'),
            "timestamp first: {lines:?}"
        );
    }
}

#[test]
fn json_lines_are_objects_with_fields_at_the_top() {
    let lines = run_child("json", "json", Some(true));
    assert_eq!(lines.len(), 3, "{lines:?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("a JSON object per line");
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["message"], "Source streaming.");
    assert_eq!(first["camera"], "cam1");
    assert!(first["timestamp"].is_string());
    let last: serde_json::Value = serde_json::from_str(&lines[2]).expect("JSON");
    assert_eq!((last["level"].as_str(), last["model"].as_str()), (Some("ERROR"), Some("part-a")));
}
