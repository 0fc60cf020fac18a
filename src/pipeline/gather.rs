//! How a model's scoring stage groups the frames of the cameras that share it into batches.
//!
//! Cameras are visited round-robin from a rotating start, so a fast camera cannot starve a
//! slow one. A batch is done when it is full, `max_wait` after its first frame, or as soon as
//! every open camera has a frame in it and none has another queued: cameras that deliver in
//! step are scored together, and nobody waits out `max_wait` for a frame that is a camera's
//! period away.

use std::time::Instant;

use super::scoring::Batching;
use crate::flow::edge::{EdgeReceiver, Signal};

/// Longest the loop sleeps without frames before reporting an idle heartbeat.
const IDLE_BEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// The next batch from `inputs` (woken through `signal`). Returns an empty batch after a
/// second without frames (so the heartbeat shows an idle, healthy loop) and `None` once every
/// input is closed and drained. `start` is the rotating first input, kept by the caller.
pub fn gather<T>(
    inputs: &[EdgeReceiver<T>],
    signal: &Signal,
    batching: Batching,
    start: &mut usize,
) -> Option<Vec<T>> {
    let mut batch = Vec::with_capacity(batching.max_batch);
    let mut delivered = vec![false; inputs.len()];
    let began = Instant::now();
    let mut deadline: Option<Instant> = None;
    loop {
        let before = batch.len();
        let (open, waiting) = take_round(inputs, batching.max_batch, &mut batch, &mut delivered, start);
        if open == 0 && batch.is_empty() {
            return None;
        }
        if open == 0 || batch.len() >= batching.max_batch {
            return Some(batch);
        }
        if batch.len() > before {
            // Frames may still be queued: take another round before waiting for a push.
            deadline.get_or_insert(Instant::now() + batching.max_wait);
            continue;
        }
        if !batch.is_empty() && waiting == 0 {
            return Some(batch);
        }
        let now = Instant::now();
        let until = match deadline {
            Some(d) => d,
            None if batch.is_empty() => began + IDLE_BEAT,
            None => *deadline.insert(now + batching.max_wait),
        };
        if now >= until {
            return Some(batch);
        }
        signal.wait(until - now);
    }
}

/// One pass over the inputs, taking at most one item from each and marking those that gave
/// one in `delivered`; returns how many inputs are still open, and how many of those have not
/// yet given an item to this batch.
fn take_round<T>(
    inputs: &[EdgeReceiver<T>],
    max_batch: usize,
    batch: &mut Vec<T>,
    delivered: &mut [bool],
    start: &mut usize,
) -> (usize, usize) {
    let n = inputs.len();
    let (mut open, mut waiting) = (0, 0);
    for i in 0..n {
        let at = (*start + i) % n;
        match inputs[at].try_recv() {
            Ok(Some(item)) => {
                batch.push(item);
                delivered[at] = true;
                open += 1;
            }
            Ok(None) => {
                open += 1;
                waiting += usize::from(!delivered[at]);
            }
            Err(()) => {}
        }
        if batch.len() >= max_batch {
            open += 1;
            break;
        }
    }
    *start = (*start + 1) % n.max(1);
    (open, waiting)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::gather;
    use crate::flow::edge::{edge_with_signal, EdgeSender, Overflow, Signal};
    use crate::pipeline::scoring::Batching;

    fn cameras(n: usize) -> (Arc<Signal>, Vec<EdgeSender<u32>>, Vec<crate::flow::edge::EdgeReceiver<u32>>) {
        let signal = Arc::new(Signal::default());
        let (tx, rx) = (0..n).map(|_| edge_with_signal(4, Overflow::Block, Some(signal.clone()))).unzip();
        (signal, tx, rx)
    }

    const LONG: Batching = Batching { max_batch: 4, max_wait: Duration::from_secs(5) };

    #[test]
    fn cameras_in_step_are_scored_together_without_waiting_for_more() {
        let (signal, tx, rx) = cameras(2);
        tx[0].push(1);
        tx[1].push(2);
        let began = Instant::now();
        let mut batch = gather(&rx, &signal, LONG, &mut 0).expect("open");
        batch.sort();
        assert_eq!(batch, [1, 2]);
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "waited {:?} for frames no camera had",
            began.elapsed()
        );
    }

    #[test]
    fn a_camera_whose_frame_is_due_is_waited_for_up_to_max_wait() {
        let (signal, tx, rx) = cameras(2);
        tx[0].push(1);
        let late = tx[1].clone();
        let pusher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            late.push(2);
        });
        let mut batch = gather(&rx, &signal, LONG, &mut 0).expect("open");
        batch.sort();
        assert_eq!(batch, [1, 2], "the second camera's frame joins the batch");
        pusher.join().unwrap();

        // A camera that sends nothing holds the batch for max_wait, no longer.
        tx[0].push(3);
        let short = Batching { max_batch: 4, max_wait: Duration::from_millis(150) };
        let began = Instant::now();
        assert_eq!(gather(&rx, &signal, short, &mut 0).expect("open"), [3]);
        let waited = began.elapsed();
        assert!(waited >= Duration::from_millis(140) && waited < Duration::from_secs(2), "waited {waited:?}");
    }

    #[test]
    fn queued_frames_fill_the_batch_and_closed_cameras_end_it() {
        let (signal, tx, rx) = cameras(1);
        for i in 0..4 {
            tx[0].push(i);
        }
        let batch = Batching { max_batch: 3, ..LONG };
        assert_eq!(gather(&rx, &signal, batch, &mut 0).expect("open"), [0, 1, 2]);
        drop(tx);
        assert_eq!(gather(&rx, &signal, batch, &mut 0).expect("drained last"), [3]);
        assert_eq!(gather(&rx, &signal, batch, &mut 0), None);
    }
}
