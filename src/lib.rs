//! inspectd: visual inspection on production lines.
//!
//! Cameras are read by GStreamer, every frame is scored by a CFA anomaly model (ONNX backbone
//! and a generated descriptor + kNN graph on ONNX Runtime), and verdicts, heatmaps and alarms go
//! out over MQTT. The same library trains, evaluates, scores images and replays recordings.
//!
//! # Stages of the daemon (`inspectd run`)
//!
//! ```text
//! source (GStreamer thread per camera: aravissrc | rtspsrc | v4l2src | filesrc | videotestsrc)
//!   └─ appsink: RGB at model size (a model with a view: the camera's own size), max-buffers 2,
//!      drop (live) ──► Frame
//!        └─ edge per camera, capacity `cameras.X.queue` (4):
//!             live: drop oldest + count · file: block
//!             └─ scoring thread per model (owns the ONNX Runtime sessions):
//!                  batch ≤ `models.X.batch` frames, ≤ `max_wait_ms`, or one from each camera,
//!                  round-robin over cameras; a batch's frames side by side on one-thread lanes;
//!                  view (ROI, tiles: one batch per frame; or letterbox) → backbone →
//!                  descriptor + kNN → maps, blur → stitched at ROI resolution, ignore mask → score
//!                  └─ channel (16, block) ──► decision thread:
//!                       threshold, regions, k-of-n alarm with hysteresis and latch
//!                       ├─ MQTT publisher (results: drop + count when the client queue is full;
//!                       │   alarms: durable on-disk outbox, replayed after outages and restarts)
//!                       ├─ evidence store (frame + heatmap on alarms; retention by count/bytes)
//!                       ├─ latest decisions (scores, alarms, a live-view frame while watched)
//!                       │   ◄── HTTP: /healthz, /readyz, /metrics, the set-up page /ui/ + /api/
//!                       └─ triggered cameras: channel (64, block) ──► station task: one part
//!                          result per trigger (durable, like alarms) and the ready handshake
//! ```
//!
//! A triggered camera's source passes only the first frame after each trigger (its
//! `TriggerGate`, armed by the station task on `{station}/trigger`).
//!
//! Heavy math never runs on the async runtime's threads: sources, scoring and decisions have
//! their own threads; tokio runs MQTT, signals, status and health.
//!
//! # Shutdown order
//!
//! SIGINT/SIGTERM cancels only the sources. Their edges close, each scoring thread drains what
//! is queued and exits, the decision thread drains and exits when its channel closes, then the
//! publisher publishes "offline", waits for outstanding alarm acknowledgements and disconnects,
//! all within `node.shutdown_deadline_s`. A second signal exits at once.
//!
//! # Modules
//!
//! - [`cfa`]: the algorithm's math (pure functions) and the ONNX graph generator.
//! - [`view`]: how a frame becomes model inputs (ROI, native-resolution tiles, letterbox) and
//!   their maps one map in the frame's pixels (blended stitch, ignore mask).
//! - [`model`]: ONNX Runtime, model bundles, the scorer and its thread.
//! - [`train`], [`eval`], [`synth`]: fitting, metrics, synthetic defect data.
//! - [`config`] (as written) and [`settings`] (checked and converted, once), [`source`], [`pipeline`], [`decision`], [`publish`], [`evidence`]: the daemon.
//! - [`station`]: triggered inspection: stations, parts, deadlines, the ready handshake.
//! - [`sparkplug`]: optional Sparkplug B edge node (cameras as devices, births, report by
//!   exception, rebirth, threshold and acknowledge commands) on its own MQTT connection.
//! - [`flow`]: frames, edges, verdicts and the model identity: the leaf types below the stages.
//! - [`service`]: the daemon's assembly and what it shows outside: systemd notification, the
//!   watchdog, health, metrics, reload, and the set-up page with its JSON API.
//! - [`telemetry`]: typed internal events (drops, errors, alarms, reloads) that log and count.
//! - [`cli`]: the command line; `main.rs` only calls it.

pub mod cfa;
pub mod cli;
pub mod config;
pub mod decision;
pub mod eval;
pub mod evidence;
pub mod flow;
pub mod heatmap;
pub mod input;
pub mod logging;
pub mod model;
pub mod onnx;
pub mod pipeline;
pub mod publish;
pub mod replay;
pub mod service;
pub mod settings;
pub mod source;
pub mod sparkplug;
pub mod station;
pub mod synth;
pub mod telemetry;
pub mod train;
pub mod util;
pub mod view;
