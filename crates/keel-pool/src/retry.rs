//! [`RetryPolicy`]: how often and how long to retry transient failures.

use std::time::Duration;

/// Exponential backoff with full jitter and an overall deadline, used for transactions.
///
/// Attempt *n* (1-based) that failed transiently waits a random time in
/// `[0, min(max_backoff, base_backoff · 2^(n-1))]` before the next one ("full jitter", which
/// spreads out clients that failed together, e.g. after a deadlock or a server restart). No
/// further attempt starts when `max_attempts` is reached or when the wait would end past the
/// deadline, measured from the first attempt.
///
/// ```
/// use std::time::Duration;
/// let policy = keel_pool::RetryPolicy::default()
///     .max_attempts(8)
///     .deadline(Duration::from_secs(3));
/// assert!(policy.backoff(1, Duration::ZERO).unwrap() <= Duration::from_millis(10));
/// assert!(policy.backoff(8, Duration::ZERO).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    deadline: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts, 10 ms base, 1 s cap, 10 s deadline: enough to ride out a deadlock storm or a
    /// server restart of a few seconds; env `KEEL_RETRY_MAX_ATTEMPTS`, `KEEL_RETRY_BASE_MS`,
    /// `KEEL_RETRY_MAX_BACKOFF_MS`, `KEEL_RETRY_DEADLINE_MS`.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Never retry: one attempt.
    pub fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..RetryPolicy::default() }
    }

    /// Most attempts in all, the first included (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The backoff ceiling after the first failure.
    pub fn base_backoff(mut self, d: Duration) -> Self {
        self.base_backoff = d;
        self
    }

    /// The largest backoff ceiling.
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.max_backoff = d;
        self
    }

    /// Time budget for all attempts and waits together.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }

    /// The configured deadline.
    pub fn deadline_duration(&self) -> Duration {
        self.deadline
    }

    /// The configured attempt limit.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long to wait after failed attempt `attempt` (1-based), `elapsed` after the first
    /// began; `None` when no further attempt may start.
    pub fn backoff(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let exp = attempt.saturating_sub(1).min(30);
        let ceiling = self.base_backoff.saturating_mul(1 << exp).min(self.max_backoff);
        let wait = ceiling.mul_f64(rand::random::<f64>());
        (elapsed + wait < self.deadline).then_some(wait)
    }

    pub(crate) fn with_env_overrides(mut self) -> Result<Self, crate::Error> {
        if let Some(v) = crate::config::env_parse::<u32>("KEEL_RETRY_MAX_ATTEMPTS")? {
            self = self.max_attempts(v);
        }
        if let Some(v) = crate::config::env_parse::<u64>("KEEL_RETRY_BASE_MS")? {
            self = self.base_backoff(Duration::from_millis(v));
        }
        if let Some(v) = crate::config::env_parse::<u64>("KEEL_RETRY_MAX_BACKOFF_MS")? {
            self = self.max_backoff(Duration::from_millis(v));
        }
        if let Some(v) = crate::config::env_parse::<u64>("KEEL_RETRY_DEADLINE_MS")? {
            self = self.deadline(Duration::from_millis(v));
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_respects_attempts_and_deadline() {
        let p = RetryPolicy::default()
            .max_attempts(20)
            .base_backoff(Duration::from_millis(10))
            .max_backoff(Duration::from_millis(200))
            .deadline(Duration::from_secs(1));
        for _ in 0..200 {
            assert!(p.backoff(1, Duration::ZERO).unwrap() <= Duration::from_millis(10));
            assert!(p.backoff(3, Duration::ZERO).unwrap() <= Duration::from_millis(40));
            assert!(p.backoff(15, Duration::ZERO).unwrap() <= Duration::from_millis(200));
            // A wait that would cross the deadline is refused.
            if let Some(w) = p.backoff(15, Duration::from_millis(900)) {
                assert!(Duration::from_millis(900) + w < Duration::from_secs(1));
            }
        }
        assert!(p.backoff(20, Duration::ZERO).is_none());
        assert!(p.backoff(1, Duration::from_secs(1)).is_none());
        assert!(RetryPolicy::none().backoff(1, Duration::ZERO).is_none());
        // Full jitter: waits are spread out, not all at the ceiling.
        let waits: std::collections::BTreeSet<_> = (0..50).map(|_| p.backoff(5, Duration::ZERO)).collect();
        assert!(waits.len() > 10);
    }
}
