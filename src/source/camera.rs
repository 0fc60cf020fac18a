//! A running camera source: one OS thread per camera that builds the pipeline, feeds frames to
//! the edge and rebuilds the pipeline with backoff when a live source fails.
//!
//! A dedicated thread rather than a tokio task, because pulling from an appsink and pushing to
//! a blocking edge are blocking calls (style.md rule 4). A second, tiny thread waits for the
//! shutdown token and closes the edge, which wakes a push that waits on a full blocking edge.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::flow::edge::EdgeSender;
use crate::flow::frame::Frame;

use super::error::SourceError;
use super::status::{SourceState, SourceStatus, StatusReporter};
use super::stream::{Feed, Outcome};
use super::SourceSettings;
use crate::telemetry::Telemetry;
use crate::util::backoff::Backoff;

/// A pipeline that delivered frames this long counts as healthy: the next failure starts the
/// backoff again from its first step instead of continuing to lengthen it.
const HEALTHY_AFTER: Duration = Duration::from_secs(5);

/// Starts a camera source on its own thread.
///
/// `frames` must use the policy [`SourceSettings::overflow`] names. The thread runs until the
/// stream ends (files), a fatal error, the consumer drops the edge, or `shutdown` is
/// cancelled; then it sets the pipeline to Null, publishes [`SourceState::Stopped`] (or
/// `Error`) and closes the edge so downstream stages drain.
pub fn spawn(
    settings: SourceSettings,
    frames: EdgeSender<Frame>,
    status: watch::Sender<SourceStatus>,
    shutdown: CancellationToken,
    telemetry: Arc<Telemetry>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name(thread_name(&settings.camera))
        .spawn(move || run(settings, frames, status, shutdown, telemetry))
}

/// `source:{camera}`, the name of a source's thread.
pub fn thread_name(camera: &str) -> String {
    format!("source:{camera}")
}

/// The body of a source's thread (see [`spawn`]); for callers that start the thread
/// themselves, such as the daemon's supervisor.
pub fn run(
    settings: SourceSettings,
    frames: EdgeSender<Frame>,
    status: watch::Sender<SourceStatus>,
    shutdown: CancellationToken,
    telemetry: Arc<Telemetry>,
) {
    // Cancelled when this thread ends for any reason, which releases the watcher too.
    let done = shutdown.child_token();
    let _release_watcher = done.clone().drop_guard();
    close_on_shutdown(done, frames.clone(), &settings.camera);
    supervise(Feed::new(settings, frames, StatusReporter::new(status), shutdown, telemetry));
}

/// Runs pipelines until the source is finished, rebuilding live ones after failures.
fn supervise(mut feed: Feed) {
    let camera = feed.settings.camera.clone();
    tracing::info!(camera = %camera, kind = feed.settings.source.kind(), "Source starting.");
    let mut retry = Retry { backoff: Backoff::new(RECONNECT_FIRST, RECONNECT_MAX), last_failure: None };
    let (state, message) = loop {
        // Each pass tears its pipeline down at the end, after the outcome is published.
        let (outcome, pipeline) = feed.run_pipeline();
        match outcome {
            Outcome::Cancelled => break (SourceState::Stopped, None),
            Outcome::Closed if feed.shutdown.is_cancelled() => break (SourceState::Stopped, None),
            Outcome::Closed => break (SourceState::Stopped, Some("the frame consumer has gone".into())),
            // A looping file whose demuxer cannot seek starts over from a fresh pipeline.
            Outcome::Ended if feed.settings.loops() && feed.delivered > 0 => continue,
            Outcome::Ended => break (SourceState::Stopped, Some("end of stream".into())),
            Outcome::Failed(error) if feed.settings.reconnects() && error.is_transient() => {
                let delay = retry.after(&feed, &error);
                feed.status.set(SourceState::Reconnecting, Some(error.to_string()));
                drop(pipeline);
                if !sleep_unless_cancelled(&feed.shutdown, delay) {
                    break (SourceState::Stopped, None);
                }
            }
            Outcome::Failed(error) => {
                tracing::error!(camera = %camera, error = %error, detail = detail(&error), "Source failed.");
                break (SourceState::Error, Some(error.to_string()));
            }
        }
    };
    feed.frames.close();
    feed.status.set(state, message);
    tracing::info!(camera = %camera, state = ?state, "Source stopped.");
}

/// First delay after a source failure.
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// Longest delay, so a camera that comes back is picked up within half a minute.
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Reconnect bookkeeping of a live source.
struct Retry {
    backoff: Backoff,
    /// The failure logged last; the same failure again is not logged again at warn level.
    last_failure: Option<String>,
}

impl Retry {
    /// The delay before the next attempt after `error`, logging the failure if it is news.
    /// A pipeline that streamed for a while starts the backoff over.
    fn after(&mut self, feed: &Feed, error: &SourceError) -> Duration {
        if feed.delivered > 0 {
            self.last_failure = None;
        }
        if feed.streamed_for() >= HEALTHY_AFTER {
            self.backoff.reset();
        }
        let delay = self.backoff.next_delay();
        report_failure(&feed.settings.camera, error, delay, &mut self.last_failure);
        delay
    }
}

/// Logs a failure when it differs from the previous one: a camera that stays unreachable
/// produces one warning, not one per attempt; the status message carries the latest.
fn report_failure(camera: &str, error: &SourceError, delay: Duration, last: &mut Option<String>) {
    let text = error.to_string();
    if last.as_deref() == Some(text.as_str()) {
        tracing::debug!(camera, error = %text, retry_in = ?delay, "Source still failing.");
    } else {
        let detail = detail(error);
        tracing::warn!(camera, error = %text, detail, retry_in = ?delay, "Source failed; reconnecting.");
        *last = Some(text);
    }
}

/// GStreamer's debug detail, for the log only.
fn detail(error: &SourceError) -> &str {
    match error {
        SourceError::Element { debug: Some(debug), .. } => debug,
        _ => "",
    }
}

/// Sleeps for `delay` unless shutdown comes first; `false` when it did. The shutdown watcher
/// unparks this thread, so a stop during a 30 s backoff is immediate.
fn sleep_unless_cancelled(shutdown: &CancellationToken, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    while !shutdown.is_cancelled() {
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::park_timeout(deadline - now);
    }
    false
}

/// Starts the thread that, once `done` is cancelled (shutdown, or the source thread ending),
/// closes the frame edge and wakes the source thread.
fn close_on_shutdown(done: CancellationToken, frames: EdgeSender<Frame>, camera: &str) {
    let source_thread = thread::current();
    let spawned = thread::Builder::new().name(format!("source-stop:{camera}")).spawn(move || {
        block_on(done.cancelled());
        frames.close();
        source_thread.unpark();
    });
    if let Err(e) = spawned {
        // Without the watcher a shutdown is still seen, only later: between frames.
        tracing::warn!(camera, error = %e, "Could not start the shutdown watcher.");
    }
}

/// Wakes a parked thread; the smallest executor for waiting on one future from a plain thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        thread::park();
    }
}
