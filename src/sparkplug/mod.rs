//! Sparkplug B edge node (optional, `[sparkplug]`): the cameras as Sparkplug devices, for
//! SCADA/IIoT hosts such as Ignition, next to the plain MQTT topics of [`crate::publish`].
//!
//! ```text
//! daemon ── watch<BTreeMap<camera, DeviceValues>> ──► session ── births, DDATA, NDEATH ─┐
//!        ◄── mpsc<SparkplugCommand> (try_send) ─────┘    ▲                              │
//!                                                        │ NCMD/DCMD (try_send, 32)     ▼
//!                              poll loop: only polls its own rumqttc EventLoop; keeps the
//!                              NDEATH will's bdSeq current; backoff with jitter on errors
//! ```
//!
//! The edge node has its own connection: `[mqtt]`'s broker, TLS and login, the client id
//! `{mqtt client id}-sparkplug`, a clean session, and the NDEATH as its will.
//!
//! # Topics
//!
//! `spBv1.0/{group_id}/{TYPE}/{edge_node_id}[/{camera}]`, with TYPE one of NBIRTH, NDEATH,
//! NCMD (node), DBIRTH, DDATA, DDEATH, DCMD (camera). Births, data and deaths are QoS 0 and
//! not retained; the NDEATH will is QoS 1, not retained. The node subscribes to
//! `NCMD/{edge}` and `DCMD/{edge}/+` (QoS 1) before its NBIRTH.
//!
//! # Sequence numbers
//!
//! - `bdSeq` (metric, Int64 as Sparkplug 3.0 types it): one value per MQTT connection, in the
//!   NDEATH will registered with CONNECT and in the NBIRTH that follows; 0 at process start,
//!   one more for each connection after one that was up, wrapping 255 → 0.
//! - `seq` (payload field): 0 in NBIRTH, then one more for every DBIRTH, DDATA and DDEATH of
//!   the node, wrapping 255 → 0. NDEATH has none.
//!
//! # Messages
//!
//! On every connect: NBIRTH (`bdSeq`, `Node Control/Rebirth` = false), then one DBIRTH per
//! camera. Then, on every change of the daemon's values, report by exception: a DDATA per
//! camera with only the metrics whose value changed, a DBIRTH for a camera that appeared, a
//! DDEATH for one that went. Births carry datatypes; every metric carries a timestamp (ms
//! since the Unix epoch). NCMD `Node Control/Rebirth` = true publishes the NBIRTH (same
//! bdSeq, seq 0) and every DBIRTH again. [`SparkplugNode::shutdown`] publishes NDEATH and then
//! disconnects; any other end of the connection leaves the NDEATH to the broker's will.
//!
//! # Camera metrics
//!
//! | name             | datatype | value                                              |
//! |------------------|----------|----------------------------------------------------|
//! | `verdict`        | String   | `OK`, `NG`, `invalid` or `none`                    |
//! | `score`          | Double   | score of the last scored frame                     |
//! | `threshold`      | Double   | decision threshold; DCMD writes it                 |
//! | `alarm active`   | Boolean  | the camera's alarm is raised                       |
//! | `fps`            | Double   | frames per second from the camera                  |
//! | `frames dropped` | UInt64   | frames dropped since the start                     |
//! | `health`         | String   | the camera's state, e.g. `streaming`               |
//! | `acknowledge`    | Boolean  | always false; DCMD true acknowledges the alarm     |
//!
//! # Commands
//!
//! DCMD `threshold` (Double, finite) becomes [`SparkplugCommand::SetThreshold`]; DCMD
//! `acknowledge` = true becomes [`SparkplugCommand::Acknowledge`]. Any other metric, value or
//! NCMD, a DCMD for a camera without a DBIRTH, and a retained command are logged as warnings (device
//! and metric named) and ignored. Metrics are matched by name: the node births no aliases.

mod command;
mod config;
mod device;
mod node;
pub mod payload;
mod poll_loop;
mod sequence;
mod session;
mod topics;

pub use command::SparkplugCommand;
pub use config::{SparkplugConfig, SparkplugError, SparkplugSettings};
pub use device::{names, DeviceValues};
pub use node::SparkplugNode;
pub use topics::NAMESPACE;
