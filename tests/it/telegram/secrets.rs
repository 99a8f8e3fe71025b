//! A secret pasted in a private chat is deleted there and never stored.

use super::fake_server::{TgChat, TgUser};
use super::harness::Harness;
use crate::support::db::{contains, database_bytes};

#[tokio::test]
async fn a_pasted_password_is_deleted_warned_about_and_not_stored() {
    let h = Harness::start().await;
    let u = TgUser::new(10101, "Pat");
    h.say(&u, "I forgot my password").await;
    let id = h
        .fake
        .user_says(&u, &TgChat::Private, "my password is Sup3r-Secret!pw");
    let message_id = h.fake.update_json(id)["message"]["message_id"]
        .as_i64()
        .unwrap();
    h.fake.wait_done(id).await;
    h.settled().await;

    let deletes = h.fake.calls_of("deleteMessage");
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].params["message_id"], message_id);
    assert_eq!(deletes[0].status, 200);
    assert!(h.fake.user_message(u.id, message_id).unwrap().deleted);
    let last = h.fake.messages_to(u.id).pop().unwrap();
    assert!(
        last.text.contains("never share your password"),
        "{}",
        last.text
    );

    let transcript = h
        .engine()
        .store()
        .transcript(&Harness::key(&u), 50)
        .await
        .unwrap();
    assert!(
        transcript
            .iter()
            .any(|e| e.text.contains("[redacted password]"))
    );
    assert!(transcript.iter().all(|e| !e.text.contains("Sup3r-Secret")));
    assert!(!contains(&database_bytes(&h.db), "Sup3r-Secret!pw"));
    h.assert_spec_clean();
}
