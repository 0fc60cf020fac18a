//! Commands from hosts: NCMD to the edge node (rebirth) and DCMD to a camera (threshold,
//! acknowledge). A command names its metric; inspectd births no aliases, so a metric without
//! a name cannot be meant for it. What is not understood is returned as [`Ignored`], for the
//! caller to log, and never half-applied.

use crate::sparkplug::device::names;
use crate::sparkplug::payload::{Metric, Payload, Value, REBIRTH};

/// What a host asks the daemon to do for one camera.
#[derive(Debug, Clone, PartialEq)]
pub enum SparkplugCommand {
    /// DCMD metric `threshold` (Double): a new decision threshold.
    SetThreshold { camera: String, threshold: f64 },
    /// DCMD metric `acknowledge` (Boolean true): the operator acknowledged the alarm.
    Acknowledge { camera: String },
}

/// What an NCMD asks the edge node itself to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeControl {
    /// Publish NBIRTH and every DBIRTH again.
    Rebirth,
}

/// A command metric that was not acted on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ignored {
    pub metric: String,
    pub reason: &'static str,
}

/// What one NCMD or DCMD asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decoded<T> {
    pub wanted: Vec<T>,
    pub ignored: Vec<Ignored>,
}

/// NCMD: whether it asks for a rebirth (`Node Control/Rebirth` = true).
pub(crate) fn node_command(payload: &Payload) -> Decoded<NodeControl> {
    decode(payload, |name, value| match (name, value) {
        (REBIRTH, Some(Value::BooleanValue(true))) => Ok(NodeControl::Rebirth),
        (REBIRTH, _) => Err("only a Boolean true asks for a rebirth"),
        _ => Err("not a node control inspectd knows"),
    })
}

/// DCMD for `camera`: the commands it carries.
pub(crate) fn device_command(camera: &str, payload: &Payload) -> Decoded<SparkplugCommand> {
    decode(payload, |name, value| match (name, value) {
        (names::THRESHOLD, Some(Value::DoubleValue(t))) if t.is_finite() => {
            Ok(SparkplugCommand::SetThreshold { camera: camera.to_string(), threshold: *t })
        }
        (names::THRESHOLD, Some(Value::FloatValue(t))) if t.is_finite() => {
            Ok(SparkplugCommand::SetThreshold { camera: camera.to_string(), threshold: f64::from(*t) })
        }
        (names::THRESHOLD, _) => Err("a threshold must be a finite Double"),
        (names::ACKNOWLEDGE, Some(Value::BooleanValue(true))) => {
            Ok(SparkplugCommand::Acknowledge { camera: camera.to_string() })
        }
        (names::ACKNOWLEDGE, _) => Err("only a Boolean true acknowledges"),
        _ => Err("not a writable metric (threshold and acknowledge are)"),
    })
}

/// Sorts each metric into wanted or ignored with `interpret(name, value)`.
fn decode<T>(
    payload: &Payload,
    interpret: impl Fn(&str, Option<&Value>) -> Result<T, &'static str>,
) -> Decoded<T> {
    let mut decoded = Decoded { wanted: Vec::new(), ignored: Vec::new() };
    for metric in &payload.metrics {
        let Some(name) = metric.name.as_deref() else {
            decoded
                .ignored
                .push(Ignored { metric: unnamed(metric), reason: "a command must name its metric" });
            continue;
        };
        match interpret(name, metric.value.as_ref()) {
            Ok(wanted) => decoded.wanted.push(wanted),
            Err(reason) => decoded.ignored.push(Ignored { metric: name.to_string(), reason }),
        }
    }
    decoded
}

fn unnamed(metric: &Metric) -> String {
    match metric.alias {
        Some(alias) => format!("(alias {alias})"),
        None => "(no name)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(metrics: Vec<Metric>) -> Payload {
        Payload { timestamp: Some(1), metrics, seq: Some(0), ..Payload::default() }
    }

    fn metric(name: &str, value: Value) -> Metric {
        Metric { name: Some(name.to_string()), value: Some(value), ..Metric::default() }
    }

    #[test]
    fn rebirth_only_for_true() {
        let yes = node_command(&command(vec![metric(REBIRTH, Value::BooleanValue(true))]));
        assert_eq!((yes.wanted, yes.ignored), (vec![NodeControl::Rebirth], vec![]));
        let no = node_command(&command(vec![
            metric(REBIRTH, Value::BooleanValue(false)),
            metric("Node Control/Reboot", Value::BooleanValue(true)),
        ]));
        assert!(no.wanted.is_empty());
        let ignored: Vec<&str> = no.ignored.iter().map(|i| i.metric.as_str()).collect();
        assert_eq!(ignored, [REBIRTH, "Node Control/Reboot"]);
    }

    #[test]
    fn threshold_and_acknowledge_become_commands_for_the_camera() {
        let decoded = device_command(
            "cam1",
            &command(vec![
                metric("threshold", Value::DoubleValue(6.5)),
                metric("acknowledge", Value::BooleanValue(true)),
                metric("threshold", Value::FloatValue(0.25)),
            ]),
        );
        assert_eq!(
            decoded.wanted,
            [
                SparkplugCommand::SetThreshold { camera: "cam1".into(), threshold: 6.5 },
                SparkplugCommand::Acknowledge { camera: "cam1".into() },
                SparkplugCommand::SetThreshold { camera: "cam1".into(), threshold: 0.25 },
            ]
        );
        assert!(decoded.ignored.is_empty());
    }

    #[test]
    fn anything_else_is_ignored_with_the_metric_named() {
        let aliased = Metric { alias: Some(3), value: Some(Value::DoubleValue(1.0)), ..Metric::default() };
        let decoded = device_command(
            "cam1",
            &command(vec![
                metric("threshold", Value::DoubleValue(f64::NAN)),
                metric("threshold", Value::StringValue("6".into())),
                metric("acknowledge", Value::BooleanValue(false)),
                metric("score", Value::DoubleValue(1.0)),
                aliased,
            ]),
        );
        assert!(decoded.wanted.is_empty());
        let ignored: Vec<&str> = decoded.ignored.iter().map(|i| i.metric.as_str()).collect();
        assert_eq!(ignored, ["threshold", "threshold", "acknowledge", "score", "(alias 3)"]);
    }
}
