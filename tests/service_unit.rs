//! The systemd unit (`systemd/inspectd.service`) as systemd itself reads it: `systemd-analyze
//! verify` must accept it, its security exposure must not creep up, and its stop timeout must
//! leave the drain its deadline.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn unit_text() -> String {
    std::fs::read_to_string(repo("systemd/inspectd.service")).expect("systemd/inspectd.service")
}

/// The unit with ExecStart pointing at the binary this test run built, in a directory of its
/// own (verify checks that the executable exists; the installed path need not).
fn unit_copy(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("inspectd-unit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    let text = unit_text().replace("/usr/local/bin/inspectd", env!("CARGO_BIN_EXE_inspectd"));
    let unit = dir.join("inspectd.service");
    std::fs::write(&unit, text).expect("write unit copy");
    (dir, unit)
}

fn analyze_available() -> bool {
    let found = Command::new("systemd-analyze").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipped: systemd-analyze is not installed (Debian package systemd)");
    }
    found
}

/// `Key=value` values of the unit, in order (repeated keys repeat).
fn values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .map(str::to_string)
        .collect()
}

fn seconds(value: &str) -> f64 {
    let v = value.trim();
    let (number, scale) = if let Some(n) = v.strip_suffix("min") {
        (n, 60.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        (v, 1.0)
    };
    number.trim().parse::<f64>().unwrap_or_else(|_| panic!("not a duration: {value}")) * scale
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    if !analyze_available() {
        return;
    }
    let (dir, unit) = unit_copy("verify");
    let out = Command::new("systemd-analyze").arg("verify").arg(&unit).output().expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stderr}");
    let about_us: Vec<&str> = stderr.lines().filter(|l| l.contains("inspectd")).collect();
    assert!(about_us.is_empty(), "systemd-analyze verify warns about the unit:\n{}", about_us.join("\n"));
}

#[test]
fn security_exposure_stays_low() {
    if !analyze_available() {
        return;
    }
    let (dir, unit) = unit_copy("security");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .current_dir(&dir)
        .output()
        .expect("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(level) =
        text.lines().find_map(|l| l.split("Overall exposure level for inspectd.service: ").nth(1))
    else {
        eprintln!("skipped: this systemd-analyze cannot review unit files offline (systemd < 252)");
        return;
    };
    let score: f64 = level.split_whitespace().next().and_then(|s| s.parse().ok()).expect("exposure number");
    assert!(score <= 2.0, "exposure {score} (1.6 when written); what loosened?\n{text}");
}

#[test]
fn unit_runs_as_a_watched_notify_service_that_may_drain() {
    let text = unit_text();
    assert_eq!(values(&text, "Type"), ["notify"]);
    assert_eq!(values(&text, "NotifyAccess"), ["main"]);
    assert_eq!(values(&text, "RestartPreventExitStatus"), ["78"], "no restart loop on a config error");
    assert_eq!(
        values(&text, "ExecStart"),
        ["/usr/local/bin/inspectd run --config /etc/inspectd/inspectd.toml"]
    );
    assert_eq!(values(&text, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    let watchdog = seconds(&values(&text, "WatchdogSec")[0]);
    assert!(watchdog >= 2.0 * 10.0, "pings stop 10 s after a stall; WatchdogSec must leave room");

    // SIGKILL must not cut the drain short: TimeoutStopSec above the configured deadline.
    let config: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo("config/inspectd.toml")).expect("example config"))
            .expect("example config is TOML");
    let deadline = config["node"]["shutdown_deadline_s"].as_float().expect("node.shutdown_deadline_s");
    let stop = seconds(&values(&text, "TimeoutStopSec")[0]);
    assert!(stop >= deadline + 10.0, "TimeoutStopSec {stop} s vs a drain deadline of {deadline} s");
}
