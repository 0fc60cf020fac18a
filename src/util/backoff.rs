//! Reconnect delays: exponential, capped, with jitter ("equal jitter"), for everything that
//! reconnects: the MQTT client, so a fleet of stations does not hammer a broker that just came
//! back all at the same instant (thin-edge.io does the same after every poll error), and live
//! camera sources, so a line of cameras on one switch that rebooted together does not
//! reconnect in lockstep.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::rng::SplitMix64;

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Upper bound of the next delay; doubles per failure up to `max`.
    ceiling: Duration,
    rng: SplitMix64,
}

impl Backoff {
    /// Seeded from the clock and the process id, so stations started together still spread out.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        Backoff::with_seed(initial, max, nanos ^ u64::from(std::process::id()).rotate_left(32))
    }

    pub fn with_seed(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff { initial, max, ceiling: initial, rng: SplitMix64::new(seed) }
    }

    /// The delay before the next attempt: uniform in `[ceiling/2, ceiling]` ("equal jitter"),
    /// which keeps a floor under the wait while still spreading clients apart.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(self.max);
        ceiling / 2 + ceiling.mul_f32(self.rng.unit() / 2.0)
    }

    /// After a connection that held, the next outage starts again with short delays.
    pub fn reset(&mut self) {
        self.ceiling = self.initial;
    }

    /// How long a connection must hold before [`Backoff::reset`]: a broker that accepts and
    /// then drops us at once (a duplicate client id, an ACL kick) must not cause a tight loop.
    pub fn stable_after(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let mut b = Backoff::with_seed(initial, max, 7);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let ceilings = [100u64, 200, 400, 800, 1000, 1000, 1000, 1000];
        for (d, c) in delays.iter().zip(ceilings) {
            let c = Duration::from_millis(c);
            assert!(*d >= c / 2 && *d <= c, "{d:?} not in [{:?}, {c:?}]", c / 2);
        }
        assert!(delays[4..].windows(2).any(|w| w[0] != w[1]), "jitter varies the capped delays");
        b.reset();
        assert!(b.next_delay() <= initial);
    }

    #[test]
    fn different_seeds_spread_clients_apart() {
        let d =
            |seed| Backoff::with_seed(Duration::from_millis(250), Duration::from_secs(15), seed).next_delay();
        assert_ne!(d(1), d(2));
    }
}
