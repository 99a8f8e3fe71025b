//! A circuit breaker: after `threshold` consecutive failures it opens and
//! refuses calls (none reach the service) for `open_for`; then it lets up to
//! `probes` calls through half-open. A success closes it, a failure opens it
//! again. Times come from `tokio::time`, so tests can pause the clock.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    probes_in_flight: u32,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    open_for: Duration,
    probes: u32,
    inner: Mutex<Inner>,
}

/// Permission to make one call; report how it went. A permit dropped
/// unreported (the caller gave up waiting, the task was cancelled) counts as
/// a failure: a service too slow to answer is not healthy, and a half-open
/// probe slot must never stay taken.
#[derive(Debug)]
#[must_use]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.record_failure(self.probe);
        }
    }
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration, probes: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            open_for,
            probes: probes.max(1),
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                failures: 0,
                opened_at: None,
                probes_in_flight: 0,
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        let mut inner = self.inner();
        self.refresh(&mut inner);
        inner.state
    }

    fn refresh(&self, inner: &mut Inner) {
        if inner.state == BreakerState::Open
            && inner
                .opened_at
                .is_some_and(|t| t.elapsed() >= self.open_for)
        {
            inner.state = BreakerState::HalfOpen;
            inner.probes_in_flight = 0;
        }
    }

    /// `None` while open (or while half-open with all probes out).
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let mut inner = self.inner();
        self.refresh(&mut inner);
        let probe = match inner.state {
            BreakerState::Closed => false,
            BreakerState::Open => return None,
            BreakerState::HalfOpen if inner.probes_in_flight < self.probes => {
                inner.probes_in_flight += 1;
                true
            }
            BreakerState::HalfOpen => return None,
        };
        Some(Permit {
            breaker: self,
            probe,
            reported: false,
        })
    }

    /// The service answered properly.
    pub fn success(&self, mut permit: Permit<'_>) {
        permit.reported = true;
        let mut inner = self.inner();
        if permit.probe || inner.state == BreakerState::Closed {
            inner.state = BreakerState::Closed;
            inner.failures = 0;
            inner.opened_at = None;
            inner.probes_in_flight = 0;
        }
    }

    /// The service failed (timeout, connection error, 5xx).
    pub fn failure(&self, mut permit: Permit<'_>) {
        permit.reported = true;
        self.record_failure(permit.probe);
    }

    /// The service answered, but about the request rather than its health
    /// (a 4xx, a 429): it is up, so a probe counts as a success.
    pub fn neutral(&self, permit: Permit<'_>) {
        if permit.probe {
            self.success(permit);
        } else {
            let mut permit = permit;
            permit.reported = true;
        }
    }

    fn record_failure(&self, probe: bool) {
        let mut inner = self.inner();
        if probe {
            inner.state = BreakerState::Open;
            inner.opened_at = Some(Instant::now());
            inner.probes_in_flight = 0;
            return;
        }
        inner.failures += 1;
        if inner.state == BreakerState::Closed && inner.failures >= self.threshold {
            inner.state = BreakerState::Open;
            inner.opened_at = Some(Instant::now());
            tracing::warn!(failures = inner.failures, "account API circuit opened");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_probes_then_closes() {
        let b = Breaker::new(3, Duration::from_secs(10), 1);
        for _ in 0..3 {
            let p = b.try_acquire().unwrap();
            b.failure(p);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none());
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.try_acquire().expect("half-open lets a probe through");
        assert!(b.try_acquire().is_none(), "only one probe at a time");
        b.success(probe);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens() {
        let b = Breaker::new(1, Duration::from_secs(5), 2);
        b.failure(b.try_acquire().unwrap());
        tokio::time::advance(Duration::from_secs(5)).await;
        let p = b.try_acquire().unwrap();
        b.failure(p);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_counts_as_a_failure_and_frees_its_slot() {
        let b = Breaker::new(1, Duration::from_secs(5), 1);
        b.failure(b.try_acquire().unwrap());
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(b.try_acquire().expect("a probe")); // the caller gave up
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = b.try_acquire().expect("the slot is free again");
        b.success(probe);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_reset_the_failure_count() {
        let b = Breaker::new(2, Duration::from_secs(5), 1);
        b.failure(b.try_acquire().unwrap());
        b.success(b.try_acquire().unwrap());
        b.failure(b.try_acquire().unwrap());
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
