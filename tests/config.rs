//! Loading configuration files: the example parses, and bad files report every problem with
//! its key and the file.

use std::path::{Path, PathBuf};

use inspectd::config::{self, from_toml_for_test as parse};

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
    let c = config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    std::env::remove_var("INSPECTD__MQTT__PORT");
    assert_eq!(c.mqtt.port, 18883);
    assert_eq!(c.models["part-a"].batch, 4, "file values survive the overlay");
    let err = config::load(&dir.join("absent.toml")).unwrap_err().to_string();
    assert!(err.contains("absent.toml") && err.contains("not found"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
