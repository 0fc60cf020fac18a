//! What the alarm state machine tells the outside world: events for the `alarm` topic and
//! the current state for the retained `alarm/state` topic (design.md §3).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::util::time::rfc3339;

/// Whether an alarm started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmKind {
    Raised,
    Cleared,
}

/// An alarm was raised or cleared. Serialises to the fields of the `alarm` payload that the
/// decision knows (`evidence` is added by whoever saved it); times are RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEvent {
    #[serde(rename = "event")]
    pub kind: AlarmKind,
    /// Identifies the alarm across its raise and clear, and across restarts (it is built from
    /// the camera, the raising frame's time and its sequence number, not from a counter), so
    /// a consumer can de-duplicate messages the outbox replays.
    pub alarm_id: String,
    /// Part of the topic, so not repeated in the payload.
    #[serde(skip)]
    pub camera: Arc<str>,
    /// The raising frame for `Raised`; the frame that met the clear condition, or the last
    /// frame seen when an acknowledgement cleared it, for `Cleared`.
    pub seq: u64,
    /// That frame's score.
    pub score: f32,
    /// The threshold that frame was judged against.
    pub threshold: f32,
    /// When the raising frame was captured.
    #[serde(serialize_with = "as_rfc3339")]
    pub started_at: SystemTime,
    /// When this event happened: the frame's capture time, or the acknowledgement's arrival.
    #[serde(serialize_with = "as_rfc3339")]
    pub at: SystemTime,
}

/// The current alarm of one camera, for the retained `alarm/state` topic: a PLC gateway that
/// reconnects reads this instead of replaying events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct AlarmState {
    /// An alarm is raised and not yet cleared.
    pub active: bool,
    /// The active alarm's id, `null` when none is active.
    pub alarm_id: Option<String>,
    /// When the active alarm was raised.
    #[serde(serialize_with = "as_rfc3339_opt")]
    pub since: Option<SystemTime>,
    /// The camera is back to OK long enough to clear, and only the latch holds the alarm:
    /// an acknowledgement now clears it at once.
    pub latched: bool,
    /// Someone acknowledged the active alarm; with a latch it clears as soon as the camera
    /// is back to OK long enough.
    pub acknowledged: bool,
}

/// RFC 3339 UTC with milliseconds; times before 1970 (a broken clock) print as the epoch.
pub(crate) fn format_time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(since.as_secs() as i64, since.subsec_millis())
}

/// Milliseconds since the Unix epoch, for alarm ids.
pub(crate) fn unix_ms(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

fn as_rfc3339<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(*t))
}

fn as_rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(*t)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn event_payload_uses_the_mqtt_field_names_and_rfc3339_times() {
        let event = AlarmEvent {
            kind: AlarmKind::Raised,
            alarm_id: "cam1-1795878248123-7".into(),
            camera: "cam1".into(),
            seq: 7,
            score: 2.5,
            threshold: 1.5,
            started_at: at(1_795_878_248_123),
            at: at(1_795_878_248_123),
        };
        let json = serde_json::to_value(&event).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({
                "event": "raised", "alarm_id": "cam1-1795878248123-7", "seq": 7, "score": 2.5,
                "threshold": 1.5, "started_at": "2026-11-28T15:04:08.123Z",
                "at": "2026-11-28T15:04:08.123Z"
            })
        );
    }

    #[test]
    fn idle_state_serialises_with_nulls_and_active_state_with_a_time() {
        let idle = serde_json::to_value(AlarmState::default()).expect("serialises");
        assert_eq!(
            idle,
            serde_json::json!({"active": false, "alarm_id": null, "since": null,
                               "latched": false, "acknowledged": false})
        );
        let active = AlarmState {
            active: true,
            alarm_id: Some("a".into()),
            since: Some(at(5)),
            latched: true,
            acknowledged: false,
        };
        let json = serde_json::to_value(active).expect("serialises");
        assert_eq!(json["since"], "1970-01-01T00:00:00.005Z");
        assert_eq!(json["latched"], true);
    }
}
