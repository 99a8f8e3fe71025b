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

/// Permission to make one call; report how it went.
#[derive(Debug)]
#[must_use]
pub struct Permit {
    probe: bool,
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
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut inner = self.inner();
        self.refresh(&mut inner);
        match inner.state {
            BreakerState::Closed => Some(Permit { probe: false }),
            BreakerState::Open => None,
            BreakerState::HalfOpen if inner.probes_in_flight < self.probes => {
                inner.probes_in_flight += 1;
                Some(Permit { probe: true })
            }
            BreakerState::HalfOpen => None,
        }
    }

    pub fn success(&self, permit: Permit) {
        let mut inner = self.inner();
        if permit.probe || inner.state == BreakerState::Closed {
            inner.state = BreakerState::Closed;
            inner.failures = 0;
            inner.opened_at = None;
            inner.probes_in_flight = 0;
        }
    }

    pub fn failure(&self, permit: Permit) {
        let mut inner = self.inner();
        if permit.probe {
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

    /// A call that ended without telling us about the service (e.g. a 4xx):
    /// frees a probe slot without changing the state.
    pub fn neutral(&self, permit: Permit) {
        if permit.probe {
            self.success(permit);
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
    async fn successes_reset_the_failure_count() {
        let b = Breaker::new(2, Duration::from_secs(5), 1);
        b.failure(b.try_acquire().unwrap());
        b.success(b.try_acquire().unwrap());
        b.failure(b.try_acquire().unwrap());
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
