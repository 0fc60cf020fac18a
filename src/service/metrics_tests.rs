use std::time::Duration;

use super::*;
use crate::telemetry::DropReason;

#[test]
fn counters_are_served_from_the_handles_the_stages_count_into() {
    let telemetry = Arc::new(Telemetry::default());
    let m = Metrics::new(telemetry.clone());
    let captured = telemetry.frames_captured("cam1");
    captured.inc_by(10);
    // A source rebuilt by a reload gets the same series back and keeps counting.
    telemetry.frames_captured("cam1").inc_by(3);
    telemetry.scoring_batches("m").inc();
    let mut status = SourceStatus::starting();
    (status.state, status.fps) = (SourceState::Streaming, 12.5);
    m.update_camera("cam1", &status);
    let text = m.encode(false).expect("encode");
    for line in [
        "inspectd_frames_captured_total{camera=\"cam1\"} 13\n",
        "inspectd_scoring_batches_total{model=\"m\"} 1\n",
        "inspectd_camera_fps{camera=\"cam1\"} 12.5\n",
        "inspectd_camera_streaming{camera=\"cam1\"} 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn camera_handle_counts_frames_scores_latency_and_telemetry_events_show_up() {
    use crate::telemetry::{AlarmRaised, BatchFailed, Event};
    let telemetry = Arc::new(Telemetry::default());
    let m = Metrics::new(telemetry.clone());
    let cam = m.camera("cam1");
    cam.observe_result(0.7, Duration::from_millis(30));
    cam.observe_result(0.2, Duration::from_millis(12));
    AlarmRaised { camera: "cam1" }.emit(&telemetry);
    BatchFailed { model: "m", cameras: &["cam1"], error: &"oom" }.emit(&telemetry);
    let text = m.encode(false).expect("encode");
    for line in [
        "inspectd_frames_scored_total{camera=\"cam1\"} 2\n",
        "inspectd_score_normalised_bucket{camera=\"cam1\",le=\"0.2\"} 1\n",
        "inspectd_frame_latency_seconds_count{camera=\"cam1\"} 2\n",
        "inspectd_alarms_raised_total{camera=\"cam1\"} 1\n",
        "inspectd_frames_dropped_total{camera=\"cam1\",reason=\"score_error\"} 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn a_reload_replaces_the_camera_model_series() {
    let m = Metrics::default();
    let model =
        |id: &str| ModelIdentity { name: "part-a".into(), id: id.into(), sha: "abc".into(), threshold: None };
    m.set_model("cam1", &model("v1"));
    m.set_model("cam1", &model("v2"));
    let text = m.encode(true).expect("encode");
    assert!(!text.contains("model_id=\"v1\""), "{text}");
    assert!(text
        .contains("inspectd_camera_model{camera=\"cam1\",model=\"part-a\",model_id=\"v2\",sha=\"abc\"} 1\n"));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn every_telemetry_counter_appears_in_the_exposition() {
    let m = Metrics::default();
    // Before any event: the series exist at zero once a camera and a model are known.
    m.camera("cam1");
    m.update_scorer("m", &ScoringStats::default());
    let text = m.encode(false).expect("encode");
    for name in crate::telemetry::COUNTERS {
        assert!(
            text.contains(&format!("# TYPE inspectd_{name}_total counter"))
                || text.contains(&format!("# TYPE inspectd_{name} counter")),
            "{name} missing:\n{text}"
        );
    }
    for reason in DropReason::ALL {
        let line =
            format!("inspectd_frames_dropped_total{{camera=\"cam1\",reason=\"{}\"}} 0\n", reason.label());
        assert!(text.contains(&line), "{line} missing:\n{text}");
    }
    assert!(text.contains("inspectd_evidence_errors_total{camera=\"cam1\"} 0\n"), "{text}");
}

#[test]
fn every_publisher_event_is_counted_once_and_exported() {
    use crate::telemetry::*;
    let telemetry = Arc::new(Telemetry::default());
    let m = Metrics::new(telemetry.clone());
    let t = &telemetry;
    ResultPublished.emit(t);
    for _ in 0..2 {
        ResultDropped { reason: ResultDropReason::QueueFull }.emit(t);
    }
    for _ in 0..3 {
        ResultDropped { reason: ResultDropReason::Offline }.emit(t);
    }
    for seq in 0..4 {
        AlarmDelivered { seq }.emit(t);
    }
    for _ in 0..5 {
        AlarmRefused.emit(t);
    }
    for _ in 0..7 {
        CommandDropped { camera: "cam1", kind: "ack" }.emit(t);
    }
    for _ in 0..8 {
        CommandInvalid { topic: "t", reason: &"not JSON" }.emit(t);
    }
    for _ in 0..9 {
        MqttConnected { broker: "b", session_present: false }.emit(t);
    }
    for failure in [ConnectionFailure::Failed, ConnectionFailure::FailedAgain] {
        for _ in 0..5 {
            MqttConnectionError { broker: "b", error: "refused", failure }.emit(t);
        }
    }
    m.update_publisher(6, true);
    let text = m.encode(false).expect("encode");
    for line in [
        "inspectd_mqtt_results_total 1\n",
        "inspectd_mqtt_results_dropped_total{reason=\"queue_full\"} 2\n",
        "inspectd_mqtt_results_dropped_total{reason=\"offline\"} 3\n",
        "inspectd_mqtt_alarms_delivered_total 4\n",
        "inspectd_mqtt_alarms_refused_total 5\n",
        "inspectd_mqtt_outbox_alarms 6\n",
        "inspectd_mqtt_commands_dropped_total 7\n",
        "inspectd_mqtt_commands_invalid_total 8\n",
        "inspectd_mqtt_connects_total 9\n",
        "inspectd_mqtt_connection_errors_total 10\n",
        "inspectd_mqtt_connected 1\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let totals = t.mqtt();
    assert_eq!((totals.results_dropped_full, totals.results_dropped_offline), (2, 3));
}
