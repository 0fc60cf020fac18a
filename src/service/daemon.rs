//! `inspectd run`: builds every stage from a validated [`Config`] and runs until the shutdown
//! future resolves, then stops the sources and lets the rest drain (see the crate docs for the
//! stage diagram and shutdown order).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::apply_reload::reload;
use super::board::{HealthBoard, UiHandles};
use super::cameras::{camera_outputs, camera_view, check_camera_view};
use super::commands;
use super::endpoints::Service;
use super::models::{load_models, LoadedModel};
use super::sparkplug;
use super::status::{report_camera_status, CameraStatusFeed};
use crate::evidence::{EvidenceLimiter, EvidenceStore};
use crate::flow::edge::{edge_with_signal, EdgeReceiver, Signal};
use crate::flow::frame::Frame;
use crate::flow::trigger::TriggerGate;
use crate::model::bundle::BundleError;
use crate::model::runtime::{Runtime, RuntimeError};
use crate::model::scorer::ScoreError;
use crate::pipeline::decide::{DecisionInput, DecisionStage, DecisionStats};
use crate::pipeline::judge::Outputs;
use crate::pipeline::latest::LatestDecisions;
use crate::pipeline::scoring::{Batching, ModelIdentity, ScoringStage, ScoringStats, SwapSlot};
use crate::pipeline::thresholds::ThresholdStore;
use crate::publish::{InboundStream, MqttPublisher, PublishError};
use crate::settings::{CameraSettings, Settings};
use crate::source::{self, SourceSettings, SourceStatus, Triggered};
use crate::telemetry::Telemetry;
use crate::util::supervise::{Exit, Lifetime, Supervisor, TaskHandle};

/// Threads of one stage.
type Threads = Vec<JoinHandle<()>>;

/// Tasks of one kind.
type Tasks = Vec<TaskHandle>;

/// Capacity of the channel from the scoring stages to the decision thread.
const DECISION_QUEUE: usize = 16;

/// How long the endpoints keep reporting a failed stage after the drain, before the exit.
const FAILED_LINGER: Duration = Duration::from_millis(500);

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("model '{name}': {source}")]
    Bundle { name: String, source: BundleError },
    #[error("model '{name}': {source}")]
    Score { name: String, source: ScoreError },
    #[error("camera '{camera}': {reason}")]
    Camera { camera: String, reason: String },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("evidence store: {0}")]
    Evidence(String),
    #[error("{0}")]
    Thresholds(String),
    #[error("cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error(transparent)]
    Http(#[from] super::health::HttpError),
    /// A thread or task died; the daemon stopped so that systemd restarts it.
    #[error("stage {stage} failed: {reason}")]
    StageFailed { stage: String, reason: String },
}

impl DaemonError {
    /// Errors a person must fix in the config or the files it names (exit 78, no restart loop).
    pub fn is_configuration(&self) -> bool {
        match self {
            DaemonError::Runtime(e) => {
                matches!(
                    e,
                    RuntimeError::LibraryNotFound { .. }
                        | RuntimeError::Load { .. }
                        | RuntimeError::ProviderMissing { .. }
                )
            }
            DaemonError::Bundle { .. }
            | DaemonError::Camera { .. }
            | DaemonError::Evidence(_)
            | DaemonError::Thresholds(_) => true,
            DaemonError::Publish(e) => !e.is_transient(),
            DaemonError::Http(e) => e.is_configuration(),
            _ => false,
        }
    }
}

/// A running model, as a reload sees it.
pub(crate) struct ModelSlot {
    pub swap: SwapSlot,
    pub identity: Arc<ModelIdentity>,
    pub path: PathBuf,
    /// Model input `(height, width)`: sources scale to it, so a reload cannot change it.
    pub input: (usize, usize),
    /// Whether the model has a stored view: its sources then deliver frames at their own
    /// size, so a reload cannot add or remove one either.
    pub viewed: bool,
}

/// Everything running, for reloads and the shutdown sequence.
pub(crate) struct Running {
    pub settings: Settings,
    pub models: HashMap<String, ModelSlot>,
    /// Reloads retune decisions through the decision thread's own channel.
    pub decide_tx: SyncSender<DecisionInput>,
    cancel: CancellationToken,
    sources: Vec<JoinHandle<()>>,
    scoring: Vec<JoinHandle<()>>,
    decide: JoinHandle<()>,
    /// Forwards MQTT commands to the decision thread; holds a sender of its channel.
    commands: TaskHandle,
    /// The station task of triggered cameras; ends after the decision thread.
    stations: Option<TaskHandle>,
    /// The Sparkplug B edge node, when configured; its NDEATH goes out after the drain.
    sparkplug: Option<sparkplug::Sparkplug>,
    /// Camera status reporters; each ends after publishing its source's final state.
    status: Tasks,
    /// Every thread and task above is started through it.
    pub supervisor: Supervisor,
}

