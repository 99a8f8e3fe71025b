//! One lock per conversation, so turns of a conversation run in order while
//! different conversations run concurrently. Entries are removed when the
//! last holder lets go, so the map only holds active conversations.

use crate::domain::ConversationKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub struct KeyedLocks {
    map: Mutex<HashMap<ConversationKey, Arc<AsyncMutex<()>>>>,
}

pub struct KeyedGuard<'a> {
    locks: &'a KeyedLocks,
    key: ConversationKey,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &ConversationKey) -> KeyedGuard<'_> {
        let lock = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = lock.lock_owned().await;
        KeyedGuard {
            locks: self,
            key: key.clone(),
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
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
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
