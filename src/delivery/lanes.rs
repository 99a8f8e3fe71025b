//! A bot-wide cap per lane: at most N sends in any one-second window.
//! Replies (the interactive lane) have none unless an operator sets one;
//! bulk sends always take theirs, so a broadcast never crowds out replies.

use crate::engine::Lane;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

const SECOND: Duration = Duration::from_secs(1);

/// Sliding one-second windows, one per lane with a cap.
#[derive(Debug, Default)]
pub struct LaneCaps {
    interactive: Option<Window>,
    bulk: Option<Window>,
}

#[derive(Debug)]
struct Window {
    per_second: usize,
    sent: Mutex<VecDeque<Instant>>,
    /// Waiters queue here (a fair lock), so thousands of waiting sends wake
    /// one at a time, in order.
    queue: tokio::sync::Mutex<()>,
}

impl LaneCaps {
    /// Caps in sends per second; 0 is none.
    pub fn new(interactive_per_second: u32, bulk_per_second: u32) -> Self {
        let window = |n: u32| {
            (n > 0).then(|| Window {
                per_second: n as usize,
                sent: Mutex::default(),
                queue: tokio::sync::Mutex::new(()),
            })
        };
        Self {
            interactive: window(interactive_per_second),
            bulk: window(bulk_per_second),
        }
    }

    /// Waits until a send in `lane` may go, and takes its slot.
    pub async fn ready(&self, lane: Lane) {
        let window = match lane {
            Lane::Interactive => &self.interactive,
            Lane::Bulk => &self.bulk,
        };
        let Some(w) = window else { return };
        let _turn = w.queue.lock().await;
        loop {
            let wait = {
                let now = Instant::now();
                let mut sent = w.sent.lock().unwrap_or_else(|p| p.into_inner());
                while sent.front().is_some_and(|t| now - *t >= SECOND) {
                    sent.pop_front();
                }
                if sent.len() < w.per_second {
                    sent.push_back(now);
                    return;
                }
                (sent[sent.len() - w.per_second] + SECOND - now).max(Duration::from_millis(1))
            };
            tokio::time::sleep(wait).await;
        }
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
        assert!(Instant::now() - start >= SECOND);
        assert!(Instant::now() - start < SECOND * 2);
    }
}
