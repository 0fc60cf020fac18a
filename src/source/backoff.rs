//! Exponential backoff with jitter between reconnect attempts of a live source.
//!
//! Doubling keeps a camera that is down for an hour from being hammered; the jitter keeps a
//! line of cameras on one switch that rebooted together from reconnecting in lockstep.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// First delay after a failure.
const INITIAL: Duration = Duration::from_millis(500);
/// Longest delay, so a camera that comes back is picked up within half a minute.
const MAX: Duration = Duration::from_secs(30);

/// Delays for successive reconnect attempts: `INITIAL`, doubling up to `MAX`, each drawn from
/// the upper half of its step ("equal jitter").
#[derive(Debug)]
pub(crate) struct Backoff {
    step: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { step: INITIAL }
    }

    /// The delay before the next attempt; each call doubles the step.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = jittered(self.step, random_unit());
        self.step = (self.step * 2).min(MAX);
        delay
    }

    /// Back to the first step, after the source has streamed for a while.
    pub(crate) fn reset(&mut self) {
        self.step = INITIAL;
    }
}

/// `step · (0.5 + 0.5·unit)` for `unit` in `[0, 1)`.
fn jittered(step: Duration, unit: f64) -> Duration {
    step.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

/// A number in `[0, 1)` from the standard library's randomly keyed hasher; good enough to spread
/// reconnects, and no extra dependency.
fn random_unit() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_the_jitter_band() {
        let mut backoff = Backoff::new();
        let mut step = INITIAL;
        for _ in 0..12 {
            let delay = backoff.next_delay();
            assert!(delay >= step / 2 && delay <= step, "{delay:?} outside [{:?}, {step:?}]", step / 2);
            step = (step * 2).min(MAX);
        }
        assert_eq!(backoff.step, MAX);
        backoff.reset();
        assert!(backoff.next_delay() <= INITIAL);
    }

    #[test]
    fn jitter_spans_the_upper_half() {
        assert_eq!(jittered(Duration::from_secs(4), 0.0), Duration::from_secs(2));
        assert_eq!(jittered(Duration::from_secs(4), 0.5), Duration::from_secs(3));
        let draws: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|u| *u != draws[0]), "the draws vary");
    }
}
