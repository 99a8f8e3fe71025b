//! A bot-wide cap per lane: at most N sends per second, evenly spaced.
//! Replies (the interactive lane) have none unless an operator sets one;
//! bulk sends always take theirs, so a broadcast never crowds out replies.

use crate::engine::Lane;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Slots are spaced a little more than `1/N` s apart, so the few
/// milliseconds between taking a slot and the request reaching the
/// platform never fit one send too many into a second there.
const SLACK: f64 = 1.02;

/// Evenly spaced slots, one pacer per lane with a cap.
#[derive(Debug, Default)]
pub struct LaneCaps {
    interactive: Option<Window>,
    bulk: Option<Window>,
}

#[derive(Debug)]
struct Window {
    interval: Duration,
    /// When the next slot is free.
    next: Mutex<Option<Instant>>,
    /// Waiters queue here (a fair lock), so thousands of waiting sends wake
    /// one at a time, in order.
    queue: Arc<tokio::sync::Mutex<()>>,
}

/// A bulk slot taken and held: the next waiter waits until it is dropped,
/// so whatever the holder does before sending (claiming the entry) cannot
/// bunch sends up.
#[must_use]
pub struct LanePermit {
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl LanePermit {
    /// No cap, nothing held.
    pub fn none() -> Self {
        Self { _turn: None }
    }
}

impl LaneCaps {
    /// Caps in sends per second; 0 is none.
    pub fn new(interactive_per_second: u32, bulk_per_second: u32) -> Self {
        let window = |n: u32| {
            (n > 0).then(|| Window {
                interval: Duration::from_secs_f64(SLACK / f64::from(n)),
                next: Mutex::new(None),
                queue: Arc::new(tokio::sync::Mutex::new(())),
            })
        };
        Self {
            interactive: window(interactive_per_second),
            bulk: window(bulk_per_second),
        }
    }

    /// Waits until a send in `lane` may go, and takes its slot.
    pub async fn ready(&self, lane: Lane) {
        drop(self.hold(lane).await);
    }

    /// Like [`LaneCaps::ready`], and keeps the next waiter waiting until
    /// the permit is dropped.
    pub async fn hold(&self, lane: Lane) -> LanePermit {
        let window = match lane {
            Lane::Interactive => &self.interactive,
            Lane::Bulk => &self.bulk,
        };
        let Some(w) = window else {
            return LanePermit::none();
        };
        let turn = w.queue.clone().lock_owned().await;
        let at = {
            let now = Instant::now();
            let mut next = w.next.lock().unwrap_or_else(|p| p.into_inner());
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + w.interval);
            at
        };
        tokio::time::sleep_until(at).await;
        LanePermit { _turn: Some(turn) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_capped_lane_waits_and_an_uncapped_one_does_not() {
        let caps = LaneCaps::new(0, 40);
        let start = Instant::now();
        for _ in 0..500 {
            caps.ready(Lane::Interactive).await;
        }
        assert_eq!(Instant::now() - start, Duration::ZERO);
        for _ in 0..41 {
            caps.ready(Lane::Bulk).await;
        }
        assert!(Instant::now() - start >= Duration::from_secs(1));
        assert!(Instant::now() - start < Duration::from_secs(2));
    }
}
