//! Logging setup: lines on stderr, so stdout stays free for results; coloured only at a
//! terminal.
//!
//! Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`) text lines drop the
//! timestamp, which journald records itself, drop colours, and start with a syslog priority
//! (`<3>` error … `<7>` debug) that journald turns into the entry's priority, so
//! `journalctl -p warning -u inspectd` works. `--log-format json` writes one JSON object per
//! line for log shippers, with the event's fields at the top level.

use std::fmt;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (journald-friendly under systemd).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber with `filter` (e.g. "info" or "inspectd=debug") and text lines.
pub fn init(filter: &str) {
    init_with(filter, LogFormat::Text);
}

/// Installs the global subscriber with `filter` and `format`. A second call does nothing.
pub fn init_with(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal: escape codes in files and pipes are noise.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    // try_init fails only when a subscriber is already set (tests, library users): keep theirs.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text if stderr_is_journal() => builder
            .event_format(SyslogPriority(tracing_subscriber::fmt::format().without_time().with_ansi(false)))
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Whether stderr is the journal stream systemd connected: `JOURNAL_STREAM` holds its
/// `device:inode`. Comparing them (as sd_journal_stream_fd(3) advises) keeps the format right
/// when a child of the service has its stderr redirected elsewhere but inherited the variable.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    let Ok(meta) = std::fs::File::from(fd).metadata() else { return false };
    stream.to_str() == Some(format!("{}:{}", meta.dev(), meta.ino()).as_str())
}

/// Prefixes each line with its syslog priority, which journald strips and records.
struct SyslogPriority<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPriority<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// syslog(3) priorities: err, warning, info, debug.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        let p: Vec<u8> =
            [Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE].map(priority).into();
        assert_eq!(p, vec![3, 4, 6, 7, 7]);
    }
}
