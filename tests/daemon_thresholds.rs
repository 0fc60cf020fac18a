//! Runtime thresholds end to end (issue "Line integration", item 3): a PLC sets a camera's
//! threshold over MQTT while the daemon runs; frames are judged against it from then on; it
//! is echoed, retained, on `threshold/state`; it survives a restart; bad values are refused
//! with a reason; precedence is model < config < runtime, and a reset goes back to the config.

#[path = "common/broker.rs"]
mod broker;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use broker::{assert_valid, Broker, Received, Subscriber, TestDir};
use daemon::{config_head, Daemon};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
/// A threshold no frame of the test camera reaches, so the config layer passes everything.
const CONFIGURED: f64 = 1000.0;

fn start(dir: &TestDir, node: &str, port: u16) -> Daemon {
    let config = format!(
        "{head}\n[cameras.cam]\nmodel = \"washer\"\nthreshold = {CONFIGURED:.1}\n[cameras.cam.source]\nkind = \"test\"\nfps = 5\nwidth = 128\nheight = 128\n",
        head = config_head(node, &dir.0, port)
    );
    Daemon::start(&dir.0, node, &config)
}

/// The next `threshold/state` that satisfies `pred`, validated against the schema.
async fn state(sub: &mut Subscriber, node: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let topic = format!("inspectd/{node}/cam/threshold/state");
    let msg = sub.expect(what, WAIT, |m: &Received| m.topic == topic && pred(&m.json())).await;
    let json = msg.json();
    assert_valid("threshold_state", &json);
    json
}

/// The next result of the camera judged against `threshold`.
async fn result_at(sub: &mut Subscriber, node: &str, threshold: f64) -> Value {
    let topic = format!("inspectd/{node}/cam/result");
    let close = move |v: &Value| (v["threshold"].as_f64().unwrap_or(f64::NAN) - threshold).abs() < 1e-6;
    sub.expect(&format!("a result at threshold {threshold}"), WAIT, |m| m.topic == topic && close(&m.json()))
        .await
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_set_over_mqtt_applies_survives_a_restart_and_bad_values_are_refused() {
    let dir = TestDir::new("thresholds");
    let broker = Broker::start(&dir);
    let node = "thr1";
    let mut sub = Subscriber::connect(broker.port, &format!("inspectd/{node}/#")).await;
    let set_topic = format!("inspectd/{node}/cam/threshold/set");
    let mut daemon = start(&dir, node, broker.port);

    let initial = state(&mut sub, node, "the configured threshold", |s| s["source"] == "config").await;
    assert_eq!(initial["threshold"], json!(CONFIGURED));
    let model = initial["model_threshold"].as_f64().expect("the model's calibrated threshold");
    assert!(model > 0.0 && model < CONFIGURED, "{initial}");
    let ok = result_at(&mut sub, node, CONFIGURED).await;
    assert_eq!(ok["verdict"], "OK");

    // What a PLC sends is what the schema documents.
    for valid in
        [r#"{"threshold": 0.001, "by": "line3-plc"}"#, r#"{"sensitivity": 0.5}"#, r#"{"reset": true}"#]
    {
        assert_valid("threshold_set", &serde_json::from_str(valid).expect("JSON"));
    }
    // Raw: far below every score, so every frame from now on is NG.
    sub.publish(&set_topic, br#"{"threshold": 0.001, "by": "line3-plc"}"#).await;
    let set = state(&mut sub, node, "the runtime threshold", |s| s["source"] == "runtime").await;
    assert!((set["threshold"].as_f64().expect("number") - 0.001).abs() < 1e-9, "{set}");
    assert_eq!(set["runtime"]["set_by"], "line3-plc");
    assert_eq!(set["config_threshold"], json!(CONFIGURED), "the config layer stays visible");
    assert_eq!(result_at(&mut sub, node, 0.001).await["verdict"], "NG");

    // Bad values: refused with a reason, the threshold in force unchanged.
    for (payload, reason) in [
        (r#"{"threshold": -1}"#, "above 0"),
        (r#"{"sensitivity": 2}"#, "outside 0..=1"),
        (r#"{"threshold": 1, "reset": true}"#, "exactly one"),
        ("high", "not a threshold request"),
    ] {
        sub.publish(&set_topic, payload.as_bytes()).await;
        let refused =
            state(&mut sub, node, &format!("the refusal of {payload}"), |s| !s["refused"].is_null()).await;
        let why = refused["refused"]["reason"].as_str().unwrap_or_default().to_string();
        assert!(why.contains(reason), "{payload}: {why}");
        assert_eq!(
            (refused["source"].clone(), refused["threshold"].clone()),
            (set["source"].clone(), set["threshold"].clone())
        );
        // The next accepted request clears the refusal; the same value keeps the frames NG.
        sub.publish(&set_topic, br#"{"threshold": 0.001, "by": "line3-plc"}"#).await;
        state(&mut sub, node, "the refusal cleared", |s| s["refused"].is_null()).await;
    }

    // A restart keeps the runtime threshold: the config alone would pass every frame.
    assert_eq!(daemon.signal_and_wait("TERM", WAIT), Some(0), "{}", daemon.log());
    sub.drain_for(Duration::from_millis(300)).await;
    let mut daemon = start(&dir, node, broker.port);
    assert_eq!(result_at(&mut sub, node, 0.001).await["verdict"], "NG", "{}", daemon.log());
    assert!(daemon.log().contains("Runtime threshold restored"), "{}", daemon.log());

    // Sensitivity 0.5 is the model's calibrated threshold.
    sub.publish(&set_topic, br#"{"sensitivity": 0.5}"#).await;
    let sens = state(&mut sub, node, "the sensitivity", |s| s["runtime"]["sensitivity"] == json!(0.5)).await;
    assert!((sens["threshold"].as_f64().expect("number") - model).abs() < 1e-5, "{sens}");
    assert_eq!(sens["runtime"]["set_by"], "mqtt");

    // Reset: back to the config layer.
    sub.publish(&set_topic, br#"{"reset": true}"#).await;
    let reset = state(&mut sub, node, "the reset", |s| s["source"] == "config").await;
    assert_eq!((reset["threshold"].clone(), reset["runtime"].clone()), (json!(CONFIGURED), Value::Null));
    result_at(&mut sub, node, CONFIGURED).await;

    // A gateway that connects now reads the state retained.
    let mut late = Subscriber::connect(broker.port, &format!("inspectd/{node}/cam/threshold/state")).await;
    let retained = late.expect("the retained state", WAIT, |m| m.retain).await.json();
    assert_eq!(retained["source"], "config");
    assert_eq!(daemon.signal_and_wait("TERM", WAIT), Some(0), "{}", daemon.log());
}