/// What the process asks of the running daemon (from signals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: re-read the config file and the models.
    Reload,
    /// SIGINT/SIGTERM: drain and stop.
    Shutdown,
}

/// Runs the daemon until a [`Control::Shutdown`] arrives (or the control channel closes).
/// `config_file` is re-read on [`Control::Reload`].
pub async fn run(
    settings: Settings,
    config_file: PathBuf,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let started = Instant::now();
    let (supervisor, mut exits) = Supervisor::new();
    let mut svc = Service::start(&settings, &supervisor).await?;
    let runtime = Runtime::init(settings.runtime.clone())?;
    let models = load_models(&runtime, &settings.models).await?;
    let (publisher, commands) = MqttPublisher::start_with(
        &settings.mqtt,
        &settings.node.state_dir.join("outbox"),
        Some(&supervisor),
        svc.telemetry.clone(),
    )?;
    svc.board.set_publisher(publisher.handle());
    let mut running = start(settings, models, &publisher, commands, &svc, supervisor.clone())?;
    svc.board.set_models_loaded(true);
    info!(elapsed_ms = started.elapsed().as_millis() as u64, "inspectd running.");
    let failure = loop {
        tokio::select! {
            control = control.recv() => match control {
                Some(Control::Reload) => reload(&config_file, &mut running, &runtime, &svc).await,
                Some(Control::Shutdown) | None => break None,
            },
            Some(exit) = exits.recv() => match exit {
                Exit { stage, failure: Some(reason) } => break Some((stage, reason)),
                Exit { stage, failure: None } => info!(stage = %stage, "Stage finished."),
            },
        }
    };
    if let Some((stage, reason)) = &failure {
        error!(stage = %stage, reason = %reason, "A stage of the daemon failed; stopping so that systemd restarts inspectd.");
        svc.board.set_failed(stage, reason);
        let _ = svc.notifier.status(&format!("Failed: stage {stage} failed: {reason}"));
        if let Err(e) = publisher.handle().report_failure(stage, reason) {
            warn!("Cannot publish the failure as the node status: {e}");
        }
    }
    supervisor.set_stopping();
    info!("Shutting down: stopping sources, draining frames in flight.");
    svc.board.set_stopping();
    svc.stop_notifier().await;
    let deadline = Instant::now() + running.settings.node.shutdown_deadline;
    drain(running, deadline).await;
    publisher
        .shutdown(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(500)))
        .await;
    if failure.is_some() {
        // Keep answering /readyz with the failed stage for a moment: the drain takes only
        // milliseconds, and a health check polling now should see why before the exit.
        tokio::time::sleep(FAILED_LINGER).await;
    }
    svc.stop_http().await;
    match failure {
        Some((stage, reason)) => Err(DaemonError::StageFailed { stage, reason }),
        None => {
            info!("inspectd stopped.");
            Ok(())
        }
    }
}

