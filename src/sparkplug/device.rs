//! A camera as a Sparkplug device: its values, the metrics they become, and report by
//! exception (DDATA carries only what changed since the host was last told).

use crate::sparkplug::payload::{birth_metric, data_metric, Metric, MetricValue};

/// The metric names of a camera device, as hosts see them.
pub mod names {
    /// String: `OK`, `NG`, `invalid` or `none` (nothing scored yet).
    pub const VERDICT: &str = "verdict";
    /// Double: the anomaly score of the last scored frame.
    pub const SCORE: &str = "score";
    /// Double: the decision threshold; writable with DCMD.
    pub const THRESHOLD: &str = "threshold";
    /// Boolean: whether the camera's alarm is raised.
    pub const ALARM_ACTIVE: &str = "alarm active";
    /// Double: frames per second coming from the camera.
    pub const FPS: &str = "fps";
    /// UInt64: frames dropped since the start.
    pub const FRAMES_DROPPED: &str = "frames dropped";
    /// String: the camera's state, e.g. `streaming`.
    pub const HEALTH: &str = "health";
    /// Boolean, always false: writing `true` with DCMD acknowledges the alarm. It is in the
    /// DBIRTH because hosts only write metrics that a birth declared.
    pub const ACKNOWLEDGE: &str = "acknowledge";
}

/// One camera's current values, as the daemon knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceValues {
    /// `"OK"`, `"NG"`, `"invalid"` or `"none"`.
    pub verdict: String,
    pub score: f64,
    pub threshold: f64,
    pub alarm_active: bool,
    pub fps: f64,
    pub frames_dropped: u64,
    /// e.g. `"streaming"`.
    pub health: String,
}

impl DeviceValues {
    /// Every metric with its datatype, for DBIRTH.
    pub(crate) fn birth_metrics(&self, timestamp: u64) -> Vec<Metric> {
        let command = (names::ACKNOWLEDGE, MetricValue::Boolean(false));
        self.metrics()
            .into_iter()
            .chain([command])
            .map(|(name, value)| birth_metric(name, value, timestamp))
            .collect()
    }

    /// The metrics whose value differs from `before`, for DDATA; empty when nothing changed.
    pub(crate) fn changed_metrics(&self, before: &DeviceValues, timestamp: u64) -> Vec<Metric> {
        self.metrics()
            .into_iter()
            .zip(before.metrics())
            .filter(|((_, now), (_, then))| !now.same(then))
            .map(|((name, value), _)| data_metric(name, value, timestamp))
            .collect()
    }

    fn metrics(&self) -> [(&'static str, MetricValue); 7] {
        [
            (names::VERDICT, MetricValue::String(self.verdict.clone())),
            (names::SCORE, MetricValue::Double(self.score)),
            (names::THRESHOLD, MetricValue::Double(self.threshold)),
            (names::ALARM_ACTIVE, MetricValue::Boolean(self.alarm_active)),
            (names::FPS, MetricValue::Double(self.fps)),
            (names::FRAMES_DROPPED, MetricValue::UInt64(self.frames_dropped)),
            (names::HEALTH, MetricValue::String(self.health.clone())),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sparkplug::payload::{DataType, Value};

    fn values() -> DeviceValues {
        DeviceValues {
            verdict: "OK".into(),
            score: 1.5,
            threshold: 5.0,
            alarm_active: false,
            fps: 25.0,
            frames_dropped: 0,
            health: "streaming".into(),
        }
    }

    fn names_of(metrics: &[Metric]) -> Vec<&str> {
        metrics.iter().filter_map(|m| m.name.as_deref()).collect()
    }

    #[test]
    fn a_birth_declares_every_metric_with_its_datatype() {
        let metrics = values().birth_metrics(42);
        let declared: Vec<(&str, u32)> =
            metrics.iter().map(|m| (m.name.as_deref().unwrap_or(""), m.datatype.unwrap_or(0))).collect();
        let d = |t: DataType| t as u32;
        assert_eq!(
            declared,
            [
                ("verdict", d(DataType::String)),
                ("score", d(DataType::Double)),
                ("threshold", d(DataType::Double)),
                ("alarm active", d(DataType::Boolean)),
                ("fps", d(DataType::Double)),
                ("frames dropped", d(DataType::UInt64)),
                ("health", d(DataType::String)),
                ("acknowledge", d(DataType::Boolean)),
            ]
        );
        assert!(metrics.iter().all(|m| m.timestamp == Some(42)));
    }

    #[test]
    fn data_reports_exactly_the_changed_metrics() {
        let before = values();
        assert!(before.changed_metrics(&before, 1).is_empty(), "nothing changed, nothing to send");
        let now = DeviceValues { verdict: "NG".into(), score: 7.25, frames_dropped: 3, ..values() };
        let changed = now.changed_metrics(&before, 9);
        assert_eq!(names_of(&changed), ["verdict", "score", "frames dropped"]);
        let values: Vec<_> = changed.iter().map(|m| m.value.clone()).collect();
        assert_eq!(
            values,
            [
                Some(Value::StringValue("NG".into())),
                Some(Value::DoubleValue(7.25)),
                Some(Value::LongValue(3)),
            ]
        );
        assert!(changed.iter().all(|m| m.timestamp == Some(9) && m.datatype.is_none()));
    }

    #[test]
    fn a_score_that_stays_nan_is_not_reported_again() {
        let before = DeviceValues { score: f64::NAN, verdict: "invalid".into(), ..values() };
        let now = DeviceValues { fps: 24.0, ..before.clone() };
        assert_eq!(names_of(&now.changed_metrics(&before, 1)), ["fps"]);
    }
}
