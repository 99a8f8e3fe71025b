//! Every store operation, on SQLite and on PostgreSQL.

use crate::support::db::{PgDb, SqliteDb, on_each_backend, postgres_base_url};
use recoverbot::domain::{ChannelKind, ConversationKey, EventId};
use recoverbot::engine::ports::{
    AuditEntry, Direction, EscalationRecord, FeedbackRecord, PurgeBefore, RateDecision, StoreError,
    StoredConversation, TranscriptEntry, TurnCommit,
};
use recoverbot::engine::{Envelope, Outbound};
use recoverbot::store::Database;
use std::sync::Arc;

fn key(user: &str) -> ConversationKey {
    ConversationKey::new(ChannelKind::Telegram, "chat-1", user)
}

fn conversation(key: &ConversationKey, step: &str, version: i64, at: i64) -> StoredConversation {
    StoredConversation {
        key: key.clone(),
        flow: "reset".into(),
        step: step.into(),
        variables: r#"{"email_masked":"j***@example.com"}"#.into(),
        state: "{}".into(),
        flow_version: "v1".into(),
        created_at: 1_000,
        updated_at: at,
        version,
    }
}

fn turn(c: StoredConversation, event: Option<&str>, text: &str) -> TurnCommit {
    TurnCommit {
        event: event.map(EventId::new),
        channel: c.key.channel,
        at: c.updated_at,
        transcript: vec![
            TranscriptEntry {
                direction: Direction::In,
                text: text.into(),
                at: c.updated_at,
            },
            TranscriptEntry {
                direction: Direction::Out,
                text: format!("reply to {text}"),
                at: c.updated_at,
            },
        ],
        audit: vec![],
        escalations: vec![],
        feedback: vec![],
        outbox: vec![Envelope::reply(
            c.key.chat_ref(),
            Outbound::message(format!("reply to {text}"), Vec::new()),
        )],
        rate_hits: vec![],
        seen_message: None,
        subscriptions: vec![],
        conversation: Some(c),
    }
}

#[tokio::test]
async fn a_conversation_is_created_loaded_and_updated() {
    on_each_backend(
        "a_conversation_is_created_loaded_and_updated",
        |store| async move {
            let k = key("u1");
            assert!(store.load_conversation(&k).await.unwrap().is_none());
            let v1 = store
                .commit_turn(turn(conversation(&k, "start", 0, 2_000), Some("e1"), "hi"))
                .await
                .unwrap();
            assert_eq!(v1, 1);
            let loaded = store.load_conversation(&k).await.unwrap().unwrap();
            assert_eq!(loaded, conversation(&k, "start", 1, 2_000));

            let v2 = store
                .commit_turn(turn(
                    conversation(&k, "check_spam", 1, 3_000),
                    Some("e2"),
                    "next",
                ))
                .await
                .unwrap();
            assert_eq!(v2, 2);
            let loaded = store.load_conversation(&k).await.unwrap().unwrap();
            assert_eq!(loaded.step, "check_spam");
            assert_eq!(loaded.version, 2);
            assert_eq!(loaded.updated_at, 3_000);
            // Other users' conversations are separate.
            assert!(store.load_conversation(&key("u2")).await.unwrap().is_none());
        },
    )
    .await;
}

