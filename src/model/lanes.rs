//! Images side by side on the CPU: several images of one batch through the backbone and the
//! descriptor at once, each on its own thread with its own one-thread sessions.
//!
//! ONNX Runtime's shared pool splits every operator of one image across the cores. For a
//! 256 px EfficientNet-Lite0 that scales poorly: on a 2-core machine the backbone took 5.4 ms
//! on 2 threads against 8.0 ms on 1, and when frames arrive at a camera's rate, not back to
//! back, waking the pool's sleeping thread for each operator made 2 threads slower than 1
//! (8.9 ms against 8.2). Two images on two one-thread lanes finish both in about the time
//! one takes on one thread, with no hand-over between threads inside an image. The kNN that
//! follows still runs over all the batch's images with every thread: it scales with threads.
//!
//! A batch of one image keeps the shared pool, which is faster for a lone image back to back.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ort::session::Session;
use ort::value::TensorRef;

use super::runtime::{Runtime, RuntimeError};

/// At most this many lanes: each holds its own copy of both sessions.
pub const MAX_LANES: usize = 4;

/// One-thread sessions of the backbone and the descriptor-only graph, one pair per lane.
pub struct Lanes {
    lanes: Vec<Lane>,
}

struct Lane {
    backbone: Session,
    descriptor: Session,
}

/// Time the lanes spent in each model, summed over lanes (so about `lanes ×` the wall time
/// when all were busy).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LaneTimes {
    pub backbone: Duration,
    pub descriptor: Duration,
}

impl LaneTimes {
    /// `wall`, the lanes' elapsed time, split into backbone and descriptor in the proportion of
    /// the lanes' summed times (they overlap, so only the wall time adds up per batch).
    pub fn split(&self, wall: Duration) -> (Duration, Duration) {
        let busy = (self.backbone + self.descriptor).as_secs_f64();
        let share = if busy > 0.0 { self.backbone.as_secs_f64() / busy } else { 0.5 };
        let backbone = wall.mul_f64(share);
        (backbone, wall.saturating_sub(backbone))
    }
}

/// What failed in a lane: the stage and ONNX Runtime's reason.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneError {
    pub stage: &'static str,
    pub reason: String,
}

fn lane_error(stage: &'static str) -> impl Fn(ort::Error) -> LaneError {
    move |e| LaneError { stage, reason: e.to_string() }
}

impl Lanes {
    /// `count` lanes of `(name, ONNX bytes)` for the backbone and the descriptor-only graph.
    pub fn new(
        runtime: &Runtime,
        count: usize,
        backbone: (&str, &[u8]),
        descriptor: (&str, &[u8]),
    ) -> Result<Lanes, RuntimeError> {
        let lanes = (0..count)
            .map(|_| {
                Ok(Lane {
                    backbone: runtime.single_thread_session(backbone.0, backbone.1)?,
                    descriptor: runtime.single_thread_session(descriptor.0, descriptor.1)?,
                })
            })
            .collect::<Result<_, RuntimeError>>()?;
        Ok(Lanes { lanes })
    }

    /// How many images can run at once.
    pub fn len(&self) -> usize {
        self.lanes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    /// The descriptors of `count` normalised images (`data` is `[count, 3, height, width]`) into
    /// `phi` (`[count, channels, patches]`, the descriptor graph's output per image). Each lane
    /// takes the next image not yet taken until none are left, so a slow image does not hold
    /// up the ones behind it.
    ///
    /// # Panics
    /// If `data` or `phi` is not `count` images long, or a lane panicked.
    pub fn descriptors(
        &mut self,
        data: &[f32],
        count: usize,
        size: (usize, usize),
        phi: &mut [f32],
    ) -> Result<LaneTimes, LaneError> {
        let image_len = 3 * size.0 * size.1;
        assert_eq!(data.len(), count * image_len, "image data");
        assert_eq!(phi.len() % count.max(1), 0, "descriptor buffer");
        if count == 0 {
            return Ok(LaneTimes::default());
        }
        let phi_len = phi.len() / count;
        let work = Mutex::new(data.chunks_exact(image_len).zip(phi.chunks_exact_mut(phi_len)));
        let busy = self.lanes.len().min(count);
        // Each thread (`util::workers`: the caller and helpers) takes a lane of its own.
        let lanes = Mutex::new(self.lanes[..busy].iter_mut());
        let results = Mutex::new(Vec::with_capacity(busy));
        crate::util::workers::run(busy, &|| {
            let lane = lanes.lock().unwrap_or_else(PoisonError::into_inner).next();
            if let Some(lane) = lane {
                let r = lane.drain(&work, size);
                results.lock().unwrap_or_else(PoisonError::into_inner).push(r);
            }
        });
        let results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
        let mut times = LaneTimes::default();
        for r in results {
            let t = r?;
            times.backbone += t.backbone;
            times.descriptor += t.descriptor;
        }
        Ok(times)
    }
}

impl Lane {
    /// Takes images until none are left.
    fn drain<'a, W>(&mut self, work: &Mutex<W>, size: (usize, usize)) -> Result<LaneTimes, LaneError>
    where
        W: Iterator<Item = (&'a [f32], &'a mut [f32])>,
    {
        let mut times = LaneTimes::default();
        loop {
            // The lock is held only to take the next image; a lane that panicked elsewhere
            // leaves the iterator intact.
            let next = work.lock().unwrap_or_else(PoisonError::into_inner).next();
            let Some((image, phi)) = next else { return Ok(times) };
            self.one(image, phi, size, &mut times)?;
        }
    }

    fn one(
        &mut self,
        image: &[f32],
        phi: &mut [f32],
        (height, width): (usize, usize),
        times: &mut LaneTimes,
    ) -> Result<(), LaneError> {
        let started = Instant::now();
        let input = TensorRef::from_array_view(([1, 3, height, width], image))
            .map_err(lane_error("backbone input"))?;
        let features = self.backbone.run(ort::inputs!["image" => input]).map_err(lane_error("backbone"))?;
        times.backbone += started.elapsed();
        let started = Instant::now();
        let inputs = ort::inputs!["f1" => &features["f1"], "f2" => &features["f2"], "f3" => &features["f3"]];
        let out = self.descriptor.run(inputs).map_err(lane_error("descriptor"))?;
        let (_, values) = out["phi"].try_extract_tensor::<f32>().map_err(lane_error("descriptor output"))?;
        if values.len() != phi.len() {
            return Err(LaneError {
                stage: "descriptor output",
                reason: format!("{} values per image, expected {}", values.len(), phi.len()),
            });
        }
        phi.copy_from_slice(values);
        times.descriptor += started.elapsed();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::LaneTimes;

    #[test]
    fn the_wall_time_is_split_as_the_lanes_spent_it() {
        let ms = Duration::from_millis;
        let t = LaneTimes { backbone: ms(6), descriptor: ms(2) };
        let (backbone, descriptor) = t.split(ms(10));
        assert_eq!((backbone.as_micros(), descriptor.as_micros()), (7500, 2500));
        assert_eq!(LaneTimes::default().split(ms(4)), (ms(2), ms(2)), "no work timed: halves");
    }
}
