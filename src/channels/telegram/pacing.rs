//! Outbound pacing under Telegram's flood limits:
//!
//! - about one message per second per chat, with short bursts tolerated
//!   (a token bucket of [`CHAT_BURST`] messages refilled at one per second);
//! - at most [`GROUP_PER_MINUTE`] messages per minute to one group;
//! - replies (the interactive lane) have no bot-wide cap unless the
//!   operator sets one (`telegram.max_messages_per_second`); bulk sends
//!   (announcements) share a bot-wide cap (`telegram.bulk_messages_per_second`)
//!   and never hold up a reply;
//! - a 429 holds back the chat it was for until its `retry_after`
//!   ([`Pacer::freeze`]); 429s for several chats within a second hold back
//!   every request, since then the bot as a whole is over the limit.
//!
//! Callers reserve a slot first and then sleep until it comes, so concurrent
//! senders never share a slot.

use crate::delivery::LaneCaps;
use crate::engine::Lane;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub const CHAT_BURST: f64 = 3.0;
pub const CHAT_PER_SECOND: f64 = 1.0;
pub const GROUP_PER_MINUTE: usize = 20;
/// The bulk lane's default bot-wide cap: under Telegram's "about 30 per
/// second" for broadcasts, with room for replies.
pub const BULK_PER_SECOND: usize = 25;
/// 429s for this many different chats within a second freeze every request.
const CHATS_FOR_GLOBAL_FREEZE: usize = 3;
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);
/// Chats idle this long are forgotten (their bucket is full again anyway).
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// What a request is, for pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// A new message in a chat: counts against the chat's limits and its
    /// lane's cap.
    Message { chat: i64, group: bool, lane: Lane },
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
    /// A 429 for this chat holds it back until then.
    frozen_until: Option<Instant>,
}

#[derive(Debug)]
struct State {
    frozen_until: Option<Instant>,
    /// When idle chats were last forgotten.
    pruned: Instant,
    chats: HashMap<i64, ChatBudget>,
    /// Recent 429s: when, and for which chat.
    recent_429s: VecDeque<(Instant, i64)>,
}

#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
    /// The bot-wide caps per lane: by default none on replies, and
    /// [`BULK_PER_SECOND`] on bulk sends.
    caps: LaneCaps,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::with_caps(LaneCaps::new(0, BULK_PER_SECOND as u32))
    }
}

impl Pacer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_caps(caps: LaneCaps) -> Self {
        Self {
            state: Mutex::default(),
            caps,
        }
    }

    /// A 429 said to wait `wait`: for `chat` only, unless several chats
    /// were told so within a second (or no chat is named), then for every
    /// request.
    pub fn freeze(&self, wait: Duration, chat: Option<i64>) {
        let now = Instant::now();
        let until = now + wait;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let global = match chat {
            None => true,
            Some(chat) => {
                if let Some(b) = s.chats.get_mut(&chat) {
                    b.frozen_until = Some(b.frozen_until.map_or(until, |f| f.max(until)));
                } else {
                    let mut b = ChatBudget::new(now);
                    b.frozen_until = Some(until);
                    s.chats.insert(chat, b);
                }
                while s
                    .recent_429s
                    .front()
                    .is_some_and(|(t, _)| now - *t >= SECOND)
                {
                    s.recent_429s.pop_front();
                }
                s.recent_429s.push_back((now, chat));
                let mut chats: Vec<i64> = s.recent_429s.iter().map(|(_, c)| *c).collect();
                chats.sort_unstable();
                chats.dedup();
                chats.len() >= CHATS_FOR_GLOBAL_FREEZE
            }
        };
        if global {
            s.frozen_until = Some(s.frozen_until.map_or(until, |f| f.max(until)));
        }
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
                None => break,
                Some(d) => tokio::time::sleep(d).await,
            }
        }
        // The bulk lane's slot is taken before the send is claimed
        // ([`Pacer::bulk_slot`]); an operator's cap on replies here.
        if let Pace::Message {
            lane: Lane::Interactive,
            ..
        } = pace
        {
            self.caps.ready(Lane::Interactive).await;
        }
    }

    /// Waits for the bulk lane's bot-wide slot and takes it (see
    /// [`crate::delivery::Transport::bulk_slot`]).
    pub async fn bulk_slot(&self) -> crate::delivery::LanePermit {
        self.caps.hold(Lane::Bulk).await
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
        let Pace::Message { chat, group, .. } = pace else {
            return (earliest > now).then(|| earliest - now);
        };
        // Idle chats are forgotten now and then (their bucket is full again
        // anyway), not on every call.
        if s.chats.len() > 1024 && now - s.pruned >= FORGET_AFTER / 4 {
            s.chats.retain(|_, b| {
                now - b.last_used < FORGET_AFTER || b.frozen_until.is_some_and(|f| f > now)
            });
            s.pruned = now;
        }
        let budget = s.chats.entry(chat).or_insert_with(|| ChatBudget::new(now));
        if let Some(f) = budget.frozen_until {
            if f > now {
                earliest = earliest.max(f);
            } else {
                budget.frozen_until = None;
            }
        }
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
        None
    }
}

