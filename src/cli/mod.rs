//! The command line: argument types (clap) and dispatch. `main.rs` only calls [`main`].
//!
//! Raw arguments are turned once into validated settings (ripgrep's pattern); each command
//! returns `anyhow::Result`, and [`exit_code`] maps failures to the documented exit codes:
//! 0 ok, 2 usage, 78 configuration error, 1 runtime failure.

mod bench;
mod bench_frame;
mod demo_data;
mod eval;
mod replay;
mod run;
mod score;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::model::runtime::{Provider, RuntimeSettings};

/// Exit status for a configuration error (sysexits EX_CONFIG); systemd must not restart-loop on it.
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "inspectd",
    version,
    about = "Visual inspection daemon: cameras → CFA anomaly scoring → MQTT"
)]
pub struct Cli {
    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, global = true, default_value = "info", env = "INSPECTD_LOG")]
    pub log: String,
    /// Log line format on stderr (under systemd, lines carry journald priorities instead of timestamps).
    #[arg(long, global = true, value_enum, default_value_t = crate::logging::LogFormat::Text, env = "INSPECTD_LOG_FORMAT")]
    pub log_format: crate::logging::LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the inspection daemon: cameras → scoring → decisions → MQTT.
    Run(run::RunArgs),
    /// Replay recorded videos or image folders through the scoring and alarm logic.
    Replay(replay::ReplayArgs),
    /// Validate a configuration file (and the model bundles it names) without starting anything.
    CheckConfig(run::RunArgs),
    /// Score images with a model bundle: one JSON line per image.
    Score(score::ScoreArgs),
    /// Train a model bundle from good images (folders, MVTec categories).
    Train(train::TrainArgs),
    /// Metrics of a bundle on MVTec-AD-layout folders: AUROC, AUPRO, F1, per defect type.
    Eval(eval::EvalArgs),
    /// Write synthetic defect datasets (MVTec-AD layout) to try inspectd without a camera.
    DemoData(demo_data::DemoDataArgs),
    /// Measure per-stage speed, throughput and the kNN's share of the machine's matmul peak.
    Bench(bench::BenchArgs),
}

/// ONNX Runtime options shared by every command that runs a model.
#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Path of libonnxruntime.so (default: $ORT_DYLIB_PATH, then where scripts/setup installs it).
    #[arg(long, value_name = "FILE")]
    pub ort_library: Option<PathBuf>,
    /// Execution providers to try, in order (tensorrt, cuda, cpu).
    #[arg(long, value_delimiter = ',', default_value = "cpu", value_parser = parse_provider)]
    pub providers: Vec<Provider>,
    /// Providers that must work; otherwise inspectd exits instead of falling back to CPU.
    #[arg(long, value_delimiter = ',', value_parser = parse_provider)]
    pub require_provider: Vec<Provider>,
    /// Intra-op threads per ONNX Runtime session (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    Provider::parse(s)
        .ok_or_else(|| format!("unknown execution provider '{s}' (expected tensorrt, cuda or cpu)"))
}

impl RuntimeArgs {
    pub fn settings(&self) -> RuntimeSettings {
        RuntimeSettings::new(
            self.ort_library.clone(),
            self.providers.clone(),
            self.require_provider.clone(),
            self.threads,
        )
    }
}

/// `inspectd score … | head` must end quietly when `head` has read enough, as Unix tools do,
/// not panic with a backtrace: the commands that only print restore the default SIGPIPE
/// action (Rust ignores it, for sockets). The daemon and replay, which talk to a broker,
/// keep it ignored.
fn quiet_on_closed_pipe() {
    // SAFETY: signal(2) with SIG_DFL has no preconditions; it is set before the command starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Runs the parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::CheckConfig(args) => run::check(args),
        Command::Replay(args) => replay::run(args),
        Command::Score(args) => {
            quiet_on_closed_pipe();
            score::run(args)
        }
        Command::Bench(args) => bench::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => {
            quiet_on_closed_pipe();
            eval::run(args)
        }
        Command::DemoData(args) => demo_data::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// Configuration problems exit 78, everything else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let config = e.chain().filter_map(runtime_error).any(is_config_error);
    if config {
        EXIT_CONFIG
    } else {
        1
    }
}

/// A runtime error on its own or inside a scorer error.
fn runtime_error<'a>(
    c: &'a (dyn std::error::Error + 'static),
) -> Option<&'a crate::model::runtime::RuntimeError> {
    match c.downcast_ref::<crate::model::scorer::ScoreError>() {
        Some(crate::model::scorer::ScoreError::Runtime(r)) => Some(r),
        _ => c.downcast_ref::<crate::model::runtime::RuntimeError>(),
    }
}

fn is_config_error(e: &crate::model::runtime::RuntimeError) -> bool {
    use crate::model::runtime::RuntimeError::*;
    matches!(e, LibraryNotFound { .. } | Load { .. } | ProviderMissing { .. })
}
