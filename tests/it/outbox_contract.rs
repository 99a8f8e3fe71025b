//! The outbox contract, on every store (memory, SQLite, PostgreSQL): what a
//! commit queues, in which order, and how delivery claims and settles it.

use crate::support::db::on_every_store;
use recoverbot::domain::{ChannelKind, ChatRef, ConversationKey, EventId, MessageRef};
use recoverbot::engine::ports::{
    OutboxState, PurgeBefore, RateDecision, RateHit, Settled, StoreError, StoredConversation,
    TurnCommit,
};
use recoverbot::engine::{Envelope, Lane, OutButton, Outbound};

fn key(user: &str) -> ConversationKey {
    ConversationKey::new(ChannelKind::Telegram, format!("chat-{user}"), user)
}

fn conversation(key: &ConversationKey, version: i64) -> StoredConversation {
    StoredConversation {
        key: key.clone(),
        flow: "f".into(),
        step: "s".into(),
        variables: "{}".into(),
        state: "{}".into(),
        flow_version: "v".into(),
        created_at: 1,
        updated_at: 1,
        version,
    }
}

fn msg(text: &str) -> Outbound {
    Outbound::message(text, Vec::new())
}

fn turn(
    key: &ConversationKey,
    version: i64,
    event: &str,
    outbox: Vec<(ChatRef, Outbound)>,
) -> TurnCommit {
    let mut t = TurnCommit::outbox_only(
        key.channel,
        Some(EventId::new(event)),
        1_000,
        outbox
            .into_iter()
            .map(|(to, op)| Envelope::reply(to, op))
            .collect(),
    );
    t.conversation = Some(conversation(key, version));
    t
}

