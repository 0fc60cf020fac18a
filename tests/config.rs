//! Loading configuration files: the example parses, and bad files report every problem with
//! its key and the file.

use std::path::{Path, PathBuf};

use inspectd::config::ConfigError;
use inspectd::model::runtime::Provider;
use inspectd::settings::Settings;
use inspectd::util::rng::SplitMix64;

fn parse(text: &str, file: &Path) -> Result<inspectd::config::Config, ConfigError> {
    Settings::from_toml(text, file).map(|s| s.config)
}

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/inspectd.toml")
}

#[test]
fn the_example_config_is_valid() {
    let text = std::fs::read_to_string(example()).unwrap();
    let c = parse(&text, &example()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.node.id, "line1-station1");
    assert_eq!(c.cameras["cam1"].alarm.k, 3);
    assert_eq!(c.cameras["cam1"].source.kind(), "gige");
    assert_eq!(c.mqtt.results.qos, 0);
}

#[test]
fn every_problem_is_reported_with_key_and_file() {
    let text = r#"
        [node]
        id = "bad id"
        [mqtt]
        hots = "typo"
        [models.m]
        path = "/x"
        [cameras.c1]
        model = "missing"
        [cameras.c1.source]
        kind = "test"
        [cameras.c1.alarm]
        k = 6
        n = 5
        z = 1
    "#;
    let file = Path::new("/etc/inspectd/inspectd.toml");
    let err = parse(text, file).unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("/etc/inspectd/inspectd.toml has"), "{shown}");
    // Structural problems in different sections are all reported.
    assert!(shown.contains("mqtt.hots: unknown field `hots`"), "{shown}");
    assert!(shown.contains("cameras.c1.alarm.z: unknown field `z`"), "{shown}");
    // Once the structure is right, every semantic problem is reported.
    let text = text.replace("hots", "host").replace("z = 1", "");
    let err = parse(&text, file).unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"node.id"), "{keys:?}");
    assert!(keys.contains(&"cameras.c1.model"), "{keys:?}");
    assert!(keys.contains(&"cameras.c1.alarm"), "{keys:?}");
}

