//! Supervision of the daemon's threads and tasks: every one is started through a
//! [`Supervisor`] under a name, and its end is reported, with the panic message or error if it
//! failed. A stage that must run until shutdown and ends early counts as failed too, so a dead
//! decision thread cannot leave scoring and the watchdog running as if nothing happened.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::mpsc;

/// How a supervised thread or task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub stage: String,
    /// `None`: it finished normally. Otherwise why it failed.
    pub failure: Option<String>,
}

/// Whether a normal end before shutdown is fine (a file source at its end) or a failure (the
/// decision thread, whose channel cannot close while the daemon holds a sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    MayEnd,
    UntilShutdown,
}

/// Registers threads and tasks and reports their ends; cloneable, one per daemon.
#[derive(Clone)]
pub struct Supervisor {
    exits: mpsc::UnboundedSender<Exit>,
    running: Arc<Mutex<BTreeMap<String, usize>>>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Supervisor {
    /// A supervisor and the stream of exits it reports.
    pub fn new() -> (Supervisor, mpsc::UnboundedReceiver<Exit>) {
        let (exits, rx) = mpsc::unbounded_channel();
        let supervisor = Supervisor { exits, running: Arc::default(), stopping: Arc::default() };
        (supervisor, rx)
    }

    /// Shutdown has begun: from now on a stage ending is expected.
    pub fn set_stopping(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Names of the threads and tasks still running, sorted.
    pub fn running(&self) -> Vec<String> {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.iter().filter(|(_, n)| **n > 0).map(|(name, _)| name.clone()).collect()
    }

    /// Starts `body` on a named OS thread. An `Err` or a panic is a failure.
    pub fn thread<F>(&self, name: &str, lifetime: Lifetime, body: F) -> std::io::Result<JoinHandle<()>>
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        let guard = self.enter(name, lifetime);
        std::thread::Builder::new().name(name.to_string()).spawn(move || {
            let outcome = catch_unwind(AssertUnwindSafe(body));
            guard.exit(match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(panic) => Some(format!("panicked: {}", panic_message(&*panic))),
            });
        })
    }

    /// Spawns `body` on the Tokio runtime. A panic is a failure; an abort is a normal end.
    pub fn task<F>(&self, name: &str, lifetime: Lifetime, body: F) -> TaskHandle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let guard = self.enter(name, lifetime);
        let inner = tokio::spawn(body);
        let abort = inner.abort_handle();
        let watcher = tokio::spawn(async move {
            let failure = match inner.await {
                Err(e) if e.is_panic() => Some(format!("panicked: {}", panic_message(&*e.into_panic()))),
                _ => None,
            };
            guard.exit(failure);
        });
        TaskHandle { abort, watcher: tokio::sync::Mutex::new(Some(watcher)) }
    }

    /// Registers a task someone else spawns and joins (the MQTT publisher's loops): move the
    /// returned [`Watch`] into its future. Its end is reported when the watch is dropped, as a
    /// failure if that happens while panicking; an aborted task ends normally.
    pub fn watch(&self, name: &str, lifetime: Lifetime) -> Watch {
        Watch(Some(self.enter(name, lifetime)))
    }

    fn enter(&self, name: &str, lifetime: Lifetime) -> ExitGuard {
        *self.running.lock().unwrap_or_else(PoisonError::into_inner).entry(name.to_string()).or_default() +=
            1;
        ExitGuard { supervisor: self.clone(), name: name.to_string(), lifetime }
    }
}

/// A supervised task: abort it, or wait until it has ended and its end is reported.
pub struct TaskHandle {
    abort: tokio::task::AbortHandle,
    watcher: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TaskHandle {
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// Waits until the task has ended (and its end is reported).
    pub async fn finished(self) {
        self.finished_ref().await;
    }

    /// [`TaskHandle::finished`] without giving the handle up (so it can still be aborted).
    pub async fn finished_ref(&self) {
        if let Some(watcher) = self.watcher.lock().await.take() {
            let _ = watcher.await;
        }
    }
}

/// See [`Supervisor::watch`].
pub struct Watch(Option<ExitGuard>);

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(guard) = self.0.take() {
            guard.exit(std::thread::panicking().then(|| "panicked".to_string()));
        }
    }
}

/// Reports one thread's or task's end exactly once.
struct ExitGuard {
    supervisor: Supervisor,
    name: String,
    lifetime: Lifetime,
}

impl ExitGuard {
    fn exit(self, failure: Option<String>) {
        let s = &self.supervisor;
        if let Some(n) = s.running.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&self.name) {
            *n = n.saturating_sub(1);
        }
        let stopping = s.stopping.load(std::sync::atomic::Ordering::Relaxed);
        let failure = failure.or_else(|| {
            (self.lifetime == Lifetime::UntilShutdown && !stopping)
                .then(|| "ended before shutdown".to_string())
        });
        // Nobody listening means the daemon is gone already; nothing to tell.
        let _ = s.exits.send(Exit { stage: self.name.clone(), failure });
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

/// Test hook: `INSPECTD_FAILPOINT=NAME` makes the stage that calls `failpoint("NAME")` panic
/// there, so tests can kill one stage of the real binary. Read once; free when unset.
pub fn failpoint(name: &str) {
    static ARMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("INSPECTD_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        panic!("failpoint '{name}' (INSPECTD_FAILPOINT)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_panics_errors_and_early_ends_with_the_stage_name() {
        let (s, mut exits) = Supervisor::new();
        s.thread("ok", Lifetime::MayEnd, || Ok(())).unwrap().join().unwrap();
        s.thread("err", Lifetime::MayEnd, || Err("disk gone".into())).unwrap().join().unwrap();
        s.thread("boom", Lifetime::MayEnd, || panic!("bad frame")).unwrap().join().unwrap();
        s.thread("decide", Lifetime::UntilShutdown, || Ok(())).unwrap().join().unwrap();
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(exits.recv().await.unwrap());
        }
        assert_eq!(got[0], Exit { stage: "ok".into(), failure: None });
        assert_eq!(got[1].failure.as_deref(), Some("disk gone"));
        assert_eq!(got[2].failure.as_deref(), Some("panicked: bad frame"));
        assert_eq!(got[3].failure.as_deref(), Some("ended before shutdown"));
        assert!(s.running().is_empty());
    }

    #[tokio::test]
    async fn tasks_are_tracked_until_they_end_and_a_stop_is_not_a_failure() {
        let (s, mut exits) = Supervisor::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        s.task("acks", Lifetime::UntilShutdown, async move {
            let _ = rx.await;
        });
        assert_eq!(s.running(), vec!["acks".to_string()]);
        s.set_stopping();
        tx.send(()).unwrap();
        assert_eq!(exits.recv().await.unwrap(), Exit { stage: "acks".into(), failure: None });
        assert!(s.running().is_empty());
        s.task("status", Lifetime::MayEnd, async { panic!("oops") });
        assert_eq!(exits.recv().await.unwrap().failure.as_deref(), Some("panicked: oops"));
        let watch = s.watch("mqtt-poll", Lifetime::MayEnd);
        let task = tokio::spawn(async move {
            let _watch = watch;
            panic!("lost");
        });
        assert!(task.await.unwrap_err().is_panic());
        assert_eq!(
            exits.recv().await.unwrap(),
            Exit { stage: "mqtt-poll".into(), failure: Some("panicked".into()) }
        );
    }
}
