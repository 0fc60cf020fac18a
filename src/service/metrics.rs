//! Prometheus metrics (`/metrics`): what each camera captured, scored and dropped, score and
//! latency distributions, alarms, the scoring loops and the MQTT link.
//!
//! Two ways in, chosen by cost. Per-frame events go through a [`CameraMetrics`] handle made
//! once per camera, so the decision thread pays a few atomic adds and no label lookup. Totals
//! that the pipeline already counts (source frames, edge drops, scoring and publisher
//! counters) are copied from their snapshots at scrape time by the `update_*` methods, so the
//! hot paths count nothing twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::pipeline::scoring::{ModelIdentity, ScoringStats};
use crate::publish::PublishStats;
use crate::source::{SourceState, SourceStatus};
pub use crate::telemetry::CameraMetrics;
use crate::telemetry::{CameraLabel, DropLabels, DropReason, ModelLabel, Telemetry};

/// `Content-Type` of the classic Prometheus text format, served unless OpenMetrics is asked for.
pub const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics text, served when the scraper's `Accept` asks for it.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of the info-style `inspectd_camera_model` gauge (always 1).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CameraModelLabels {
    camera: String,
    model: String,
    model_id: String,
    sha: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type HistogramFamily = Family<CameraLabel, Histogram, fn() -> Histogram>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Frame latency buckets: 5 ms to ~5 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 11))
}

/// Normalised score buckets: tenths, so the 0.5 bucket boundary is the threshold.
fn score_histogram() -> Histogram {
    Histogram::new((1..=10).map(|i| f64::from(i) / 10.0))
}

/// Every metric of the daemon, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    /// The internal events' counters (drops, errors, alarms, reloads).
    telemetry: Arc<Telemetry>,
    captured: Family<CameraLabel, Counter>,
    scored: Family<CameraLabel, Counter>,
    score: HistogramFamily,
    latency: HistogramFamily,
    fps: Family<CameraLabel, FloatGauge>,
    streaming: Family<CameraLabel, Gauge>,
    camera_model: Family<CameraModelLabels, Gauge>,
    batches: Family<ModelLabel, Counter>,
    heartbeat_age: Family<ModelLabel, FloatGauge>,
    mqtt: MqttMetrics,
    ready: Gauge,
    /// Last raw value seen per copied counter, and the model labels in force per camera.
    /// One lock for all scrape-time copies, so two concurrent scrapes cannot add a delta twice.
    copied: Mutex<Copied>,
}

#[derive(Default)]
struct Copied {
    raw: HashMap<String, u64>,
    models: HashMap<String, CameraModelLabels>,
}

impl Copied {
    /// Advances `counter` by what `raw` grew since the last call under `key`. A raw value that
    /// went down (a rebuilt source or stage after a reload) starts over from zero.
    fn copy(&mut self, key: String, raw: u64, counter: &Counter) {
        let last = self.raw.insert(key, raw).unwrap_or(0);
        counter.inc_by(if raw >= last { raw - last } else { raw });
    }
}

/// The MQTT link, named as `publish::stats` documents.
#[derive(Default)]
struct MqttMetrics {
    connected: Gauge,
    outbox: Gauge,
    results: Counter,
    results_dropped: Family<ReasonLabel, Counter>,
    alarms_delivered: Counter,
    alarms_refused: Counter,
    connects: Counter,
    connection_errors: Counter,
    acks_dropped: Counter,
    acks_invalid: Counter,
}

impl MqttMetrics {
    fn register(&self, r: &mut Registry) {
        r.register("mqtt_connected", "1 while the broker connection is up", self.connected.clone());
        r.register("mqtt_outbox_alarms", "Alarms on disk waiting for a PUBACK", self.outbox.clone());
        r.register("mqtt_results", "Results handed to the MQTT client", self.results.clone());
        r.register(
            "mqtt_results_dropped",
            "Results dropped: client queue full or broker offline",
            self.results_dropped.clone(),
        );
        r.register("mqtt_alarms_delivered", "Alarms the broker acknowledged", self.alarms_delivered.clone());
        r.register(
            "mqtt_alarms_refused",
            "Alarms refused because the outbox was full",
            self.alarms_refused.clone(),
        );
        r.register("mqtt_connects", "Successful broker connections", self.connects.clone());
        r.register(
            "mqtt_acks_dropped",
            "Alarm acknowledgements dropped because the decision stage fell behind",
            self.acks_dropped.clone(),
        );
        r.register(
            "mqtt_acks_invalid",
            "Alarm acknowledgements whose payload was unreadable",
            self.acks_invalid.clone(),
        );
        r.register(
            "mqtt_connection_errors",
            "Failed connection attempts and dropped connections",
            self.connection_errors.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Arc::default())
    }
}

