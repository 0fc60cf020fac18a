//! Rate limit for "every NG" evidence (`evidence.every_ng`).
//!
//! A camera looking at a defective batch can be NG on every frame; saving each one would
//! cost an encode per frame and flush the alarm evidence out of the retention caps within
//! minutes. At most one frame per `min_interval` per camera is saved instead. Alarm
//! evidence (`on_alarm`) does not go through the limiter: every alarm gets its evidence.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Allows at most one save per camera per `min_interval`.
#[derive(Debug, Clone)]
pub struct EvidenceLimiter {
    min_interval: Duration,
    /// When each camera last got a save allowed. Monotonic time, so a wall-clock step
    /// (NTP, a manual change) neither blocks evidence for hours nor lets a burst through.
    last: HashMap<String, Instant>,
}

impl EvidenceLimiter {
    pub fn new(min_interval: Duration) -> Self {
        EvidenceLimiter { min_interval, last: HashMap::new() }
    }

    /// Whether `camera` may save evidence at `now`; when it may, the interval restarts.
    /// Refused calls do not restart it, so a steady stream of NG frames still saves one
    /// frame every `min_interval`.
    pub fn allow(&mut self, camera: &str, now: Instant) -> bool {
        match self.last.get_mut(camera) {
            Some(last) if now.saturating_duration_since(*last) < self.min_interval => false,
            Some(last) => {
                *last = now;
                true
            }
            None => {
                self.last.insert(camera.to_string(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn one_save_per_interval_while_ng_frames_keep_coming() {
        let t0 = Instant::now();
        let mut limiter = EvidenceLimiter::new(secs(5.0));
        // An NG frame every second for 12 s: saves at 0, 5 and 10.
        let allowed: Vec<u64> = (0..12).filter(|&s| limiter.allow("cam", t0 + secs(s as f64))).collect();
        assert_eq!(allowed, vec![0, 5, 10]);
    }

    #[test]
    fn refused_attempts_do_not_push_the_next_save_back() {
        let t0 = Instant::now();
        let mut limiter = EvidenceLimiter::new(secs(5.0));
        assert!(limiter.allow("cam", t0));
        assert!(!limiter.allow("cam", t0 + secs(4.9)));
        assert!(limiter.allow("cam", t0 + secs(5.0)));
    }

    #[test]
    fn cameras_are_limited_independently() {
        let t0 = Instant::now();
        let mut limiter = EvidenceLimiter::new(secs(5.0));
        assert!(limiter.allow("a", t0));
        assert!(limiter.allow("b", t0 + secs(1.0)), "a's save does not use up b's");
        assert!(!limiter.allow("a", t0 + secs(1.0)));
    }

    #[test]
    fn zero_interval_allows_every_frame() {
        let t0 = Instant::now();
        let mut limiter = EvidenceLimiter::new(Duration::ZERO);
        assert!((0..3).all(|_| limiter.allow("cam", t0)));
    }
}