/// Wires and starts every stage.
fn start(
    settings: Settings,
    models: HashMap<String, LoadedModel>,
    publisher: &MqttPublisher,
    commands: InboundStream,
    svc: &Service,
    supervisor: Supervisor,
) -> Result<Running, DaemonError> {
    let slots = models
        .iter()
        .map(|(name, m)| {
            let slot = ModelSlot {
                swap: SwapSlot::default(),
                identity: m.identity.clone(),
                path: settings.models[name].path.clone(),
                input: m.scorer.input_size(),
                viewed: m.bundle.view(None).stored(),
            };
            (name.clone(), slot)
        })
        .collect::<HashMap<_, _>>();
    let config = &settings.config;
    let cameras: Vec<(&String, &CameraSettings)> = settings.cameras.iter().collect();
    let (decide_tx, decide_rx) = sync_channel::<DecisionInput>(DECISION_QUEUE);
    let mut outputs = HashMap::new();
    let mut feeds = Vec::new();
    for (id, cam) in &cameras {
        let model = &models[&cam.config.model];
        let mut feed = camera_outputs(id, &cam.config, model)?;
        svc.metrics.set_model(id, &model.identity);
        feed.metrics = Some(svc.metrics.camera(id));
        feeds.push((
            id.to_string(),
            feed.last_scored_ms.clone(),
            model.identity.name.clone(),
            feed.degraded.clone(),
        ));
        outputs.insert(id.to_string(), feed);
    }
    let evidence = EvidenceStore::from_config(&config.evidence, &config.node.state_dir)
        .map_err(|e| DaemonError::Evidence(e.to_string()))?;
    let thresholds =
        ThresholdStore::open(&config.node.state_dir).map_err(|e| DaemonError::Thresholds(e.to_string()))?;
    let decision_stats = Arc::new(DecisionStats::default());
    svc.board.set_decisions(decision_stats.clone());
    let gates = commands::gates(&settings);
    let latest = Arc::new(LatestDecisions::default());
    let (station_tx, station_rx) = commands::station_channel(&settings);
    let mut stage = DecisionStage {
        cameras: outputs,
        results: config.mqtt.results.clone(),
        limiter: EvidenceLimiter::new(min_interval(&cameras)),
        stats: decision_stats,
        outputs: Outputs {
            publisher: Some(publisher.handle()),
            evidence: Some(evidence),
            telemetry: svc.telemetry.clone(),
            replay: false,
        },
        thresholds: Some(thresholds),
        parts: station_tx.clone(),
        latest: latest.clone(),
    };
    stage.restore_thresholds();
    stage.publish_initial_states();
    let decide = supervisor.thread("decide", Lifetime::UntilShutdown, move || stage.run(decide_rx))?;
    let commands = commands::forward_commands(&supervisor, commands, decide_tx.clone(), station_tx);
    let cancel = CancellationToken::new();
    let mut status = Vec::new();
    let streams = Streams {
        telemetry: &svc.telemetry,
        cancel: &cancel,
        publisher,
        feeds: &feeds,
        slots: &slots,
        board: &svc.board,
        supervisor: &supervisor,
        gates: &gates,
    };
    let mut statuses = HashMap::new();
    let (sources, scoring) = start_streams(
        &settings,
        models,
        &cameras,
        decide_tx.clone(),
        &streams,
        (&mut status, &mut statuses),
    )?;
    let ui_latest = latest.clone();
    let sources_of =
        sparkplug::Sources { latest, statuses: statuses.clone(), telemetry: svc.telemetry.clone() };
    let sparkplug = sparkplug::start(&settings, sources_of, decide_tx.clone(), &supervisor);
    svc.board.set_ui(UiHandles { latest: ui_latest, decide: decide_tx.clone() });
    let stations =
        commands::start_stations(&supervisor, &settings, gates, statuses, publisher.handle(), station_rx);
    Ok(Running {
        settings,
        models: slots,
        decide_tx,
        cancel,
        sources,
        scoring,
        decide,
        commands,
        stations,
        sparkplug,
        status,
        supervisor,
    })
}

/// The evidence limiter is shared; the shortest configured interval applies to every camera.
fn min_interval(cameras: &[(&String, &CameraSettings)]) -> Duration {
    cameras.iter().map(|(_, c)| c.evidence_interval).min().unwrap_or(Duration::from_secs(5))
}

/// Sends to the blocking decision channel from async code without blocking a runtime thread.
pub(crate) async fn forward(tx: &SyncSender<DecisionInput>, mut item: DecisionInput) {
    loop {
        match tx.try_send(item) {
            Ok(()) => return,
            Err(std::sync::mpsc::TrySendError::Full(back)) => {
                item = back;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
        }
    }
}

/// What the streams share: shutdown, publisher, per-camera status feeds, model swap slots.
struct Streams<'a> {
    board: &'a HealthBoard,
    cancel: &'a CancellationToken,
    publisher: &'a MqttPublisher,
    feeds: &'a [(String, Arc<AtomicU64>, String, crate::pipeline::decide::Degraded)],
    slots: &'a HashMap<String, ModelSlot>,
    supervisor: &'a Supervisor,
    telemetry: &'a Arc<Telemetry>,
    /// Trigger gates of triggered cameras.
    gates: &'a HashMap<String, Arc<TriggerGate>>,
}

