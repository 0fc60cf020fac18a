//! Alarm acknowledgements from operators and PLC gateways, received on
//! `{prefix}/{node}/{camera}/alarm/ack` and handed to the decision stage.

use crate::publish::messages::{AckPayload, SCHEMA_VERSION};

/// One acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmAck {
    pub camera: String,
    /// The alarm meant, or `None` for "whatever alarm is current on this camera".
    pub alarm_id: Option<String>,
}

/// Reads an ack payload: empty (a bare push button), or `{"alarm_id": "…"}` with an optional
/// `"v": 1`. An empty `alarm_id` means the current alarm, like an empty payload.
pub(crate) fn parse_ack(camera: &str, payload: &[u8]) -> Result<AlarmAck, String> {
    let text = std::str::from_utf8(payload).map_err(|_| "payload is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Ok(AlarmAck { camera: camera.to_string(), alarm_id: None });
    }
    let ack: AckPayload = serde_json::from_str(text).map_err(|e| format!("not an ack payload: {e}"))?;
    match ack.v {
        Some(v) if v != SCHEMA_VERSION => {
            Err(format!("schema version {v} is not supported (expected {SCHEMA_VERSION})"))
        }
        _ => Ok(AlarmAck { camera: camera.to_string(), alarm_id: ack.alarm_id.filter(|id| !id.is_empty()) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(payload: &str) -> Result<Option<String>, String> {
        parse_ack("cam1", payload.as_bytes()).map(|ack| ack.alarm_id)
    }

    #[test]
    fn reads_the_payload_forms_a_gateway_sends() {
        assert_eq!(id(""), Ok(None));
        assert_eq!(id(" \n"), Ok(None));
        assert_eq!(id("{}"), Ok(None));
        assert_eq!(id(r#"{"alarm_id": ""}"#), Ok(None));
        assert_eq!(id(r#"{"alarm_id": "cam1-42"}"#), Ok(Some("cam1-42".into())));
        assert_eq!(id(r#"{"v": 1, "alarm_id": "cam1-42"}"#), Ok(Some("cam1-42".into())));
    }

    #[test]
    fn rejects_what_it_cannot_read_with_a_reason() {
        assert!(id("ack").is_err());
        assert!(id(r#"{"alarmid": "x"}"#).expect_err("typo").contains("alarmid"));
        assert!(id(r#"{"v": 2}"#).expect_err("future version").contains("version 2"));
        assert!(parse_ack("cam1", &[0xff, 0xfe]).is_err());
    }
}
