//! Checks that need more than one field: references between sections, names that become
//! MQTT topic segments, files that must exist. Every problem is collected, not just the first.
//! Numbers are checked where `Settings::from_config` converts them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::config::types::*;
use crate::config::Problem;
use crate::model::runtime::Provider;

/// Ids that become MQTT topic segments and file names: letters, digits, `-` and `_`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// All problems of an already deserialised config.
pub fn validate(c: &Config) -> Vec<Problem> {
    let mut p = Vec::new();
    check_id(&mut p, "node.id", &c.node.id);
    runtime(&mut p, &c.runtime);
    mqtt(&mut p, &c.mqtt);
    evidence(&mut p, &c.evidence);
    if !c.http.bind.is_empty() && c.http.bind.parse::<SocketAddr>().is_err() {
        p.push(Problem::new(
            "http.bind",
            format!("'{}' is not host:port (e.g. 127.0.0.1:9898), or \"\" to disable", c.http.bind),
        ));
    }
    for name in c.models.keys() {
        check_id(&mut p, &format!("models.{name}"), name);
    }
    if c.cameras.values().all(|cam| !cam.enabled) {
        p.push(Problem::new("cameras", "no enabled camera: nothing to inspect"));
    }
    for (id, cam) in &c.cameras {
        camera(&mut p, c, id, cam);
    }
    stations(&mut p, c);
    p
}

/// Station members must be enabled, triggered cameras, each in one station; a station id
/// shares the topic level of camera ids, so it must not be another camera's id.
fn stations(p: &mut Vec<Problem>, c: &Config) {
    let mut member_of: BTreeMap<&str, &str> = BTreeMap::new();
    for (station, s) in &c.stations {
        let key = format!("stations.{station}");
        check_id(p, &key, station);
        if s.cameras.is_empty() {
            p.push(Problem::new(format!("{key}.cameras"), "a station needs at least one camera"));
        }
        if c.cameras.contains_key(station) && !s.cameras.iter().any(|m| m == station) {
            p.push(Problem::new(
                key.clone(),
                format!("'{station}' is the id of a camera outside this station; topics would clash"),
            ));
        }
        for member in &s.cameras {
            let cam = c.cameras.get(member);
            let problem = match cam {
                None => Some(format!("no camera named '{member}'")),
                Some(cam) if !cam.enabled => Some(format!("camera '{member}' is disabled")),
                Some(cam) if cam.mode != CameraMode::Triggered => {
                    Some(format!("camera '{member}' needs mode = \"triggered\" to be in a station"))
                }
                Some(_) => member_of
                    .insert(member, station)
                    .map(|other| format!("camera '{member}' is already in station '{other}'")),
            };
            if let Some(message) = problem {
                p.push(Problem::new(format!("{key}.cameras"), message));
            }
        }
    }
}

fn check_id(p: &mut Vec<Problem>, key: &str, id: &str) {
    if !is_valid_id(id) {
        p.push(Problem::new(
            key,
            format!("'{id}' must be 1-64 letters, digits, '-' or '_' (it becomes an MQTT topic segment)"),
        ));
    }
}

fn runtime(p: &mut Vec<Problem>, r: &RuntimeConfig) {
    for (key, list) in
        [("runtime.providers", &r.providers), ("runtime.required_providers", &r.required_providers)]
    {
        for name in list.iter().filter(|n| Provider::parse(n).is_none()) {
            p.push(Problem::new(
                key,
                format!("unknown execution provider '{name}' (expected tensorrt, cuda or cpu)"),
            ));
        }
    }
    if let Some(lib) = &r.library {
        if !lib.is_file() {
            p.push(Problem::new(
                "runtime.library",
                format!(
                    "{} does not exist (run scripts/setup, or remove the key to search the default places)",
                    lib.display()
                ),
            ));
        }
    }
}

fn mqtt(p: &mut Vec<Problem>, m: &MqttConfig) {
    if m.host.is_empty() {
        p.push(Problem::new("mqtt.host", "must not be empty"));
    }
    if !m.prefix.split('/').all(is_valid_id) {
        p.push(Problem::new("mqtt.prefix", "topic segments may hold letters, digits, '-' and '_' only"));
    }
    if m.results.every == 0 {
        p.push(Problem::new("mqtt.results.every", "must be at least 1"));
    }
    if m.password.is_some() && m.password_file.is_some() {
        p.push(Problem::new("mqtt.password", "set either password or password_file, not both"));
    }
    // Keep-alive, QoS, login, TLS files and the outbox size are checked where the client
    // settings are built from them (publish::options), so the two cannot disagree.
}