fn texts(entries: &[recoverbot::engine::ports::OutboxEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match &e.op {
            Outbound::Message { text, .. } => text.clone(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn a_turns_messages_are_queued_in_order_with_a_sequence_per_chat() {
    on_every_store("outbox_order", |store| async move {
        let k = key("a");
        let (a, b) = (k.chat_ref(), ChatRef::new(ChannelKind::Telegram, "other"));
        store
            .commit_turn(turn(
                &k,
                0,
                "e1",
                vec![
                    (a.clone(), msg("one")),
                    (b.clone(), msg("elsewhere")),
                    (a.clone(), msg("two")),
                ],
            ))
            .await
            .unwrap();
        store
            .commit_turn(turn(&k, 1, "e2", vec![(a.clone(), msg("three"))]))
            .await
            .unwrap();
        let open = store.open_entries(&a, 10).await.unwrap();
        assert_eq!(texts(&open), ["one", "two", "three"]);
        assert_eq!(open.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(open.iter().all(|e| e.state == OutboxState::Pending));
        assert_eq!(open[2].event, Some(EventId::new("e2")));
        let other = store.open_entries(&b, 10).await.unwrap();
        assert_eq!((texts(&other), other[0].seq), (vec!["elsewhere".into()], 1));
        let mut chats = store.open_chats(10).await.unwrap();
        chats.sort();
        let mut want = vec![a.clone(), b.clone()];
        want.sort();
        assert_eq!(chats, want);
        assert_eq!(store.open_entries(&a, 2).await.unwrap().len(), 2, "limit");
    })
    .await;
}

#[tokio::test]
async fn a_turn_that_does_not_commit_queues_nothing() {
    on_every_store("outbox_no_commit", |store| async move {
        let k = key("b");
        let chat = k.chat_ref();
        store
            .commit_turn(turn(&k, 0, "e1", vec![(chat.clone(), msg("first"))]))
            .await
            .unwrap();
        // The same event again, and a stale version: both refused.
        let dup = store
            .commit_turn(turn(&k, 1, "e1", vec![(chat.clone(), msg("dup"))]))
            .await;
        assert!(matches!(dup, Err(StoreError::DuplicateEvent)), "{dup:?}");
        let stale = store
            .commit_turn(turn(&k, 0, "e2", vec![(chat.clone(), msg("stale"))]))
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
        assert_eq!(texts(&store.chat_outbox(&chat).await.unwrap()), ["first"]);
    })
    .await;
}

#[tokio::test]
async fn a_message_with_no_conversation_records_its_event_once() {
    on_every_store("outbox_only", |store| async move {
        let group = ChatRef::new(ChannelKind::Telegram, "-100");
        let post = |event: &str| {
            TurnCommit::outbox_only(
                ChannelKind::Telegram,
                Some(EventId::new(event)),
                5,
                vec![Envelope {
                    to: group.clone(),
                    op: Outbound::message(
                        "hello group",
                        vec![OutButton::link("Open", "https://t.me/x")],
                    ),
                    lane: Lane::Bulk,
                }],
            )
        };
        assert_eq!(store.commit_turn(post("g1")).await.unwrap(), 0);
        assert!(matches!(
            store.commit_turn(post("g1")).await,
            Err(StoreError::DuplicateEvent)
        ));
        let queued = store.chat_outbox(&group).await.unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].lane, Lane::Bulk);
        assert!(
            store
                .processed_event(ChannelKind::Telegram, &EventId::new("g1"))
                .await
                .unwrap()
                .is_some()
        );
    })
    .await;
}

#[tokio::test]
async fn a_claim_is_exclusive_and_delivery_keeps_the_message_id_under_its_key() {
    on_every_store("outbox_claim", |store| async move {
        let k = key("c");
        let chat = k.chat_ref();
        let keyed = Outbound::Message {
            text: "incident".into(),
            buttons: Vec::new(),
            key: Some("announcement:inc-1".into()),
        };
        store
            .commit_turn(turn(&k, 0, "e1", vec![(chat.clone(), keyed)]))
            .await
            .unwrap();
        let entry = store.open_entries(&chat, 1).await.unwrap().remove(0);
        assert!(store.claim_entry(entry.id, 0, 10).await.unwrap());
        assert!(
            !store.claim_entry(entry.id, 0, 10).await.unwrap(),
            "a second claim with the old count loses"
        );
        let claimed = store.outbox_entry(entry.id).await.unwrap().unwrap();
        assert_eq!(
            (claimed.state, claimed.attempts),
            (OutboxState::Attempted, 1)
        );
        let sent = MessageRef::new("4242");
        store
            .entry_delivered(entry.id, Some(&sent), 20)
            .await
            .unwrap();
        let done = store.outbox_entry(entry.id).await.unwrap().unwrap();
        assert_eq!(
            (done.state, done.message),
            (OutboxState::Delivered, Some(sent.clone()))
        );
        assert!(store.open_entries(&chat, 10).await.unwrap().is_empty());
        assert_eq!(
            store
                .keyed_message(&chat, "announcement:inc-1")
                .await
                .unwrap(),
            Some(sent)
        );
        assert_eq!(store.keyed_message(&chat, "nope").await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_refused_message_is_marked_failed_and_the_chat_goes_on() {
    on_every_store("outbox_failed", |store| async move {
        let k = key("d");
        let chat = k.chat_ref();
        store
            .commit_turn(turn(
                &k,
                0,
                "e1",
                vec![(chat.clone(), msg("refused")), (chat.clone(), msg("next"))],
            ))
            .await
            .unwrap();
        let first = store.open_entries(&chat, 1).await.unwrap().remove(0);
        store.claim_entry(first.id, 0, 5).await.unwrap();
        store
            .entry_failed(first.id, "Forbidden: bot was blocked by the user", 6)
            .await
            .unwrap();
        let failed = store.outbox_entry(first.id).await.unwrap().unwrap();
        assert_eq!(failed.state, OutboxState::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some("Forbidden: bot was blocked by the user")
        );
        assert_eq!(
            texts(&store.open_entries(&chat, 10).await.unwrap()),
            ["next"]
        );
    })
    .await;
}

#[tokio::test]
async fn an_event_referring_to_an_unknown_bot_message_settles_the_send_a_crash_hid() {
    on_every_store("outbox_proof", |store| async move {
        let k = key("e");
        let chat = k.chat_ref();
        store
            .commit_turn(turn(&k, 0, "e1", vec![(chat.clone(), msg("in doubt"))]))
            .await
            .unwrap();
        let entry = store.open_entries(&chat, 1).await.unwrap().remove(0);
        store.claim_entry(entry.id, 0, 5).await.unwrap();
        // (The process dies here: sent or not, nobody knows.) The user then
        // presses a button on message 77, which the store has never seen.
        let mut press = turn(&k, 1, "e2", Vec::new());
        press.seen_message = Some((chat.clone(), MessageRef::new("77")));
        store.commit_turn(press).await.unwrap();
        let settled = store.outbox_entry(entry.id).await.unwrap().unwrap();
        assert_eq!(settled.state, OutboxState::Delivered);
        assert_eq!(settled.message, Some(MessageRef::new("77")));
        // A message the store knows proves nothing new.
        store
            .commit_turn(turn(&k, 2, "e3", vec![(chat.clone(), msg("later"))]))
            .await
            .unwrap();
        let later = store.open_entries(&chat, 1).await.unwrap().remove(0);
        store.claim_entry(later.id, 0, 6).await.unwrap();
        let mut again = turn(&k, 3, "e4", Vec::new());
        again.seen_message = Some((chat.clone(), MessageRef::new("77")));
        store.commit_turn(again).await.unwrap();
        let still = store.outbox_entry(later.id).await.unwrap().unwrap();
        assert_eq!(still.state, OutboxState::Attempted, "still in doubt");
    })
    .await;
}

#[tokio::test]
async fn rate_limit_hits_count_in_the_commit_and_only_there() {
    on_every_store("outbox_rate_hits", |store| async move {
        let k = key("f");
        let bucket = "reset:user:f";
        let check = || store.check(bucket, 3600, 2, 1_000);
        assert!(matches!(
            check().await.unwrap(),
            RateDecision::Allowed { .. }
        ));
        for (version, event) in [(0, "r1"), (1, "r2")] {
            let mut t = turn(&k, version, event, Vec::new());
            t.rate_hits = vec![RateHit {
                bucket: bucket.into(),
                window_secs: 3600,
                limit: 2,
                now: 1_000,
            }];
            store.commit_turn(t).await.unwrap();
        }
        // A redelivered turn is refused, and counts nothing.
        let mut dup = turn(&k, 2, "r2", Vec::new());
        dup.rate_hits = vec![RateHit {
            bucket: bucket.into(),
            window_secs: 3600,
            limit: 2,
            now: 1_000,
        }];
        assert!(store.commit_turn(dup).await.is_err());
        assert!(matches!(
            check().await.unwrap(),
            RateDecision::Limited { .. }
        ));
        // The window slides: half an hour later, one of the two is free.
        assert!(matches!(
            store
                .check(bucket, 3600, 2, 1_000 + 1_800_000)
                .await
                .unwrap(),
            RateDecision::Allowed { remaining: 0 }
        ));
    })
    .await;
}

#[tokio::test]
async fn the_purge_removes_settled_entries_only() {
    on_every_store("outbox_purge", |store| async move {
        let k = key("g");
        let chat = k.chat_ref();
        store
            .commit_turn(turn(
                &k,
                0,
                "e1",
                vec![(chat.clone(), msg("sent")), (chat.clone(), msg("waiting"))],
            ))
            .await
            .unwrap();
        let sent = store.open_entries(&chat, 1).await.unwrap().remove(0);
        store.claim_entry(sent.id, 0, 10).await.unwrap();
        store.entry_delivered(sent.id, None, 10).await.unwrap();
        let report = store
            .purge(PurgeBefore {
                processed_events: 0,
                transcript: 0,
                idempotency: 0,
                rate_limits: 0,
                outbox: 100,
                subscriptions: 0,
            })
            .await
            .unwrap();
        assert_eq!(report.outbox_entries, 1);
        assert_eq!(texts(&store.chat_outbox(&chat).await.unwrap()), ["waiting"]);
    })
    .await;
}

#[tokio::test]
async fn taking_the_next_entry_claims_it_and_settling_takes_the_one_after() {
    on_every_store("outbox_take_next", |store| async move {
        let k = key("h");
        let chat = k.chat_ref();
        store
            .commit_turn(turn(
                &k,
                0,
                "e1",
                vec![(chat.clone(), msg("first")), (chat.clone(), msg("second"))],
            ))
            .await
            .unwrap();
        let first = store.take_next(&chat, 50).await.unwrap().unwrap();
        assert!(first.claimed);
        assert_eq!(
            (
                first.entry.state,
                first.entry.attempts,
                first.entry.updated_at
            ),
            (OutboxState::Attempted, 1, 50)
        );
        assert_eq!(texts(std::slice::from_ref(&first.entry)), ["first"]);
        // Taken again before it is settled: it is in doubt now, not claimed.
        let again = store.take_next(&chat, 60).await.unwrap().unwrap();
        assert!(!again.claimed);
        assert_eq!(again.entry.id, first.entry.id);
        let second = store
            .settle_and_take_next(
                first.entry.id,
                Settled::Delivered(Some(MessageRef::new("9"))),
                &chat,
                70,
            )
            .await
            .unwrap()
            .unwrap();
        assert!(second.claimed);
        assert_eq!(texts(std::slice::from_ref(&second.entry)), ["second"]);
        let done = store.outbox_entry(first.entry.id).await.unwrap().unwrap();
        assert_eq!(done.message, Some(MessageRef::new("9")));
        let none = store
            .settle_and_take_next(second.entry.id, Settled::Failed("gone".into()), &chat, 80)
            .await
            .unwrap();
        assert_eq!(none, None);
        let failed = store.outbox_entry(second.entry.id).await.unwrap().unwrap();
        assert_eq!(failed.state, OutboxState::Failed);
    })
    .await;
}
