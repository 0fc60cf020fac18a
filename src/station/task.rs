//! The task that owns every station: triggers in, gates armed, camera verdicts collected,
//! deadlines kept, part results and the ready state out.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::part::{refused, Observation, OpenPart};
use crate::flow::trigger::{PartTag, TriggerGate};
use crate::publish::messages::{timestamp, PartMessage, ReadyState};
use crate::publish::{PublishHandle, TriggerRequest};
use crate::settings::StationSettings;
use crate::source::{SourceState, SourceStatus};

/// Triggers and verdicts waiting for the task; triggers come from PLCs (a few per second),
/// verdicts one per camera per trigger, so this is never close to full in practice. The
/// decision thread waits when it is (no verdict is dropped).
pub const STATION_QUEUE: usize = 64;

/// How often `ready` is re-evaluated against the cameras' streaming state.
const READY_TICK: Duration = Duration::from_millis(200);

/// What the task consumes.
#[derive(Debug)]
pub enum StationInput {
    Trigger(TriggerRequest),
    Observed(Observation),
}

struct Station {
    cameras: Vec<String>,
    timeout: Duration,
    open: Option<(OpenPart, Instant)>,
    /// The ready state last published, so only changes go out.
    published: Option<(bool, Option<String>, Vec<String>)>,
}

/// Every station of the daemon.
pub struct StationTask {
    stations: BTreeMap<String, Station>,
    gates: HashMap<String, Arc<TriggerGate>>,
    statuses: HashMap<String, watch::Receiver<SourceStatus>>,
    publisher: PublishHandle,
    input: mpsc::Receiver<StationInput>,
}

impl StationTask {
    pub fn new(
        settings: &BTreeMap<String, StationSettings>,
        gates: HashMap<String, Arc<TriggerGate>>,
        statuses: HashMap<String, watch::Receiver<SourceStatus>>,
        publisher: PublishHandle,
        input: mpsc::Receiver<StationInput>,
    ) -> StationTask {
        let stations = settings
            .iter()
            .map(|(id, s)| {
                let station =
                    Station { cameras: s.cameras.clone(), timeout: s.timeout, open: None, published: None };
                (id.clone(), station)
            })
            .collect();
        StationTask { stations, gates, statuses, publisher, input }
    }

    /// Runs until the input closes (shutdown); a part still open then is answered `timeout`.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(READY_TICK);
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                input = self.input.recv() => match input {
                    Some(StationInput::Trigger(t)) => self.trigger(t).await,
                    Some(StationInput::Observed(o)) => self.observed(o).await,
                    None => break,
                },
                () = sleep_until(deadline) => self.expire(Instant::now()).await,
                _ = tick.tick() => self.refresh_ready(),
            }
        }
        self.expire(Instant::now() + Duration::from_secs(365 * 24 * 3600)).await;
    }

    async fn trigger(&mut self, t: TriggerRequest) {
        let Some(station) = self.stations.get_mut(&t.station) else {
            warn!(station = %t.station, "Trigger for an unknown station ignored (see [stations] and cameras.*.mode).");
            return;
        };
        let now = SystemTime::now();
        let refusal = match (&t.problem, &station.open) {
            (Some(problem), _) => Some(problem.clone()),
            (None, Some((open, _))) => Some(format!("busy with part {}; wait for ready", open.part_id)),
            (None, None) => None,
        };
        if let Some(reason) = refusal {
            warn!(station = %t.station, part_id = %t.part_id, "Trigger refused: {reason}");
            let msg = refused(&t, &t.station, reason, now);
            publish(&self.publisher, &t.station, &msg).await;
            return;
        }
        let tag = PartTag {
            part_id: t.part_id.as_str().into(),
            station: t.station.as_str().into(),
            triggered_at: t.received_at,
        };
        for camera in &station.cameras {
            if let Some(Err(e)) = self.gates.get(camera).map(|g| g.arm(tag.clone())) {
                error!(camera = %camera, part_id = %t.part_id, "Cannot fire the camera: {e}");
            }
        }
        debug!(station = %t.station, part_id = %t.part_id, "Part triggered.");
        station.open = Some((OpenPart::new(&t), Instant::now() + station.timeout));
        self.refresh_ready();
    }

    async fn observed(&mut self, o: Observation) {
        let Some(station) = self.stations.get_mut(&o.station) else { return };
        let done = match &mut station.open {
            Some((part, _)) if part.part_id == o.part_id => {
                part.report(&o.camera, o.result, &station.cameras)
            }
            _ => {
                debug!(camera = %o.camera, part_id = %o.part_id, "Verdict for a part no longer open (timed out) ignored.");
                return;
            }
        };
        if done {
            let (part, _) = station.open.take().expect("checked above");
            let msg = part.finish(&o.station, &station.cameras, SystemTime::now());
            publish(&self.publisher, &o.station, &msg).await;
            self.refresh_ready();
        }
    }

    /// Answers every part whose deadline is at or before `now` with `timeout`.
    async fn expire(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (id, station) in &mut self.stations {
            if station.open.as_ref().is_some_and(|(_, deadline)| *deadline <= now) {
                let (part, _) = station.open.take().expect("checked above");
                for camera in &station.cameras {
                    if let Some(gate) = self.gates.get(camera) {
                        gate.disarm(&part.part_id);
                    }
                }
                expired.push(part.finish(id, &station.cameras, SystemTime::now()));
            }
        }
        for msg in expired {
            publish(&self.publisher, &msg.station.clone(), &msg).await;
        }
        self.refresh_ready();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.stations.values().filter_map(|s| s.open.as_ref().map(|(_, d)| *d)).min()
    }

    /// Publishes each station's ready state when it changed.
    fn refresh_ready(&mut self) {
        for (id, station) in &mut self.stations {
            let waiting_for: Vec<String> = station
                .cameras
                .iter()
                .filter(|c| self.statuses.get(*c).is_none_or(|s| s.borrow().state != SourceState::Streaming))
                .cloned()
                .collect();
            let part_id = station.open.as_ref().map(|(p, _)| p.part_id.clone());
            let ready = part_id.is_none() && waiting_for.is_empty();
            let now = (ready, part_id, waiting_for);
            if station.published.as_ref() == Some(&now) {
                continue;
            }
            let state = ReadyState {
                ready: now.0,
                part_id: now.1.clone(),
                waiting_for: now.2.clone(),
                since: timestamp(SystemTime::now()),
            };
            if let Err(e) = self.publisher.publish_ready(id, &state) {
                warn!(station = %id, "Ready state not published: {e}");
            }
            station.published = Some(now);
        }
    }
}

async fn publish(publisher: &PublishHandle, station: &str, msg: &PartMessage) {
    match publisher.publish_part(station, msg).await {
        Ok(_) => info!(station, part_id = %msg.part_id, verdict = ?msg.verdict, "Part judged."),
        Err(e) => error!(station, part_id = %msg.part_id, "PART RESULT NOT QUEUED: {e}"),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
