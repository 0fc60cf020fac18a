//! `inspectd run --config FILE` (the daemon) and `inspectd check-config --config FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use tracing::{info, warn};

use super::EXIT_CONFIG;
use crate::model::bundle::Bundle;
use crate::service::daemon::{self, Control};
use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration file (see config/inspectd.toml); INSPECTD__SECTION__KEY variables override it.
    #[arg(long, short, value_name = "FILE", default_value = "/etc/inspectd/inspectd.toml")]
    pub config: PathBuf,
}

/// Loads the config, printing every problem and returning exit code 78 on failure.
fn load(file: &std::path::Path) -> Result<Settings, ExitCode> {
    Settings::load(file).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

pub fn check(args: RunArgs) -> anyhow::Result<ExitCode> {
    let settings = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut bad = 0;
    let mut views = std::collections::HashMap::new();
    let mut calibrations = std::collections::HashMap::new();
    for (name, m) in &settings.models {
        match Bundle::load(&m.path) {
            Ok(b) => {
                eprintln!(
                    "model {name}: {} ({}), threshold {:?}",
                    b.manifest.model.id,
                    m.path.display(),
                    b.manifest.threshold.as_ref().map(|t| t.image)
                );
                views.insert(name.clone(), b.view(None));
                calibrations.insert(name.clone(), b.manifest.threshold.clone());
            }
            Err(e) => {
                bad += 1;
                eprintln!("error: models.{name}.path: {e}");
            }
        }
    }
    // A camera's roi and ignore polygons against its model's view, as the daemon checks at start.
    for (id, cam) in &settings.cameras {
        let Some(view) = views.get(&cam.config.model) else { continue };
        if let Err(e) = crate::service::check_camera_view(id, &cam.config.model, view, &cam.config) {
            bad += 1;
            eprintln!("error: {e}");
        }
    }
    // A configured threshold far from where its model puts good parts (a warning: the daemon
    // starts with it).
    for (id, cam) in &settings.cameras {
        let (Some(t), Some(Some(cal))) = (cam.config.threshold, calibrations.get(&cam.config.model)) else {
            continue;
        };
        if let Some(why) = crate::decision::off_scale(t, cal) {
            eprintln!(
                "warning: cameras.{id}.threshold: {why}; {}",
                crate::decision::threshold::OFF_SCALE_FIX
            );
        }
    }
    if bad > 0 {
        return Ok(ExitCode::from(EXIT_CONFIG));
    }
    let enabled = settings.cameras.len();
    println!("{}: OK ({} models, {enabled} cameras enabled)", args.config.display(), settings.models.len());
    Ok(ExitCode::SUCCESS)
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let settings = match load(&args.config) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("inspectd-rt")
        .build()
        .context("tokio runtime")?;
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(4);
    let file = args.config.clone();
    let result = rt.block_on(async move {
        tokio::spawn(signals(control_tx));
        daemon::run(settings, file, control_rx).await
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.is_configuration() => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(EXIT_CONFIG))
        }
        Err(e) => Err(e.into()),
    }
}

/// Turns signals into daemon controls: SIGHUP reloads; the first SIGINT/SIGTERM drains and
/// stops; a second one exits at once.
async fn signals(control: tokio::sync::mpsc::Sender<Control>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        warn!("Cannot install signal handlers; stop with SIGKILL.");
        return;
    };
    let mut stopping = false;
    loop {
        let what = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        if what == "SIGHUP" {
            info!("SIGHUP received: reloading.");
            let _ = control.send(Control::Reload).await;
        } else if stopping {
            warn!("Second {what}: exiting immediately.");
            std::process::exit(130);
        } else {
            info!("{what} received.");
            stopping = true;
            let _ = control.send(Control::Shutdown).await;
        }
    }
}
