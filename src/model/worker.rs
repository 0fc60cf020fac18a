//! A dedicated OS thread that owns a [`Scorer`] (style.md rule 4: ONNX Runtime sessions never
//! run on the async runtime's threads).
//!
//! Jobs arrive through a bounded queue: a caller that outruns the scorer blocks (or, for the
//! async `submit`, waits) instead of queueing without limit. Replies travel on a oneshot channel,
//! which works from both blocking and async callers.

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::bundle::Bundle;
use super::runtime::{Provider, Runtime};
use super::scorer::{ImageBatch, ScoreError, Scored, Scorer, StageTimes};

/// What a job returns.
pub type ScoreResult = Result<(Vec<Scored>, StageTimes), ScoreError>;

struct Job {
    batch: ImageBatch,
    reply: oneshot::Sender<ScoreResult>,
}

/// Handle to the scorer thread. Dropping it closes the queue; the thread finishes queued jobs
/// and exits.
pub struct ScorerWorker {
    jobs: Option<mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    provider: Provider,
    input_size: (usize, usize),
}

/// The scorer thread has exited (it panicked or failed to start).
#[derive(Debug, thiserror::Error)]
#[error("the scorer thread for model {model} has stopped")]
pub struct WorkerGone {
    pub model: String,
}

impl ScorerWorker {
    /// Starts the thread, creates the sessions there and waits for their warm-up run.
    pub fn spawn(runtime: Runtime, bundle: &Bundle, queue: usize) -> Result<ScorerWorker, ScoreError> {
        let (jobs, queued) = mpsc::sync_channel::<Job>(queue.max(1));
        let (ready_tx, ready_rx) = mpsc::channel();
        let bundle = bundle.clone();
        let name = format!("scorer:{}", bundle.manifest.model.id);
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let scorer = Scorer::new(&runtime, &bundle);
                let mut scorer = match scorer {
                    Ok(s) => {
                        let _ = ready_tx.send(Ok((s.provider(), s.input_size())));
                        s
                    }
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                for job in queued {
                    // A caller that gave up on its reply is not an error for the scorer.
                    let _ = job.reply.send(scorer.score(&job.batch));
                }
            })
            .map_err(|e| ScoreError::Inference { stage: "scorer thread", reason: e.to_string() })?;
        let (provider, input_size) = ready_rx.recv().map_err(|_| ScoreError::Inference {
            stage: "scorer start",
            reason: format!("{name} exited"),
        })??;
        Ok(ScorerWorker { jobs: Some(jobs), thread: Some(thread), provider, input_size })
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Model input size `(height, width)`.
    pub fn input_size(&self) -> (usize, usize) {
        self.input_size
    }

    /// Queues a batch, blocking while the queue is full; the reply arrives on the receiver.
    pub fn submit(&self, batch: ImageBatch) -> Result<oneshot::Receiver<ScoreResult>, WorkerGone> {
        let (reply, rx) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or_else(|| self.gone())?;
        jobs.send(Job { batch, reply }).map_err(|_| self.gone())?;
        Ok(rx)
    }

    /// Scores a batch and waits for the result (for blocking callers such as the CLI).
    pub fn score_blocking(&self, batch: ImageBatch) -> Result<ScoreResult, WorkerGone> {
        self.submit(batch)?.blocking_recv().map_err(|_| self.gone())
    }

    fn gone(&self) -> WorkerGone {
        let model =
            self.thread.as_ref().and_then(|t| t.thread().name().map(str::to_string)).unwrap_or_default();
        WorkerGone { model }
    }
}

impl Drop for ScorerWorker {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