#[tokio::test]
async fn two_writers_from_the_same_stale_version_one_wins_one_conflicts() {
    on_each_backend(
        "two_writers_from_the_same_stale_version",
        |store| async move {
            let k = key("race");
            store
                .commit_turn(turn(conversation(&k, "start", 0, 1), Some("r0"), "a"))
                .await
                .unwrap();
            let (a, b) = tokio::join!(
                store.commit_turn(turn(conversation(&k, "from_a", 1, 2), Some("ra"), "a")),
                store.commit_turn(turn(conversation(&k, "from_b", 1, 2), Some("rb"), "b")),
            );
            let (winner, loser) = match (&a, &b) {
                (Ok(_), Err(_)) => ("from_a", b),
                (Err(_), Ok(_)) => ("from_b", a),
                other => panic!("expected exactly one winner, got {other:?}"),
            };
            assert!(matches!(loser, Err(StoreError::Conflict(ref c)) if *c == k));
            let stored = store.load_conversation(&k).await.unwrap().unwrap();
            assert_eq!(stored.step, winner);
            assert_eq!(stored.version, 2);
            // The loser's transcript and event were rolled back with it.
            assert_eq!(store.transcript(&k, 100).await.unwrap().len(), 4);
            let loser_event = if winner == "from_a" { "rb" } else { "ra" };
            assert!(
                !store
                    .event_processed(ChannelKind::Telegram, &EventId::new(loser_event))
                    .await
                    .unwrap()
            );
        },
    )
    .await;
}

#[tokio::test]
async fn two_writers_creating_the_same_conversation_one_conflicts() {
    on_each_backend(
        "two_writers_creating_the_same_conversation",
        |store| async move {
            let k = key("new");
            let (a, b) = tokio::join!(
                store.commit_turn(turn(conversation(&k, "a", 0, 1), None, "a")),
                store.commit_turn(turn(conversation(&k, "b", 0, 1), None, "b")),
            );
            assert_eq!(
                [&a, &b].iter().filter(|r| r.is_ok()).count(),
                1,
                "{a:?} {b:?}"
            );
            assert!(
                [&a, &b]
                    .iter()
                    .any(|r| matches!(r, Err(StoreError::Conflict(_))))
            );
        },
    )
    .await;
}