/// Starts, per model, a scoring thread fed by its cameras' edges, and a source per camera.
fn start_streams(
    settings: &Settings,
    models: HashMap<String, LoadedModel>,
    cameras: &[(&String, &CameraSettings)],
    decide_tx: SyncSender<DecisionInput>,
    streams: &Streams<'_>,
    (tasks, statuses): (&mut Tasks, &mut HashMap<String, watch::Receiver<SourceStatus>>),
) -> Result<(Threads, Threads), DaemonError> {
    let Streams { cancel, publisher, feeds, slots, board, supervisor, telemetry, gates } = streams;
    let mut sources = Vec::new();
    let mut scoring = Vec::new();
    for (name, model) in models {
        let signal = Arc::new(Signal::default());
        let mut inputs: Vec<EdgeReceiver<Frame>> = Vec::new();
        let (h, w) = model.scorer.input_size();
        let view = model.bundle.view(None);
        let mut views = HashMap::new();
        for (id, cam) in cameras.iter().filter(|(_, c)| c.config.model == name) {
            // A model with a view cuts frames itself: the source keeps its own size, and the
            // camera's roi moves the view's ROI instead of cropping in GStreamer.
            let (roi, (w, h)) = match view.stored() {
                true => (None, source::NATIVE_SIZE),
                false => (cam.config.roi, (w as u32, h as u32)),
            };
            check_camera_view(id, &name, &view, &cam.config)?;
            if view.stored() {
                views.insert(Arc::from(id.as_str()), camera_view(&cam.config));
            }
            let source_settings = SourceSettings {
                camera: Arc::from(id.as_str()),
                source: cam.config.source.clone(),
                roi,
                width: w,
                height: h,
                stall_timeout: cam.stall_timeout,
                trigger: gates
                    .get(id.as_str())
                    .map(|gate| Triggered { gate: gate.clone(), config: cam.config.trigger.clone() }),
            };
            let (tx, rx) =
                edge_with_signal(cam.queue.get(), source_settings.overflow(), Some(signal.clone()));
            let (status_tx, status_rx) = watch::channel(SourceStatus::starting());
            let token = cancel.child_token();
            let source_telemetry = Arc::clone(telemetry);
            sources.push(supervisor.thread(&source::thread_name(id), Lifetime::MayEnd, move || {
                source::run(source_settings, tx, status_tx, token, source_telemetry);
                Ok(())
            })?);
            board.add_camera(id, &name, status_rx.clone());
            statuses.insert(id.to_string(), status_rx.clone());
            inputs.push(rx);
            let (_, scored, model_name, degraded) =
                feeds.iter().find(|(c, _, _, _)| c == *id).expect("feed per camera");
            let feed = CameraStatusFeed {
                camera: id.to_string(),
                model: model_name.clone(),
                last_scored_ms: scored.clone(),
                degraded: degraded.clone(),
                telemetry: Arc::clone(telemetry),
                interval: settings.status_interval,
            };
            let report = report_camera_status(feed, status_rx, publisher.handle());
            tasks.push(supervisor.task(&format!("status:{id}"), Lifetime::MayEnd, report));
        }
        let stats = Arc::new(ScoringStats::default());
        board.add_scorer(&name, stats.clone());
        let stage = ScoringStage {
            norm: model.bundle.manifest.input.normalisation(),
            scorer: model.scorer,
            model: model.identity,
            inputs,
            signal,
            batching: Batching {
                max_batch: settings.models[&name].max_batch.get(),
                max_wait: settings.models[&name].max_wait,
            },
            output: decide_tx.clone(),
            stats: stats.clone(),
            telemetry: Arc::clone(telemetry),
            swap: slots[&name].swap.clone(),
            view,
            cameras: views,
            resolved: HashMap::new(),
        };
        scoring.push(supervisor.thread(&stage.thread_name(), Lifetime::MayEnd, move || stage.run())?);
    }
    Ok((sources, scoring))
}

/// Stops the sources and waits, until `deadline`, for each stage to drain in order.
async fn drain(running: Running, deadline: Instant) {
    let Running {
        cancel,
        sources,
        scoring,
        decide,
        commands,
        stations,
        sparkplug,
        status,
        decide_tx,
        supervisor,
        ..
    } = running;
    cancel.cancel();
    drop(decide_tx);
    join_all("sources", sources, deadline, &supervisor).await;
    join_all("scoring", scoring, deadline, &supervisor).await;
    // The command forwarder holds a sender of the decision channel; stop it so the channel closes.
    commands.abort();
    if let Some(sparkplug) = &sparkplug {
        sparkplug.stop_commands();
    }
    join_all("decisions", vec![decide], deadline, &supervisor).await;
    if let Some(stations) = stations {
        // It answers any open part (`timeout`) once the decision thread let go of its channel.
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, stations.finished_ref()).await.is_err() {
            stations.abort();
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let all = async {
        for task in &status {
            task.finished_ref().await;
        }
    };
    if tokio::time::timeout(left, all).await.is_err() {
        warn!(running = %supervisor.running().join(", "), "Shutdown deadline passed; camera status reporters aborted.");
        status.iter().for_each(TaskHandle::abort);
    }
    if let Some(sparkplug) = sparkplug {
        sparkplug.shutdown().await;
    }
}

async fn join_all(
    what: &'static str,
    handles: Vec<JoinHandle<()>>,
    deadline: Instant,
    supervisor: &Supervisor,
) {
    let joined = tokio::task::spawn_blocking(move || handles.into_iter().for_each(|h| drop(h.join())));
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, joined).await {
        Ok(_) => info!(stage = what, "Stage drained."),
        Err(_) => warn!(
            stage = what,
            running = %supervisor.running().join(", "),
            "Shutdown deadline passed before this stage finished; exiting without the threads still running."
        ),
    }
}
