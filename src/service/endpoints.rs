//! What the running daemon shows the outside: systemd notification (readiness, status,
//! watchdog), the health board, metrics and telemetry, and the HTTP endpoint serving them.
//! Started first, so `/healthz` answers while models load, and stopped last.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::api::Api;
use super::board::HealthBoard;
use super::health::{HealthServer, HttpError};
use super::metrics::Metrics;
use super::notify::Notifier;
use super::watchdog::run_notifier;
use crate::settings::Settings;
use crate::telemetry::Telemetry;
use crate::util::supervise::{Lifetime, Supervisor, TaskHandle};

/// systemd notification, the health board, metrics and the HTTP endpoint.
pub(crate) struct Service {
    pub notifier: Notifier,
    pub board: HealthBoard,
    pub metrics: Arc<Metrics>,
    pub telemetry: Arc<Telemetry>,
    notify_cancel: CancellationToken,
    notify_task: Option<TaskHandle>,
    http_cancel: CancellationToken,
    http_task: Option<TaskHandle>,
}

impl Service {
    /// Starts the HTTP endpoint first, so /healthz answers while models load, then the
    /// notifier, which sends READY=1 once the board says everything is up.
    pub(crate) async fn start(settings: &Settings, supervisor: &Supervisor) -> Result<Service, HttpError> {
        let notifier = Notifier::from_env().unwrap_or_else(|e| {
            warn!("systemd notification unavailable: {e}");
            Notifier::default()
        });
        let telemetry = Arc::new(Telemetry::default());
        let board = HealthBoard::new();
        board.set_telemetry(telemetry.clone());
        let metrics = Arc::new(Metrics::new(telemetry.clone()));
        let http_cancel = CancellationToken::new();
        let config = &settings.config;
        let api = Api {
            enabled: config.http.ui,
            token: config.http.ui_token.clone(),
            evidence_dir: Some(config.evidence.resolved_dir(&config.node.state_dir)),
            model_dirs: config.models.iter().map(|(name, m)| (name.clone(), m.path.clone())).collect(),
            ..Api::default()
        };
        let server =
            HealthServer::bind(&settings.config.http.bind, board.clone(), metrics.clone(), api).await?;
        let http_task =
            server.map(|s| supervisor.task("http", Lifetime::UntilShutdown, s.serve(http_cancel.clone())));
        let notify_cancel = CancellationToken::new();
        let snapshot = {
            let b = board.clone();
            move || b.snapshot()
        };
        let timeout = settings.node.readiness_timeout;
        let notify_task = Some(supervisor.task(
            "notify",
            Lifetime::UntilShutdown,
            run_notifier(notifier.clone(), snapshot, timeout, notify_cancel.clone()),
        ));
        Ok(Service {
            notifier,
            board,
            metrics,
            telemetry,
            notify_cancel,
            notify_task,
            http_cancel,
            http_task,
        })
    }

    /// Sends STOPPING=1 and ends the watchdog pings.
    pub(crate) async fn stop_notifier(&mut self) {
        self.notify_cancel.cancel();
        if let Some(task) = self.notify_task.take() {
            task.finished().await;
        }
    }

    pub(crate) async fn stop_http(self) {
        self.http_cancel.cancel();
        if let Some(task) = self.http_task {
            task.finished().await;
        }
    }
}