impl Metrics {
    /// Registers every metric, and every counter of `telemetry`, under the `inspectd_` prefix.
    pub fn new(telemetry: Arc<Telemetry>) -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("inspectd"),
            telemetry,
            captured: Family::default(),
            scored: Family::default(),
            score: Family::new_with_constructor(score_histogram),
            latency: Family::new_with_constructor(latency_histogram),
            fps: Family::default(),
            streaming: Family::default(),
            camera_model: Family::default(),
            batches: Family::default(),
            heartbeat_age: Family::default(),
            mqtt: MqttMetrics::default(),
            ready: Gauge::default(),
            copied: Mutex::new(Copied::default()),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register("frames_captured", "Frames the camera's source delivered", self.captured.clone());
        r.register("frames_scored", "Frames scored and decided", self.scored.clone());
        self.telemetry.register(r);
        r.register(
            "score_normalised",
            "Normalised anomaly score of decided frames (0.5 at the threshold, as score_norm)",
            self.score.clone(),
        );
        r.register_with_unit(
            "frame_latency",
            "Capture to verdict, per frame",
            Unit::Seconds,
            self.latency.clone(),
        );
        r.register("camera_fps", "Frames per second the source delivers now", self.fps.clone());
        r.register("camera_streaming", "1 while the camera's source is streaming", self.streaming.clone());
        r.register("camera_model", "The model scoring each camera (always 1)", self.camera_model.clone());
        r.register("scoring_batches", "Batches scored, per model", self.batches.clone());
        r.register_with_unit(
            "scoring_heartbeat_age",
            "Time since the model's scoring loop last made progress",
            Unit::Seconds,
            self.heartbeat_age.clone(),
        );
        r.register("ready", "1 while nothing readiness needs is missing", self.ready.clone());
        self.mqtt.register(r);
    }

    /// The per-frame handle of `camera`; make it once and hand it to the decision stage.
    pub fn camera(&self, camera: &str) -> CameraMetrics {
        let label = CameraLabel { camera: camera.to_string() };
        self.telemetry.add_camera(camera);
        CameraMetrics {
            scored: self.scored.get_or_create_owned(&label),
            score: self.score.get_or_create_owned(&label),
            latency: self.latency.get_or_create_owned(&label),
        }
    }

    /// Records which model scores `camera`, replacing the previous one (after a reload).
    pub fn set_model(&self, camera: &str, model: &ModelIdentity) {
        let labels = CameraModelLabels {
            camera: camera.to_string(),
            model: model.name.clone(),
            model_id: model.id.clone(),
            sha: model.sha.clone(),
        };
        let mut copied = self.copied.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = copied.models.insert(camera.to_string(), labels.clone()) {
            self.camera_model.remove(&old);
        }
        self.camera_model.get_or_create(&labels).set(1);
    }

    /// Copies a camera's source status and its edge's drop counter.
    pub fn update_camera(&self, camera: &str, status: &SourceStatus, edge_dropped: u64) {
        let label = CameraLabel { camera: camera.to_string() };
        self.fps.get_or_create(&label).set(status.fps);
        self.streaming.get_or_create(&label).set(i64::from(status.state == SourceState::Streaming));
        let queue_full = DropLabels { camera: camera.to_string(), reason: DropReason::QueueFull.label() };
        let mut copied = self.copied.lock().unwrap_or_else(PoisonError::into_inner);
        copied.copy(format!("captured/{camera}"), status.frames, &self.captured.get_or_create_owned(&label));
        copied.copy(
            format!("dropped/{camera}"),
            edge_dropped,
            &self.telemetry.frames_dropped.get_or_create_owned(&queue_full),
        );
    }

    /// Copies a scoring loop's counters and heartbeat age.
    pub fn update_scorer(&self, model: &str, stats: &ScoringStats) {
        let label = ModelLabel { model: model.to_string() };
        let beat = stats.heartbeat_ms.load(Ordering::Relaxed);
        let age = if beat == 0 { f64::NAN } else { stats.since_heartbeat().as_secs_f64() };
        self.heartbeat_age.get_or_create(&label).set(age);
        self.telemetry.add_model(model);
        let mut copied = self.copied.lock().unwrap_or_else(PoisonError::into_inner);
        let batches = stats.batches.load(Ordering::Relaxed);
        copied.copy(format!("batches/{model}"), batches, &self.batches.get_or_create_owned(&label));
    }

    /// Copies the publisher's counters and connection state.
    pub fn update_publisher(&self, stats: &PublishStats, connected: bool) {
        let m = &self.mqtt;
        m.connected.set(i64::from(connected));
        m.outbox.set(i64::try_from(stats.outbox_depth).unwrap_or(i64::MAX));
        let full = m.results_dropped.get_or_create_owned(&ReasonLabel { reason: "queue_full" });
        let offline = m.results_dropped.get_or_create_owned(&ReasonLabel { reason: "offline" });
        let mut c = self.copied.lock().unwrap_or_else(PoisonError::into_inner);
        c.copy("mqtt/results".into(), stats.results_published, &m.results);
        c.copy("mqtt/dropped_full".into(), stats.results_dropped_full, &full);
        c.copy("mqtt/dropped_offline".into(), stats.results_dropped_offline, &offline);
        c.copy("mqtt/delivered".into(), stats.alarms_delivered, &m.alarms_delivered);
        c.copy("mqtt/refused".into(), stats.alarms_refused, &m.alarms_refused);
        c.copy("mqtt/connects".into(), stats.connects, &m.connects);
        c.copy("mqtt/errors".into(), stats.connection_errors, &m.connection_errors);
        c.copy("mqtt/acks_dropped".into(), stats.acks_dropped, &m.acks_dropped);
        c.copy("mqtt/acks_invalid".into(), stats.acks_invalid, &m.acks_invalid);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The exposition, in OpenMetrics when `openmetrics`, else the classic Prometheus text.
    pub fn encode(&self, openmetrics: bool) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        if openmetrics {
            text::encode(&mut out, &self.registry)?;
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
