//! MQTT publishing (design.md §3): results, alarms through a durable outbox, camera and node
//! status, and alarm acks coming back.
//!
//! ```text
//! stages ── PublishHandle ─┬─ results ──► bounded queue (256, drop + count) ─┐
//!                          ├─ alarms ───► Outbox (fsync'd files) ────────────┤
//!                          └─ status ───► RetainedStore (latest per topic) ──┤
//!                                                                            ▼
//!                          publish loop: the only task awaiting client calls and the only
//!                          sender of QoS 1/2 publishes; one outbox alarm in flight at a time
//!                                        │ rumqttc request channel (64)
//!                                        ▼
//!                          poll loop: only polls the EventLoop; PUBACK → Link → publish loop;
//!                          acks, threshold sets → InboundStream (64, drop + count);
//!                          backoff with jitter on errors
//! ```
//!
//! Topics and payloads are in [`topics`] and [`messages`] and documented for consumers in
//! `schema/mqtt.schema.json`. On every (re)connect the publisher sends the `online` status,
//! subscribes to `{prefix}/{node}/+/alarm/ack` and `.../+/threshold/set`, re-sends every retained camera and alarm state,
//! and resumes the outbox from its oldest alarm. A graceful [`MqttPublisher::shutdown`]
//! publishes `offline` explicitly before disconnecting; any other end of the connection leaves
//! it to the broker's last will.

pub mod acks;
pub mod credentials;
pub mod error;
pub mod inbound;
mod link;
pub mod messages;
pub mod mqtt;
pub mod options;
pub mod outbox;
mod poll_loop;
mod publish_loop;
mod retained;
pub mod stats;
pub mod tls;
pub mod topics;
mod tracker;

pub use acks::AlarmAck;
pub use error::PublishError;
pub use inbound::{Inbound, InboundKind, InboundStream, TriggerRequest};
pub use messages::{
    AlarmEvent, AlarmMessage, AlarmState, CameraPart, CameraState, CameraStatus, Evidence, ModelRef,
    NodeState, NodeStatus, PartMessage, PartVerdict, ReadyState, ResultMessage,
};
pub use mqtt::{MqttPublisher, PublishHandle};
pub use options::MqttSettings;
pub use outbox::{Outbox, OutboxError};
pub use stats::PublishStats;