fn evidence(p: &mut Vec<Problem>, e: &EvidenceConfig) {
    if !["png", "jpeg", "jpg"].contains(&e.format.as_str()) {
        p.push(Problem::new("evidence.format", format!("'{}' is not png or jpeg", e.format)));
    }
}

fn camera(p: &mut Vec<Problem>, c: &Config, id: &str, cam: &CameraConfig) {
    let key = |k: &str| format!("cameras.{id}.{k}");
    check_id(p, &format!("cameras.{id}"), id);
    if !c.models.contains_key(&cam.model) {
        let known: Vec<&str> = c.models.keys().map(String::as_str).collect();
        p.push(Problem::new(
            key("model"),
            format!("no model named '{}' (configured: {})", cam.model, known.join(", ")),
        ));
    }
    let a = cam.alarm;
    if a.k == 0 || a.n == 0 || a.k > a.n {
        p.push(Problem::new(key("alarm"), format!("need 1 <= k <= n (k = {}, n = {})", a.k, a.n)));
    }
    if a.clear_after == 0 {
        p.push(Problem::new(key("alarm.clear_after"), "must be at least 1"));
    }
    let h = cam.health;
    if !(h.clipped_fraction > 0.0 && h.clipped_fraction <= 1.0) {
        p.push(Problem::new(
            key("health.clipped_fraction"),
            format!("must be in (0, 1], not {}", h.clipped_fraction),
        ));
    }
    if !(h.min_focus_ratio >= 0.0 && h.min_focus_ratio.is_finite()) {
        p.push(Problem::new(
            key("health.min_focus_ratio"),
            format!("must be 0 (off) or more, not {}", h.min_focus_ratio),
        ));
    }
    let ha = h.alarm;
    if ha.k == 0 || ha.n == 0 || ha.k > ha.n || ha.clear_after == 0 {
        p.push(Problem::new(
            key("health.alarm"),
            format!(
                "need 1 <= k <= n and clear_after >= 1 (k = {}, n = {}, clear_after = {})",
                ha.k, ha.n, ha.clear_after
            ),
        ));
    }
    if let Some(roi) = cam.roi {
        if roi.width == 0 || roi.height == 0 {
            p.push(Problem::new(key("roi"), "width and height must be positive"));
        }
    }
    for (i, poly) in cam.ignore.iter().enumerate() {
        if poly.len() < 3 || poly.iter().flatten().any(|v| !v.is_finite()) {
            p.push(Problem::new(
                key(&format!("ignore[{i}]")),
                "a polygon needs at least 3 [x, y] points, each a finite pixel position",
            ));
        }
    }
    for message in crate::source::validate(&cam.source, cam.roi) {
        // "source.fps: …" becomes key cameras.ID.source.fps, so each problem keeps its own key.
        match message.split_once(": ").filter(|(k, _)| k.starts_with("source.") && !k.contains(' ')) {
            Some((k, rest)) => p.push(Problem::new(key(k), rest.to_string())),
            None => p.push(Problem::new(key("source"), message)),
        }
    }
    let camera_input = matches!(cam.source, SourceConfig::Gige(_) | SourceConfig::Usb3vision(_));
    if let SourceConfig::Gige(a) | SourceConfig::Usb3vision(a) = &cam.source {
        if cam.mode == CameraMode::Triggered && a.camera.is_none() {
            p.push(Problem::new(
                key("source.camera"),
                "a triggered camera needs its name (as aravis lists it) to set its GenICam trigger",
            ));
        }
    }
    for (k, value) in [("trigger.line", &cam.trigger.line), ("trigger.activation", &cam.trigger.activation)] {
        if value.as_deref().is_some_and(|v| !crate::source::is_genicam_name(v)) {
            p.push(Problem::new(
                key(k),
                "must be a GenICam entry name (letters, digits, '_'), e.g. Line1 or RisingEdge",
            ));
        }
    }
    if cam.mode == CameraMode::Triggered && cam.trigger.input == TriggerInput::Line && !camera_input {
        p.push(Problem::new(
            key("trigger.input"),
            format!(
                "a {} source has no trigger line; use input = \"software\" (the next frame after a trigger)",
                cam.source.kind()
            ),
        ));
    }
}
