//! The circuit breaker in front of Redis: closed, open for a short interval after
//! consecutive failures, then half-open with one probe.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BreakerState {
    /// Calls go to Redis.
    Closed,
    /// Calls are skipped (the cache is bypassed) until the open interval ends.
    Open,
    /// One probe call is in flight; the others are skipped until it answers.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { since: Instant },
}

pub(crate) struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
    pub(crate) opens: AtomicU64,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
            opens: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a call go to Redis now? Moves an expired open breaker to half-open and lets this
    /// caller be the probe; a probe that never answered is replaced after the open interval.
    pub(crate) fn allow(&self) -> bool {
        let now = Instant::now();
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => true,
            State::Open { until } if now < until => false,
            State::HalfOpen { since } if now < since + self.open_for => false,
            State::Open { .. } | State::HalfOpen { .. } => {
                *s = State::HalfOpen { since: now };
                true
            }
        }
    }

    pub(crate) fn success(&self) {
        *self.lock() = State::Closed { failures: 0 };
    }

    pub(crate) fn failure(&self) {
        let mut s = self.lock();
        let open = match *s {
            State::Closed { failures } if failures + 1 < self.threshold => {
                *s = State::Closed { failures: failures + 1 };
                false
            }
            State::Closed { .. } | State::HalfOpen { .. } => true,
            State::Open { .. } => false,
        };
        if open {
            *s = State::Open { until: Instant::now() + self.open_for };
            self.opens.fetch_add(1, Relaxed);
        }
    }

    /// Opens the breaker now (the first connection failed).
    pub(crate) fn trip(&self) {
        *self.lock() = State::Open { until: Instant::now() + self.open_for };
        self.opens.fetch_add(1, Relaxed);
    }

    pub(crate) fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < until => BreakerState::Open,
            // Expired: the next call probes.
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once_and_closes() {
        let b = Breaker::new(3, Duration::from_millis(20));
        b.failure();
        b.failure();
        assert!(b.allow());
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow(), "the first call after the interval is the probe");
        assert!(!b.allow(), "only one probe at a time");
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(25));
        assert!(b.allow());
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.opens.load(Relaxed), 2);
    }
}
