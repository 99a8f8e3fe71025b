//! The status ports on every store (memory, SQLite, PostgreSQL): the
//! watcher's memory commits only from the version it read, a resolution
//! turns its subscribers into bulk notices in the same commit, and the
//! watcher's lease has one holder at a time.

use crate::support::db::on_every_store;
use recoverbot::domain::{ChannelKind, ChatRef, ConversationKey};
use recoverbot::engine::ports::{
    OutboxState, PurgeBefore, StatusCommit, Subscription, SubscriptionChange, TurnCommit,
};
use recoverbot::engine::{Envelope, Lane, Outbound};

fn status(version: i64, state: &str, outbox: Vec<Envelope>) -> StatusCommit {
    StatusCommit {
        expected_version: version,
        state: state.into(),
        etag: Some("\"e1\"".into()),
        last_modified: None,
        at: 1_000,
        outbox,
        notify: Vec::new(),
    }
}

fn subscribe(chat: &ChatRef, incident: &str, expires_at: i64) -> TurnCommit {
    let mut t = TurnCommit::outbox_only(ChannelKind::Telegram, None, 500, Vec::new());
    t.subscriptions
        .push(SubscriptionChange::Subscribe(Subscription {
            chat: chat.clone(),
            incident: incident.into(),
            created_at: 500,
            expires_at,
        }));
    t
}

#[tokio::test]
async fn a_status_pass_commits_only_from_the_version_it_read() {
    on_every_store("status_version", |store| async move {
        assert_eq!(store.status_record().await.unwrap(), None);
        let channel = ChatRef::new(ChannelKind::Telegram, "-100777");
        let post = Envelope {
            to: channel.clone(),
            op: Outbound::message("incident", Vec::new()),
            lane: Lane::Bulk,
        };
        let first = store
            .commit_status(status(0, "{\"a\":1}", vec![post.clone()]))
            .await
            .unwrap()
            .expect("the first pass commits");
        assert_eq!(first.chats, vec![channel.clone()]);
        // A second instance that read nothing (version 0) loses, and
        // queues nothing.
        assert!(
            store
                .commit_status(status(0, "{\"b\":1}", vec![post.clone()]))
                .await
                .unwrap()
                .is_none()
        );
        let record = store.status_record().await.unwrap().unwrap();
        assert_eq!((record.version, record.state.as_str()), (1, "{\"a\":1}"));
        assert_eq!(record.etag.as_deref(), Some("\"e1\""));
        assert_eq!(store.chat_outbox(&channel).await.unwrap().len(), 1);
        assert!(
            store
                .commit_status(status(1, "{\"c\":1}", Vec::new()))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(store.status_record().await.unwrap().unwrap().version, 2);
    })
    .await;
}

#[tokio::test]
async fn a_resolution_turns_live_subscribers_into_bulk_notices_once() {
    on_every_store("status_notify", |store| async move {
        let alice = ConversationKey::new(ChannelKind::Telegram, "11", "11").chat_ref();
        let bob = ConversationKey::new(ChannelKind::Discord, "dm:22", "22").chat_ref();
        let late = ConversationKey::new(ChannelKind::Telegram, "33", "33").chat_ref();
        store
            .commit_turn(subscribe(&alice, "inc1", 10_000))
            .await
            .unwrap();
        // Subscribing twice renews, it does not double.
        store
            .commit_turn(subscribe(&alice, "inc1", 20_000))
            .await
            .unwrap();
        store
            .commit_turn(subscribe(&bob, "inc1", 10_000))
            .await
            .unwrap();
        store
            .commit_turn(subscribe(&late, "inc1", 900))
            .await
            .unwrap();
        store
            .commit_turn(subscribe(&bob, "inc2", 10_000))
            .await
            .unwrap();
        let live = store.subscriptions("inc1", 1_000).await.unwrap();
        assert_eq!(live.len(), 2, "the expired one is not live: {live:?}");

        let mut pass = status(0, "{}", Vec::new());
        pass.notify = vec![("inc1".into(), Outbound::message("fixed", Vec::new()))];
        let done = store.commit_status(pass).await.unwrap().unwrap();
        assert_eq!(done.notified, 2);
        for chat in [&alice, &bob] {
            let entries = store.chat_outbox(chat).await.unwrap();
            assert_eq!(entries.len(), 1, "{chat}");
            assert_eq!(entries[0].lane, Lane::Bulk);
            assert_eq!(entries[0].state, OutboxState::Pending);
        }
        assert!(store.chat_outbox(&late).await.unwrap().is_empty());
        assert!(store.subscriptions("inc1", 0).await.unwrap().is_empty());
        assert_eq!(store.subscriptions("inc2", 0).await.unwrap().len(), 1);

        // A bulk entry is not claimed by taking it: delivery claims it when
        // its slot comes.
        let next = store.take_next(&alice, 2_000).await.unwrap().unwrap();
        assert!(!next.claimed);

        // /stop and a blocked bot drop a chat's subscriptions.
        let mut stop = TurnCommit::outbox_only(ChannelKind::Discord, None, 600, Vec::new());
        stop.subscriptions
            .push(SubscriptionChange::UnsubscribeAll(bob.clone()));
        store.commit_turn(stop).await.unwrap();
        assert!(store.subscriptions("inc2", 0).await.unwrap().is_empty());
        store
            .commit_turn(subscribe(&alice, "inc3", 10_000))
            .await
            .unwrap();
        assert_eq!(store.drop_subscriptions(&alice).await.unwrap(), 1);

        store
            .commit_turn(subscribe(&late, "inc4", 5_000))
            .await
            .unwrap();
        let report = store
            .purge(PurgeBefore {
                processed_events: 0,
                transcript: 0,
                idempotency: 0,
                rate_limits: 0,
                outbox: 0,
                subscriptions: 6_000,
            })
            .await
            .unwrap();
        assert!(report.subscriptions >= 1, "{report:?}");
        assert!(store.subscriptions("inc4", 0).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn the_watcher_lease_has_one_holder_until_it_expires_or_is_released() {
    on_every_store("status_lease", |store| async move {
        assert!(store.try_lease("w", "a", 1_500, 1_000).await.unwrap());
        assert!(!store.try_lease("w", "b", 1_600, 1_100).await.unwrap());
        assert!(
            store.try_lease("w", "a", 2_500, 1_400).await.unwrap(),
            "renewed"
        );
        assert!(!store.try_lease("w", "b", 3_000, 2_400).await.unwrap());
        assert!(
            store.try_lease("w", "b", 4_000, 2_600).await.unwrap(),
            "expired: taken over"
        );
        assert!(!store.try_lease("w", "a", 5_000, 2_700).await.unwrap());
        store.release_lease("w", "b").await.unwrap();
        assert!(
            store.try_lease("w", "a", 5_000, 2_800).await.unwrap(),
            "released"
        );
    })
    .await;
}