#[tokio::test]
async fn a_redelivered_event_is_refused_and_changes_nothing() {
    on_each_backend("a_redelivered_event_is_refused", |store| async move {
        let k = key("dup");
        store
            .commit_turn(turn(conversation(&k, "start", 0, 1), Some("42"), "hi"))
            .await
            .unwrap();
        assert!(
            store
                .event_processed(ChannelKind::Telegram, &EventId::new("42"))
                .await
                .unwrap()
        );
        // The same event id on another channel is a different event.
        assert!(
            !store
                .event_processed(ChannelKind::Discord, &EventId::new("42"))
                .await
                .unwrap()
        );
        let again = store
            .commit_turn(turn(conversation(&k, "moved", 1, 2), Some("42"), "hi"))
            .await;
        assert!(
            matches!(again, Err(StoreError::DuplicateEvent)),
            "{again:?}"
        );
        let stored = store.load_conversation(&k).await.unwrap().unwrap();
        assert_eq!((stored.step.as_str(), stored.version), ("start", 1));
        assert_eq!(store.transcript(&k, 10).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn transcripts_come_back_oldest_first_and_limited_to_the_newest() {
    on_each_backend("transcripts_come_back_oldest_first", |store| async move {
        let k = key("t");
        let mut version = 0;
        for i in 0..5 {
            version = store
                .commit_turn(turn(
                    conversation(&k, "s", version, i),
                    Some(&format!("t{i}")),
                    &format!("m{i}"),
                ))
                .await
                .unwrap();
        }
        let all = store.transcript(&k, 100).await.unwrap();
        assert_eq!(all.len(), 10);
        assert_eq!(all[0].text, "m0");
        assert_eq!(all[0].direction, Direction::In);
        assert_eq!(all[1].direction, Direction::Out);
        let last = store.transcript(&k, 3).await.unwrap();
        let texts: Vec<_> = last.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["reply to m3", "m4", "reply to m4"]);
    })
    .await;
}

#[tokio::test]
async fn rate_limits_count_per_bucket_and_window() {
    on_each_backend(
        "rate_limits_count_per_bucket_and_window",
        |store| async move {
            let now = 3_600_000 * 10 + 1_000;
            assert_eq!(
                store.hit("reset:email:x", 3600, 2, now).await.unwrap(),
                RateDecision::Allowed { remaining: 1 }
            );
            assert_eq!(
                store.hit("reset:email:x", 3600, 2, now + 1).await.unwrap(),
                RateDecision::Allowed { remaining: 0 }
            );
            match store.hit("reset:email:x", 3600, 2, now + 2).await.unwrap() {
                RateDecision::Limited { retry_after_secs } => {
                    assert!(
                        // The window slides: one hit frees up after
                        // window / limit, not at the hour.
                        (1798..=1800).contains(&retry_after_secs),
                        "{retry_after_secs}"
                    )
                }
                other => panic!("expected a limit, got {other:?}"),
            }
            // Another bucket is independent; the next window starts afresh.
            assert!(matches!(
                store.hit("reset:email:y", 3600, 2, now).await.unwrap(),
                RateDecision::Allowed { .. }
            ));
            assert!(matches!(
                store
                    .hit("reset:email:x", 3600, 2, now + 3_600_000)
                    .await
                    .unwrap(),
                RateDecision::Allowed { remaining: 1 }
            ));
        },
    )
    .await;
}

#[tokio::test]
async fn an_idempotency_key_is_created_once_and_reused() {
    on_each_backend("an_idempotency_key_is_created_once", |store| async move {
        let first = store
            .idempotency_record("scope-1", "key-a", 10)
            .await
            .unwrap();
        assert_eq!(first.key, "key-a");
        assert_eq!(first.response, None);
        let second = store
            .idempotency_record("scope-1", "key-b", 11)
            .await
            .unwrap();
        assert_eq!(second.key, "key-a", "a retry must reuse the first key");
        store
            .record_idempotent_response("scope-1", r#"{"reset_id":"rst_1"}"#, 12)
            .await
            .unwrap();
        let third = store
            .idempotency_record("scope-1", "key-c", 13)
            .await
            .unwrap();
        assert_eq!(third.response.as_deref(), Some(r#"{"reset_id":"rst_1"}"#));
        let other = store
            .idempotency_record("scope-2", "key-d", 14)
            .await
            .unwrap();
        assert_eq!(other.key, "key-d");
    })
    .await;
}

#[tokio::test]
async fn audit_entries_are_appended_and_listed_newest_first() {
    on_each_backend("audit_entries_are_appended", |store| async move {
        for i in 0..3 {
            store
                .append_audit(AuditEntry {
                    at: i,
                    actor: "bot".into(),
                    action: format!("action-{i}"),
                    subject: "telegram:1:2".into(),
                    detail: "{}".into(),
                })
                .await
                .unwrap();
        }
        // Audit entries written with a turn land in the same log.
        let k = key("audited");
        let mut t = turn(conversation(&k, "s", 0, 5), None, "x");
        t.audit.push(AuditEntry {
            at: 5,
            actor: "bot".into(),
            action: "escalation_requested".into(),
            subject: k.to_string(),
            detail: r#"{"flow":"reset"}"#.into(),
        });
        store.commit_turn(t).await.unwrap();
        let recent = store.recent_audit(2).await.unwrap();
        let actions: Vec<_> = recent.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["escalation_requested", "action-2"]);
    })
    .await;
}

#[tokio::test]
async fn purge_removes_only_what_is_older_than_the_cutoffs() {
    on_each_backend("purge_removes_only_old_records", |store| async move {
        let k = key("p");
        store
            .commit_turn(turn(conversation(&k, "s", 0, 100), Some("old"), "x"))
            .await
            .unwrap();
        store
            .commit_turn(turn(conversation(&k, "s", 1, 10_000), Some("new"), "y"))
            .await
            .unwrap();
        store
            .idempotency_record("old-scope", "k", 100)
            .await
            .unwrap();
        store.hit("b", 1, 5, 100).await.unwrap();
        let report = store
            .purge(PurgeBefore {
                processed_events: 5_000,
                transcript: 5_000,
                idempotency: 5_000,
                rate_limits: 5_000,
                outbox: 5_000,
                subscriptions: 0,
            })
            .await
            .unwrap();
        assert_eq!(report.processed_events, 1);
        assert_eq!(report.transcript_entries, 2);
        assert_eq!(report.idempotency_records, 1);
        assert_eq!(report.rate_limit_counters, 1);
        let ch = ChannelKind::Telegram;
        assert!(
            !store
                .event_processed(ch, &EventId::new("old"))
                .await
                .unwrap()
        );
        assert!(
            store
                .event_processed(ch, &EventId::new("new"))
                .await
                .unwrap()
        );
        assert_eq!(store.transcript(&k, 10).await.unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn migrating_twice_applies_nothing_the_second_time() {
    on_each_backend("migrating_twice_applies_nothing", |store| async move {
        // on_each_backend already migrated once.
        let report = store.migrate().await.unwrap();
        assert!(report.applied.is_empty(), "{report:?}");
        assert!(report.known >= 1);
    })
    .await;
}

#[tokio::test]
async fn a_limit_slides_across_the_hour_instead_of_starting_afresh_at_it() {
    on_each_backend("a_limit_slides_across_the_hour", |store| async move {
        let hour = 3_600_000;
        let before = 10 * hour - 1_000; // one second before the hour
        for i in 0..3 {
            assert!(matches!(
                store.hit("slide", 3600, 3, before + i).await.unwrap(),
                RateDecision::Allowed { .. }
            ));
        }
        // Clock-aligned windows let three more through here.
        let after = 10 * hour + 1_000;
        assert!(matches!(
            store.hit("slide", 3600, 3, after).await.unwrap(),
            RateDecision::Limited { .. }
        ));
        // One comes free every window / limit (20 minutes).
        assert!(matches!(
            store
                .hit("slide", 3600, 3, before + hour / 3 + 10)
                .await
                .unwrap(),
            RateDecision::Allowed { .. }
        ));
        assert!(matches!(
            store
                .hit("slide", 3600, 3, before + hour / 3 + 20)
                .await
                .unwrap(),
            RateDecision::Limited { .. }
        ));
    })
    .await;
}

#[tokio::test]
async fn rate_limits_survive_reopening_the_sqlite_file() {
    let db = SqliteDb::new();
    let store = db.open().await;
    let now = 7_200_000;
    for _ in 0..2 {
        store.hit("persist", 3600, 2, now).await.unwrap();
    }
    store.close().await;
    let reopened = db.open().await;
    assert!(matches!(
        reopened.hit("persist", 3600, 2, now).await.unwrap(),
        RateDecision::Limited { .. }
    ));
}

#[tokio::test]
async fn fifty_concurrent_sqlite_writers_never_see_busy() {
    let db = SqliteDb::new();
    // Two independent pools on one file stand in for two processes: the
    // in-process writer lock cannot serialise them, SQLite's busy wait must.
    let stores = [db.open().await, db.open().await];
    let mut tasks = Vec::new();
    for writer in 0..50 {
        let store: Arc<dyn Database> = stores[writer % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for i in 0..10 {
                // Ten writers share each conversation, so conflicts happen.
                let k = key(&format!("shared-{}", writer % 5));
                loop {
                    let current = store.load_conversation(&k).await.unwrap();
                    let version = current.map_or(0, |c| c.version);
                    let event = format!("w{writer}-{i}");
                    match store
                        .commit_turn(turn(conversation(&k, "s", version, i), Some(&event), "t"))
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict(_)) => conflicts += 1,
                        Err(other) => panic!("writer {writer} got {other}"),
                    }
                }
                match store.hit("shared-bucket", 60, 1_000_000, 1).await {
                    Ok(_) => {}
                    Err(other) => panic!("writer {writer} got {other}"),
                }
            }
            conflicts
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Every turn landed exactly once.
    let mut total = 0;
    for s in 0..5 {
        total += stores[0]
            .load_conversation(&key(&format!("shared-{s}")))
            .await
            .unwrap()
            .unwrap()
            .version;
    }
    assert_eq!(total, 50 * 10);
}

#[tokio::test]
async fn postgres_instances_starting_together_do_not_race_on_migrations() {
    let Some(base) = postgres_base_url("postgres_instances_starting_together") else {
        return;
    };
    let pg = PgDb::create(&base).await;
    let mut handles = Vec::new();
    for _ in 0..6 {
        let settings = pg.settings.clone();
        handles.push(tokio::spawn(async move {
            let store = recoverbot::store::open(&settings).await.unwrap();
            let report = store.migrate().await;
            store.close().await;
            report
        }));
    }
    for h in handles {
        h.await.unwrap().expect("every instance migrates cleanly");
    }
    let store = pg.open().await;
    let known = store.migrate().await.unwrap().known;
    store.close().await;
    let pool = sqlx::PgPool::connect(&pg.settings.url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    pg.drop_db().await;
    assert_eq!(rows as usize, known);
}

#[tokio::test]
async fn escalations_and_feedback_are_committed_with_the_turn() {
    on_each_backend(
        "escalations_and_feedback_are_committed",
        |store| async move {
            let k = key("esc");
            let mut t = turn(conversation(&k, "s", 0, 50), Some("esc-1"), "human please");
            t.escalations.push(EscalationRecord {
                id: "esc_abc".into(),
                key: k.clone(),
                reason: "user_asked".into(),
                topic: Some("two_factor".into()),
                created_at: 50,
            });
            t.feedback.push(FeedbackRecord {
                key: k.clone(),
                topic: "password_reset".into(),
                answer: "solved".into(),
                at: 50,
            });
            store.commit_turn(t).await.unwrap();
            let esc = store.recent_escalations(10).await.unwrap();
            assert_eq!(esc.len(), 1);
            assert_eq!(esc[0].id, "esc_abc");
            assert_eq!(esc[0].key, k);
            assert_eq!(esc[0].topic.as_deref(), Some("two_factor"));
            let fb = store.recent_feedback(10).await.unwrap();
            assert_eq!(fb.len(), 1);
            assert_eq!(
                (fb[0].topic.as_str(), fb[0].answer.as_str()),
                ("password_reset", "solved")
            );
            // A conflicting turn leaves no escalation behind.
            let mut stale = turn(conversation(&k, "s", 0, 60), Some("esc-2"), "again");
            stale.escalations.push(EscalationRecord {
                id: "esc_def".into(),
                key: k.clone(),
                reason: "user_asked".into(),
                topic: None,
                created_at: 60,
            });
            assert!(store.commit_turn(stale).await.is_err());
            assert_eq!(store.recent_escalations(10).await.unwrap().len(), 1);
        },
    )
    .await;
}

#[tokio::test]
async fn a_turn_loads_the_event_record_or_the_conversation_in_one_call() {
    on_each_backend("a_turn_loads_in_one_call", |store| async move {
        let k = key("lft");
        let (seen, conv) = store
            .load_for_turn(&k, Some(&EventId::new("l1")))
            .await
            .unwrap();
        assert!(seen.is_none() && conv.is_none());
        store
            .commit_turn(turn(conversation(&k, "s", 0, 1), Some("l1"), "x"))
            .await
            .unwrap();
        let (seen, _) = store
            .load_for_turn(&k, Some(&EventId::new("l1")))
            .await
            .unwrap();
        assert!(seen.is_some(), "a processed event is reported");
        let (seen, conv) = store
            .load_for_turn(&k, Some(&EventId::new("l2")))
            .await
            .unwrap();
        assert!(seen.is_none());
        assert_eq!(conv.unwrap().version, 1);
        let (_, conv) = store.load_for_turn(&k, None).await.unwrap();
        assert_eq!(conv.unwrap().step, "s");
    })
    .await;
}
