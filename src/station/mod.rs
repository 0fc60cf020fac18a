//! Triggered inspection: stations, parts and the ready/busy handshake with a PLC.
//!
//! ```text
//! {station}/trigger ─► commands ─► StationTask ── arm ──► TriggerGate of each camera
//!                                      ▲                     │ first frame after the trigger
//!                                      │                     ▼
//!                      Observation ◄── decision ◄── scoring ◄── source
//!                                      │
//!                                      └─► {station}/part (outbox, QoS 1) and {station}/ready (retained)
//! ```
//!
//! One task owns every station, so triggers, camera verdicts and deadlines are applied in one
//! order. Each trigger gets exactly one part result: `OK`/`NG` when every camera's frame was
//! judged, `timeout` when the deadline passed first, `invalid` when the trigger could not be
//! served (unreadable, or the station busy with another part). Part results go through the
//! durable outbox, like alarms. `ready` is true while no part is open and every camera of the
//! station streams.

pub mod part;
mod task;

pub use part::Observation;
pub use task::{StationInput, StationTask, STATION_QUEUE};
