//! Logging setup: human-readable lines on stderr, so stdout stays free for results.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber with `filter` (e.g. "info" or "inspectd=debug").
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
