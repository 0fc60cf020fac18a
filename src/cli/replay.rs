//! `inspectd replay`: recorded videos, image folders or glob patterns through the daemon's
//! scoring and decision stages, written per frame, summarised, optionally annotated, saved as
//! evidence and published over MQTT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::RuntimeArgs;
use crate::config::types::{AlarmConfig, CameraEvidence};
use crate::config::Config;
use crate::evidence::{EvidenceFormat, EvidenceStore};
use crate::model::bundle::Bundle;
use crate::model::runtime::Runtime;
use crate::model::scorer::Scorer;
use crate::publish::MqttPublisher;
use crate::replay::input::{expand, Bound, Selection};
use crate::replay::output::{read_labels, Format, LineWriter};
use crate::replay::{replay, Pace, ReplaySettings, ReplaySummary};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Model bundle to score with.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Daemon config: with --camera, its alarm, ROI and threshold settings; with --mqtt, the broker.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Camera id in --config whose settings to use (also names alarms and evidence).
    #[arg(long)]
    pub camera: Option<String>,
    /// `fast`: every frame, as fast as the machine allows. `realtime`: at the file's frame rate,
    /// dropping like a live camera when scoring falls behind.
    #[arg(long, value_enum, default_value = "fast")]
    pub pace: Pace,
    /// Score every N-th frame.
    #[arg(long, default_value_t = 1)]
    pub every: u64,
    /// First frame to score: a frame number (120) or a time (12.5s, 1:02.5).
    #[arg(long, value_parser = Bound::parse)]
    pub start: Option<Bound>,
    /// Stop before this frame or time.
    #[arg(long, value_parser = Bound::parse)]
    pub end: Option<Bound>,
    /// Frames per scoring run.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Overrides the threshold (raw score).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Per-frame results file (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Also write the summary as JSON.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// Frame labels (JSON list of {frame, label} or {start, end, label}) for AUROC and F1.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Write the video with heatmap, verdict and score burned in (.mkv or .avi, MJPEG).
    #[arg(long, value_name = "FILE")]
    pub annotate: Option<PathBuf>,
    /// Save evidence (frame and heatmap overlay) here as the daemon would: with --camera by its
    /// `[cameras.X.evidence]` policy, otherwise for every raised alarm.
    #[arg(long, value_name = "DIR")]
    pub evidence: Option<PathBuf>,
    /// Publish results and alarms like the daemon, flagged `replay: true`, under node id
    /// `{node}-replay` so the production daemon's session and status are untouched; needs --config.
    #[arg(long)]
    pub mqtt: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Video files, folders of images (sorted by name) or glob patterns (quote them).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.every >= 1 && args.batch >= 1, "--every and --batch must be at least 1");
    let config = match &args.config {
        Some(file) => Some(Settings::load(file)?.config),
        None => None,
    };
    let inputs = expand(&args.inputs)?;
    let bundle = Bundle::load(&args.model).context("cannot load the model bundle")?;
    let runtime = Runtime::init(args.runtime.settings())?;
    let scorer = Scorer::new(&runtime, &bundle)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let publisher = match (&args.mqtt, &config) {
        (false, _) => None,
        (true, None) => bail!("--mqtt needs --config for the broker settings"),
        (true, Some(c)) => {
            let publisher = rt.block_on(async { start_replay_publisher(c) })?.0;
            wait_for_broker(&rt, &publisher, c);
            Some(publisher)
        }
    };
    let settings = settings(&args, config.as_ref(), inputs, publisher.as_ref().map(|p| p.handle()))?;
    let out: Box<dyn std::io::Write + Send> = match &args.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let mut writer = LineWriter::new(out, args.format)?;
    let bar = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {pos} frames  {per_sec}  {msg}").expect("valid template"),
    );
    let mut progress = |done: u64, total: Option<u64>| {
        if let Some(t) = total.filter(|_| bar.length() != total) {
            bar.set_length(t);
            bar.set_style(
                ProgressStyle::with_template("[{bar:30}] {pos}/{len} frames  {per_sec}  ETA {eta}")
                    .expect("valid template"),
            );
        }
        bar.set_position(done);
    };
    let summary = replay(scorer, &bundle, settings, &mut writer, &mut progress)?;
    bar.finish_and_clear();
    writer.finish()?;
    if let Some(p) = publisher {
        rt.block_on(p.shutdown(Duration::from_secs(5)));
    }
    report(&summary, args.summary.as_ref())?;
    Ok(if summary.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// How long replay waits for the broker before it starts scoring.
const BROKER_WAIT: Duration = Duration::from_secs(5);

/// Waits up to [`BROKER_WAIT`] for the broker, so that an unreachable broker is reported before
/// the replay starts, and the states of the first frames are not all collapsed into one while
/// the connection comes up (retained states are latest-value). Results and alarm events do not
/// need this (they wait in the client queue and the outbox); a broker that stays away is
/// reported and the replay goes on.
fn wait_for_broker(rt: &tokio::runtime::Runtime, publisher: &MqttPublisher, c: &Config) {
    let mut connected = publisher.handle().connected();
    let up = rt.block_on(async {
        tokio::time::timeout(BROKER_WAIT, connected.wait_for(|up| *up)).await.is_ok_and(|r| r.is_ok())
    });
    if !up {
        eprintln!(
            "warning: no MQTT connection to {}:{} after {} s; replaying anyway: results and alarms \
             go out when it connects, and alarm states raised and cleared before then are published \
             only as their latest value",
            c.mqtt.host,
            c.mqtt.port,
            BROKER_WAIT.as_secs()
        );
    }
}

/// Publishes as node `{node}-replay` with its own client id and outbox: a replay must never
/// take over the production daemon's MQTT session, status or last will.
fn start_replay_publisher(
    c: &Config,
) -> Result<(MqttPublisher, crate::publish::InboundStream), crate::publish::PublishError> {
    let mut node = c.node.clone();
    node.id = format!("{}-replay", node.id);
    let mut mqtt = c.mqtt.clone();
    mqtt.client_id = None;
    let outbox = std::env::temp_dir().join(format!("inspectd-replay-outbox-{}", std::process::id()));
    MqttPublisher::start(&mqtt, &node, &outbox)
}

fn settings(
    args: &ReplayArgs,
    config: Option<&Config>,
    inputs: Vec<crate::replay::input::Input>,
    mqtt: Option<crate::publish::PublishHandle>,
) -> anyhow::Result<ReplaySettings> {
    let camera = match (&args.camera, config) {
        (Some(id), Some(c)) => Some((
            id.clone(),
            c.cameras.get(id).with_context(|| format!("no camera '{id}' in the config"))?.clone(),
        )),
        (Some(_), None) => bail!("--camera needs --config"),
        _ => None,
    };
    let evidence = match &args.evidence {
        Some(dir) => Some(EvidenceStore::open(dir, 100_000, u64::MAX, EvidenceFormat::parse("png")?)?),
        None => None,
    };
    Ok(ReplaySettings {
        inputs,
        camera: camera.as_ref().map_or_else(|| "replay".to_string(), |(id, _)| id.clone()),
        roi: camera.as_ref().and_then(|(_, c)| c.roi),
        ignore: camera.as_ref().map(|(_, c)| c.ignore.clone()).unwrap_or_default(),
        alarm: camera.as_ref().map_or_else(AlarmConfig::default, |(_, c)| c.alarm),
        evidence_policy: camera.as_ref().map_or_else(CameraEvidence::default, |(_, c)| c.evidence),
        threshold: args.threshold.or(camera.as_ref().and_then(|(_, c)| c.threshold)),
        pace: args.pace,
        selection: Selection {
            every: args.every,
            start: args.start.unwrap_or(Bound::Frame(0)),
            end: args.end,
        },
        batch: args.batch,
        labels: args.labels.as_ref().map(|p| read_labels(p)).transpose()?,
        annotate: args.annotate.clone(),
        evidence,
        mqtt,
    })
}

fn report(s: &ReplaySummary, file: Option<&PathBuf>) -> anyhow::Result<()> {
    for i in &s.inputs {
        match &i.error {
            Some(e) => {
                eprintln!("FAILED {}: {e} ({} frames scored before the error)", i.input, i.frames_scored)
            }
            None => eprintln!("{}: {} frames, {} NG, {} alarms", i.input, i.frames_scored, i.ng, i.alarms),
        }
    }
    eprintln!(
        "scored {} frames ({} dropped) in {:.1} s: {:.1} frames/s; {} NG, {} alarms; threshold {:.4}",
        s.frames_scored,
        s.frames_dropped,
        s.wall_s,
        s.frames_per_second,
        s.ng_frames,
        s.alarms_raised,
        s.threshold
    );
    let d = &s.scores;
    eprintln!(
        "scores: min {:.4}  p50 {:.4}  p90 {:.4}  p99 {:.4}  max {:.4}",
        d.min, d.p50, d.p90, d.p99, d.max
    );
    if let Some(l) = &s.labels {
        eprintln!(
            "labels: {} of {} frames defective; AUROC {}; at threshold precision {:.3} recall {:.3} F1 {:.3}; best F1 {} at threshold {}",
            l.defective,
            l.frames,
            l.auroc.map_or("-".into(), |a| format!("{a:.4}")),
            l.precision,
            l.recall,
            l.f1,
            l.best_f1.map_or("-".into(), |f| format!("{f:.3}")),
            l.best_f1_threshold.map_or("-".into(), |t| format!("{t:.4}"))
        );
    }
    if let Some(path) = file {
        std::fs::write(path, serde_json::to_vec_pretty(s)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
