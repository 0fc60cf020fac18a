use std::time::Duration;

use super::*;

#[test]
fn copied_counters_advance_by_deltas_and_survive_a_restarted_source() {
    let m = Metrics::default();
    let mut status = SourceStatus::starting();
    status.frames = 10;
    m.update_camera("cam1", &status, 2);
    m.update_camera("cam1", &status, 2);
    status.frames = 3; // the source was rebuilt by a reload
    m.update_camera("cam1", &status, 2);
    let text = m.encode(false).expect("encode");
    assert!(text.contains("inspectd_frames_captured_total{camera=\"cam1\"} 13\n"), "{text}");
    assert!(text.contains("inspectd_frames_dropped_total{camera=\"cam1\",reason=\"queue_full\"} 2\n"));
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
fn every_publisher_counter_is_exported() {
    let m = Metrics::default();
    let stats = PublishStats {
        results_published: 1,
        results_dropped_full: 2,
        results_dropped_offline: 3,
        alarms_delivered: 4,
        alarms_refused: 5,
        outbox_depth: 6,
        acks_dropped: 7,
        acks_invalid: 8,
        connects: 9,
        connection_errors: 10,
    };
    m.update_publisher(&stats, true);
    let text = m.encode(false).expect("encode");
    for line in [
        "inspectd_mqtt_results_total 1\n",
        "inspectd_mqtt_results_dropped_total{reason=\"queue_full\"} 2\n",
        "inspectd_mqtt_results_dropped_total{reason=\"offline\"} 3\n",
        "inspectd_mqtt_alarms_delivered_total 4\n",
        "inspectd_mqtt_alarms_refused_total 5\n",
        "inspectd_mqtt_outbox_alarms 6\n",
        "inspectd_mqtt_acks_dropped_total 7\n",
        "inspectd_mqtt_acks_invalid_total 8\n",
        "inspectd_mqtt_connects_total 9\n",
        "inspectd_mqtt_connection_errors_total 10\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}