#[test]
fn environment_overrides_the_file_and_missing_files_are_named() {
    let dir = std::env::temp_dir().join(format!("inspectd-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.toml");
    std::fs::copy(example(), &file).unwrap();
    // Only this test sets this variable, and it reads it back through the loader.
    std::env::set_var("INSPECTD__MQTT__PORT", "18883");
    let c = Settings::load(&file).unwrap_or_else(|e| panic!("{e}"));
    std::env::remove_var("INSPECTD__MQTT__PORT");
    assert_eq!(c.config.mqtt.port, 18883);
    assert_eq!(c.mqtt.broker, "127.0.0.1:18883", "the client settings use the override");
    assert_eq!(c.models["part-a"].max_batch.get(), 4, "file values survive the overlay");
    let err = Settings::load(&dir.join("absent.toml")).unwrap_err().to_string();
    assert!(err.contains("absent.toml") && err.contains("not found"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A small valid config; tests change one line of it.
const BASE: &str = r#"
[node]
id = "n1"
shutdown_deadline_s = 5.0
readiness_timeout_s = 30.0
[runtime]
providers = ["cpu"]
[mqtt]
port = 1883
keep_alive_s = 15
status_interval_s = 10.0
[http]
bind = "127.0.0.1:9898"
[models.m]
path = "/nonexistent/model"
batch = 4
max_wait_ms = 20
[cameras.c]
model = "m"
queue = 4
[cameras.c.source]
kind = "test"
[cameras.c.alarm]
k = 3
n = 5
[cameras.c.evidence]
min_interval_s = 5.0
"#;

fn keys(err: &ConfigError) -> Vec<&str> {
    err.problems.iter().map(|p| p.key.as_str()).collect()
}

/// Sets `key` in `[section]`: replaces its line there, or adds one under the header.
fn with(text: &str, section: &str, key: &str, value: &str) -> String {
    let header = format!("[{section}]");
    let mut out = Vec::new();
    let (mut inside, mut done) = (false, false);
    for line in text.lines() {
        if line.starts_with('[') {
            inside = line == header;
            out.push(line.to_string());
            if inside && !text_has_key(text, &header, key) {
                out.push(format!("{key} = {value}"));
                done = true;
            }
            continue;
        }
        if inside && !done && line.starts_with(&format!("{key} =")) {
            out.push(format!("{key} = {value}"));
            done = true;
        } else {
            out.push(line.to_string());
        }
    }
    assert!(done, "no [{section}] in the config");
    out.join("\n")
}

/// Whether `[header]`'s own lines set `key`.
fn text_has_key(text: &str, header: &str, key: &str) -> bool {
    let Some(at) = text.find(&format!("{header}\n")) else { return false };
    text[at + header.len()..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('['))
        .any(|l| l.starts_with(&format!("{key} =")))
}

#[test]
fn the_base_config_converts() {
    let s = Settings::from_toml(BASE, Path::new("base.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.node.shutdown_deadline, std::time::Duration::from_secs(5));
    assert_eq!(s.cameras["c"].evidence_interval, std::time::Duration::from_secs(5));
}

#[test]
fn required_providers_are_in_the_try_list() {
    // Finding 1: `required_providers = ["cuda"]` with the default `providers = ["cpu"]` must
    // try CUDA (and fail without it), not silently run on the CPU.
    let text = with(BASE, "runtime", "required_providers", r#"["cuda"]"#);
    let s = Settings::from_toml(&text, Path::new("c.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.runtime.providers, vec![Provider::Cuda, Provider::Cpu]);
    assert_eq!(s.runtime.required, vec![Provider::Cuda]);
}

#[test]
fn bad_numbers_are_problems_not_panics() {
    // Finding 2: each of these used to pass validation (and panic or fail later in `run`).
    let cases = [
        ("node", "readiness_timeout_s", "-1.0", "node.readiness_timeout_s"),
        ("node", "shutdown_deadline_s", "nan", "node.shutdown_deadline_s"),
        ("node", "readiness_timeout_s", "inf", "node.readiness_timeout_s"),
        ("mqtt", "status_interval_s", "-inf", "mqtt.status_interval_s"),
        ("mqtt", "keep_alive_s", "0", "mqtt.keep_alive_s"),
        ("mqtt", "password", r#""secret""#, "mqtt.password"),
        ("cameras.c.evidence", "min_interval_s", "1e300", "cameras.c.evidence.min_interval_s"),
        ("cameras.c", "threshold", "nan", "cameras.c.threshold"),
        ("models.m", "batch", "0", "models.m.batch"),
        ("cameras.c", "queue", "0", "cameras.c.queue"),
    ];
    let mut all = BASE.to_string();
    for (section, key, value, named) in cases {
        let text = with(BASE, section, key, value);
        let err = Settings::from_toml(&text, Path::new("c.toml")).expect_err(named);
        assert_eq!(keys(&err), vec![named], "{section}.{key} = {value}: {err}");
        all = with(&all, section, key, value);
    }
    // All of them at once: every one is reported, each once.
    let err = Settings::from_toml(&all, Path::new("c.toml")).expect_err("all bad");
    let mut found = keys(&err);
    found.sort();
    let mut expected: Vec<&str> = cases.iter().map(|c| c.3).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(found, expected, "{err}");
}

#[test]
fn a_type_error_does_not_hide_an_unknown_key_in_the_same_section() {
    let text = with(&with(BASE, "mqtt", "port", r#""not a number""#), "mqtt", "hots", r#""typo""#);
    let text = with(&text, "node", "shutdown_deadline_s", r#""soon""#);
    let text = with(&text, "cameras.c.alarm", "k", "-3");
    let text = with(&text, "cameras.c.alarm", "z", "1");
    let err = Settings::from_toml(&text, Path::new("c.toml")).expect_err("bad");
    let mut found = keys(&err);
    found.sort();
    assert_eq!(
        found,
        vec!["cameras.c.alarm.k", "cameras.c.alarm.z", "mqtt.hots", "mqtt.port", "node.shutdown_deadline_s"],
        "{err}"
    );
}

/// The crate's own seeded generator, so the generated configs are the same on every run.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.0.below(items.len())]
    }
}

#[test]
fn generated_configs_are_accepted_or_rejected_with_a_named_key() {
    let keys_to_mutate = [
        ("node", "id"),
        ("node", "shutdown_deadline_s"),
        ("node", "readiness_timeout_s"),
        ("runtime", "providers"),
        ("runtime", "required_providers"),
        ("runtime", "threads"),
        ("mqtt", "host"),
        ("mqtt", "port"),
        ("mqtt", "prefix"),
        ("mqtt", "client_id"),
        ("mqtt", "keep_alive_s"),
        ("mqtt", "username"),
        ("mqtt", "password"),
        ("mqtt", "status_interval_s"),
        ("mqtt", "outbox_max_alarms"),
        ("http", "bind"),
        ("models.m", "batch"),
        ("models.m", "max_wait_ms"),
        ("cameras.c", "queue"),
        ("cameras.c", "threshold"),
        ("cameras.c", "enabled"),
        ("cameras.c.alarm", "k"),
        ("cameras.c.alarm", "n"),
        ("cameras.c.alarm", "clear_after"),
        ("cameras.c.evidence", "min_interval_s"),
        ("cameras.c.source", "fps"),
        ("cameras.c.source", "width"),
        ("cameras.c.source", "pattern"),
    ];
    let values = [
        "0",
        "1",
        "-1",
        "3",
        "65536",
        "9223372036854775807",
        "-9223372036854775808",
        "0.5",
        "-0.0",
        "1e308",
        "-1e308",
        "nan",
        "inf",
        "-inf",
        r#""""#,
        r#""x""#,
        r#""a/b""#,
        r#""+""#,
        r#""127.0.0.1:1""#,
        "true",
        "[]",
        r#"["cuda"]"#,
        r#"["gpu"]"#,
        "{}",
    ];
    let mut rng = Rng(SplitMix64::new(7));
    let (mut accepted, mut rejected) = (0, 0);
    for round in 0..3000 {
        let mut text = BASE.to_string();
        let mut changed = Vec::new();
        for _ in 0..1 + rng.next() % 3 {
            let (section, key) = keys_to_mutate[(rng.next() % keys_to_mutate.len() as u64) as usize];
            let value = rng.pick(&values);
            text = with(&text, section, key, value);
            changed.push(format!("{section}.{key}"));
        }
        let outcome = std::panic::catch_unwind(|| Settings::from_toml(&text, Path::new("gen.toml")));
        let result = outcome.unwrap_or_else(|_| panic!("round {round} panicked on:\n{text}"));
        match result {
            Ok(_) => accepted += 1,
            Err(err) => {
                rejected += 1;
                assert!(!err.problems.is_empty(), "round {round}: an error without problems");
                for p in &err.problems {
                    // Each problem names a changed key, one of its parents (a table with a
                    // cross-field rule) or, for a disabled camera, the cameras table.
                    let related =
                        changed.iter().any(|c| c == &p.key || c.starts_with(&format!("{}.", p.key)))
                            || p.key == "cameras";
                    assert!(related, "round {round}: problem {p:?} names no changed key {changed:?}\n{text}");
                    assert!(!p.message.is_empty());
                }
            }
        }
    }
    // Both outcomes must be common, or the generator tests nothing.
    assert!(accepted > 100 && rejected > 1000, "accepted {accepted}, rejected {rejected}");
}

#[test]
fn a_knn_window_out_of_range_is_named_and_one_in_range_is_kept() {
    for bad in ["0", "65"] {
        let text = with(BASE, "models.m", "knn_window", bad);
        let err = Settings::from_toml(&text, Path::new("w.toml")).expect_err(bad);
        assert_eq!(keys(&err), vec!["models.m.knn_window"], "{err}");
    }
    let text = with(BASE, "models.m", "knn_window", "8");
    let s = Settings::from_toml(&text, Path::new("w.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.models["m"].knn_window, Some(8));
}

#[test]
fn stations_triggers_and_sparkplug_are_checked_together() {
    let base = r#"
        [node]
        id = "n1"
        [models.m]
        path = "/x"
        [cameras.a]
        model = "m"
        mode = "triggered"
        trigger = { input = "line" }
        [cameras.a.source]
        kind = "test"
        [cameras.b]
        model = "m"
        [cameras.b.source]
        kind = "test"
        [cameras.c]
        model = "m"
        mode = "triggered"
        trigger = { timeout_s = 0.5 }
        [cameras.c.source]
        kind = "test"
        [stations.b]
        cameras = ["a", "ghost"]
        [stations.s2]
        cameras = ["b", "a"]
        [sparkplug]
        group_id = "line/3"
    "#;
    let file = Path::new("/etc/inspectd/inspectd.toml");
    let err = Settings::from_toml(base, file).expect_err("bad stations");
    let shown = err.to_string();
    for expected in [
        "cameras.a.trigger.input: a test source has no trigger line",
        "stations.b: 'b' is the id of a camera outside this station",
        "stations.b.cameras: no camera named 'ghost'",
        "stations.s2.cameras: camera 'b' needs mode = \"triggered\"",
        "sparkplug.group_id",
    ] {
        assert!(shown.contains(expected), "{expected}\n{shown}");
    }
    // A triggered camera in no station is its own station, with its own deadline.
    let good = r#"
        [node]
        id = "n1"
        [models.m]
        path = "/x"
        [cameras.c]
        model = "m"
        mode = "triggered"
        trigger = { timeout_s = 0.5 }
        [cameras.c.source]
        kind = "test"
        [cameras.d]
        model = "m"
        mode = "triggered"
        [cameras.d.source]
        kind = "test"
        [stations.pair]
        cameras = ["d"]
        timeout_s = 3
    "#;
    let s = Settings::from_toml(good, file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.stations.keys().collect::<Vec<_>>(), ["c", "pair"]);
    assert_eq!(s.stations["c"].timeout, std::time::Duration::from_millis(500));
    assert_eq!(s.stations["pair"].timeout, std::time::Duration::from_secs(3));
}

#[test]
fn genicam_settings_are_checked_before_any_camera_is_opened() {
    let text = r#"
        [node]
        id = "n1"
        [models.m]
        path = "/x"
        [cameras.g]
        model = "m"
        mode = "triggered"
        trigger = { activation = "rising edge" }
        [cameras.g.source]
        kind = "gige"
        features = { "Bad Name" = 1, Gain = "very high", ExposureAuto = "Off" }
        [cameras.u]
        model = "m"
        [cameras.u.source]
        kind = "usb3vision"
        camera = "cam-u"
        packet_size = 9000
    "#;
    let err = Settings::from_toml(text, Path::new("/etc/inspectd/inspectd.toml"))
        .expect_err("bad GenICam settings");
    let shown = err.to_string();
    for expected in [
        "'Bad Name' is not a GenICam feature name",
        "source.features.Gain: 'very high' is not an enumeration entry name",
        "cameras.g.source.camera: GenICam settings need the camera's name",
        "cameras.g.trigger.activation: must be a GenICam entry name",
        "GigE only",
    ] {
        assert!(shown.contains(expected), "{expected}\n{shown}");
    }
}

#[test]
fn frame_health_values_are_checked_naming_each_key() {
    let file = Path::new("/etc/inspectd/inspectd.toml");
    let text = format!(
        "{BASE}[cameras.c.health]\nclipped_fraction = 1.5\nmin_focus_ratio = -0.1\n[cameras.c.health.alarm]\nk = 4\nn = 2\n"
    );
    let err = Settings::from_toml(&text, file).expect_err("bad health values");
    let keys = keys(&err);
    for key in
        ["cameras.c.health.clipped_fraction", "cameras.c.health.min_focus_ratio", "cameras.c.health.alarm"]
    {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }
    let fine = format!("{BASE}[cameras.c.health]\nclipped_fraction = 0.99\nmin_focus_ratio = 0\n");
    Settings::from_toml(&fine, file).expect("valid health values");
}
