//! Prometheus metrics (`/metrics`): what each camera captured, scored and dropped, score and
//! latency distributions, alarms, the scoring loops and the MQTT link.
//!
//! Every counter is `telemetry`'s: the stages count into it directly (events, or counter
//! handles made once per camera or model), and `/metrics` serves those same series, so nothing
//! is copied or counted twice. Per-frame observations go through a [`CameraMetrics`] handle
//! made once per camera, so the decision thread pays a few atomic adds and no label lookup.
//! Gauges of the state now (fps, streaming, heartbeat age, broker connection, outbox depth)
//! are set at scrape time by the `update_*` methods.

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
use crate::source::{SourceState, SourceStatus};
pub use crate::telemetry::CameraMetrics;
use crate::telemetry::{CameraLabel, ModelLabel, Telemetry};

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
    scored: Family<CameraLabel, Counter>,
    score: HistogramFamily,
    latency: HistogramFamily,
    fps: Family<CameraLabel, FloatGauge>,
    streaming: Family<CameraLabel, Gauge>,
    camera_model: Family<CameraModelLabels, Gauge>,
    heartbeat_age: Family<ModelLabel, FloatGauge>,
    mqtt: MqttGauges,
    ready: Gauge,
    /// The model labels in force per camera.
    models: Mutex<HashMap<String, CameraModelLabels>>,
}

/// The MQTT link's gauges; its counters are `telemetry`'s.
#[derive(Default)]
struct MqttGauges {
    connected: Gauge,
    outbox: Gauge,
}

impl MqttGauges {
    fn register(&self, r: &mut Registry) {
        r.register("mqtt_connected", "1 while the broker connection is up", self.connected.clone());
        r.register("mqtt_outbox_alarms", "Alarms on disk waiting for a PUBACK", self.outbox.clone());
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
            scored: Family::default(),
            score: Family::new_with_constructor(score_histogram),
            latency: Family::new_with_constructor(latency_histogram),
            fps: Family::default(),
            streaming: Family::default(),
            camera_model: Family::default(),
            heartbeat_age: Family::default(),
            mqtt: MqttGauges::default(),
            ready: Gauge::default(),
            models: Mutex::default(),
        };
        m.register();
        m
    }

    fn register(&mut self) {
        let r = &mut self.registry;
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
        let mut models = self.models.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = models.insert(camera.to_string(), labels.clone()) {
            self.camera_model.remove(&old);
        }
        self.camera_model.get_or_create(&labels).set(1);
    }

    /// Sets a camera's source gauges.
    pub fn update_camera(&self, camera: &str, status: &SourceStatus) {
        let label = CameraLabel { camera: camera.to_string() };
        self.fps.get_or_create(&label).set(status.fps);
        self.streaming.get_or_create(&label).set(i64::from(status.state == SourceState::Streaming));
    }

    /// Sets a scoring loop's heartbeat age.
    pub fn update_scorer(&self, model: &str, stats: &ScoringStats) {
        let beat = stats.heartbeat_ms.load(Ordering::Relaxed);
        let age = if beat == 0 { f64::NAN } else { stats.since_heartbeat().as_secs_f64() };
        self.heartbeat_age.get_or_create(&ModelLabel { model: model.to_string() }).set(age);
        self.telemetry.add_model(model);
    }

    /// Sets the publisher's gauges.
    pub fn update_publisher(&self, outbox_depth: usize, connected: bool) {
        self.mqtt.connected.set(i64::from(connected));
        self.mqtt.outbox.set(i64::try_from(outbox_depth).unwrap_or(i64::MAX));
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
