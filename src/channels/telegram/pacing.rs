//! Outbound pacing under Telegram's flood limits, for the whole bot:
//!
//! - about one message per second per chat, with short bursts tolerated
//!   (a token bucket of [`CHAT_BURST`] messages refilled at one per second);
//! - at most [`GROUP_PER_MINUTE`] messages per minute to one group;
//! - at most [`GLOBAL_PER_SECOND`] messages per second overall;
//! - after a 429, nothing at all goes to Telegram until its `retry_after`
//!   has passed ([`Pacer::freeze`]): every call waits in [`Pacer::ready`].
//!
//! Callers reserve a slot first and then sleep until it comes, so concurrent
//! senders never share a slot.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub const CHAT_BURST: f64 = 3.0;
pub const CHAT_PER_SECOND: f64 = 1.0;
pub const GROUP_PER_MINUTE: usize = 20;
pub const GLOBAL_PER_SECOND: usize = 30;
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
/// Chats idle this long are forgotten (their bucket is full again anyway).
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// What a request is, for pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A new message in a chat: counts against every limit.
    Message { chat: i64, group: bool },
    /// Anything else (answers, edits, deletes, getUpdates): only waits out
    /// a 429 freeze.
    Other,
}

#[derive(Debug)]
struct ChatBudget {
    tokens: f64,
    refilled: Instant,
    /// Send times in the last minute (groups only).
    minute: VecDeque<Instant>,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct State {
    frozen_until: Option<Instant>,
    global: VecDeque<Instant>,
    chats: HashMap<i64, ChatBudget>,
}

#[derive(Debug, Default)]
pub struct Pacer {
    state: Mutex<State>,
}

impl Pacer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops every request until `now + wait` (a 429's `retry_after`).
    pub fn freeze(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.frozen_until = Some(s.frozen_until.map_or(until, |f| f.max(until)));
    }

    /// When the current freeze ends, if one is on.
    pub fn frozen_until(&self) -> Option<Instant> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.frozen_until.filter(|f| *f > Instant::now())
    }

    /// Waits until a request of this kind may go out, and reserves its slot.
    pub async fn ready(&self, pace: Pace) {
        loop {
            let wait = self.try_reserve(pace, Instant::now());
            match wait {
                None => return,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }

    /// Reserves a slot at `now` and returns `None`, or returns how long to
    /// wait before asking again.
    fn try_reserve(&self, pace: Pace, now: Instant) -> Option<Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut earliest = now;
        if let Some(f) = s.frozen_until {
            if f > now {
                earliest = earliest.max(f);
            } else {
                s.frozen_until = None;
            }
        }
        let Pace::Message { chat, group } = pace else {
            return (earliest > now).then(|| earliest - now);
        };
        while s.global.front().is_some_and(|t| now - *t >= SECOND) {
            s.global.pop_front();
        }
        if s.global.len() >= GLOBAL_PER_SECOND {
            earliest = earliest.max(s.global[s.global.len() - GLOBAL_PER_SECOND] + SECOND);
        }
        if s.chats.len() > 1024 {
            s.chats.retain(|_, b| now - b.last_used < FORGET_AFTER);
        }
        let budget = s.chats.entry(chat).or_insert_with(|| ChatBudget {
            tokens: CHAT_BURST,
            refilled: now,
            minute: VecDeque::new(),
            last_used: now,
        });
        let elapsed = (now - budget.refilled).as_secs_f64();
        budget.tokens = (budget.tokens + elapsed * CHAT_PER_SECOND).min(CHAT_BURST);
        budget.refilled = now;
        if budget.tokens < 1.0 {
            let secs = (1.0 - budget.tokens) / CHAT_PER_SECOND;
            earliest = earliest.max(now + Duration::from_secs_f64(secs));
        }
        if group {
            while budget.minute.front().is_some_and(|t| now - *t >= MINUTE) {
                budget.minute.pop_front();
            }
            if budget.minute.len() >= GROUP_PER_MINUTE {
                earliest =
                    earliest.max(budget.minute[budget.minute.len() - GROUP_PER_MINUTE] + MINUTE);
            }
        }
        if earliest > now {
            // Never less than a millisecond, so a rounding error cannot spin.
            return Some((earliest - now).max(Duration::from_millis(1)));
        }
        budget.tokens -= 1.0;
        budget.last_used = now;
        if group {
            budget.minute.push_back(now);
        }
        s.global.push_back(now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn send_times(pacer: &Pacer, pace: Pace, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..n {
            pacer.ready(pace).await;
            times.push(Instant::now() - start);
        }
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_private_chat_gets_a_short_burst_then_one_per_second() {
        let pacer = Pacer::new();
        let t = send_times(
            &pacer,
            Pace::Message {
                chat: 1,
                group: false,
            },
            6,
        )
        .await;
        assert!(t[2] < Duration::from_millis(10), "{t:?}");
        assert!(t[3] >= Duration::from_millis(990), "{t:?}");
        assert!(t[5] >= Duration::from_millis(2990), "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_gets_at_most_twenty_a_minute() {
        let pacer = Pacer::new();
        let t = send_times(
            &pacer,
            Pace::Message {
                chat: -100,
                group: true,
            },
            21,
        )
        .await;
        assert!(t[19] < Duration::from_secs(60), "{t:?}");
        assert!(t[20] >= Duration::from_secs(60), "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_thirty_a_second_overall() {
        let pacer = Pacer::new();
        let start = Instant::now();
        for chat in 0..31 {
            pacer.ready(Pace::Message { chat, group: false }).await;
        }
        assert!(Instant::now() - start >= SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_freeze_holds_every_kind_of_request() {
        let pacer = Pacer::new();
        pacer.freeze(Duration::from_secs(3));
        let start = Instant::now();
        pacer.ready(Pace::Other).await;
        assert!(Instant::now() - start >= Duration::from_secs(3));
        pacer.freeze(Duration::from_secs(2));
        let start = Instant::now();
        pacer
            .ready(Pace::Message {
                chat: 5,
                group: false,
            })
            .await;
        assert!(Instant::now() - start >= Duration::from_secs(2));
        assert!(pacer.frozen_until().is_none());
    }
}
