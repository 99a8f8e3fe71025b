//! One lock per conversation, so turns of a conversation run in order while
//! different conversations run concurrently. Entries are removed when the
//! last holder lets go, so the map only holds active conversations.
//!
//! Locks are found by a 64-bit hash of the key: two conversations whose
//! hashes collide (practically never) would merely take turns, which is
//! still correct, and no key is copied on this hot path.

use crate::domain::ConversationKey;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct KeyedLocks {
    hasher: RandomState,
    map: Mutex<HashMap<u64, Arc<AsyncMutex<()>>>>,
}

pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    slot: u64,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &ConversationKey) -> KeyedGuard<'_> {
        let slot = self.hasher.hash_one(key);
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(slot).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyedGuard {
            locks: self,
            slot,
            guard: Some(guard),
        }
    }

    #[cfg(test)]
    pub fn active(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.guard.take());
        // Only the map holds it now: nobody is waiting.
        if map
            .get(&self.slot)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChannelKind;

    #[tokio::test]
    async fn entries_disappear_when_the_last_holder_lets_go() {
        let locks = KeyedLocks::default();
        let key = ConversationKey::new(ChannelKind::Console, "c", "u");
        {
            let _a = locks.lock(&key).await;
            assert_eq!(locks.active(), 1);
        }
        assert_eq!(locks.active(), 0);
    }

    #[tokio::test]
    async fn a_second_turn_of_the_same_conversation_waits() {
        let locks = Arc::new(KeyedLocks::default());
        let key = ConversationKey::new(ChannelKind::Console, "c", "u");
        let first = locks.lock(&key).await;
        let (l2, k2) = (locks.clone(), key.clone());
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(&k2).await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // Another conversation is not blocked.
        let _other = locks
            .lock(&ConversationKey::new(ChannelKind::Console, "c", "v"))
            .await;
        drop(first);
        waiter.await.unwrap();
    }
}