impl Default for State {
    fn default() -> Self {
        Self {
            frozen_until: None,
            pruned: Instant::now(),
            chats: HashMap::new(),
            recent_429s: VecDeque::new(),
        }
    }
}

impl ChatBudget {
    fn new(now: Instant) -> Self {
        Self {
            tokens: CHAT_BURST,
            refilled: now,
            minute: VecDeque::new(),
            last_used: now,
            frozen_until: None,
        }
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
                lane: Lane::Interactive,
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
                lane: Lane::Interactive,
            },
            21,
        )
        .await;
        assert!(t[19] < Duration::from_secs(60), "{t:?}");
        assert!(t[20] >= Duration::from_secs(60), "{t:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn replies_have_no_bot_wide_cap_by_default() {
        let pacer = Pacer::new();
        let start = Instant::now();
        for chat in 0..500 {
            pacer.ready(reply(chat)).await;
        }
        assert_eq!(Instant::now() - start, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn bulk_sends_take_the_bot_wide_cap_and_do_not_slow_replies() {
        let pacer = Pacer::new();
        let start = Instant::now();
        for chat in 0..=BULK_PER_SECOND as i64 {
            drop(pacer.bulk_slot().await);
            pacer
                .ready(Pace::Message {
                    chat,
                    group: true,
                    lane: Lane::Bulk,
                })
                .await;
        }
        assert!(Instant::now() - start >= SECOND);
        let before_reply = Instant::now();
        pacer.ready(reply(9_999)).await;
        assert_eq!(Instant::now() - before_reply, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_operator_cap_limits_replies() {
        let pacer = Pacer::with_caps(LaneCaps::new(10, 0));
        let start = Instant::now();
        for chat in 0..11 {
            pacer.ready(reply(chat)).await;
        }
        assert!(Instant::now() - start >= SECOND);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_holds_back_only_its_chat() {
        let pacer = Pacer::new();
        pacer.freeze(Duration::from_secs(5), Some(1));
        let start = Instant::now();
        pacer.ready(reply(2)).await;
        assert_eq!(Instant::now() - start, Duration::ZERO);
        pacer.ready(reply(1)).await;
        assert!(Instant::now() - start >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn several_429s_in_a_second_hold_back_everything() {
        let pacer = Pacer::new();
        for chat in 1..=3 {
            pacer.freeze(Duration::from_secs(4), Some(chat));
        }
        let start = Instant::now();
        pacer.ready(reply(77)).await;
        assert!(Instant::now() - start >= Duration::from_secs(4));
    }

    fn reply(chat: i64) -> Pace {
        Pace::Message {
            chat,
            group: false,
            lane: Lane::Interactive,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_freeze_holds_every_kind_of_request() {
        let pacer = Pacer::new();
        pacer.freeze(Duration::from_secs(3), None);
        let start = Instant::now();
        pacer.ready(Pace::Other).await;
        assert!(Instant::now() - start >= Duration::from_secs(3));
        pacer.freeze(Duration::from_secs(2), None);
        let start = Instant::now();
        pacer.ready(reply(5)).await;
        assert!(Instant::now() - start >= Duration::from_secs(2));
        assert!(pacer.frozen_until().is_none());
    }
}
