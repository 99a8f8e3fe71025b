//! Webhook mode: the secret token is checked on every request.

use super::fake_server::{TgChat, TgUser};
use super::harness::Harness;
use recoverbot::config::TelegramMode;
use reqwest::StatusCode;

const SECRET: &str = "s3cret-Token_1";
const URL: &str = "https://bot.example.test/tg/hook";

#[tokio::test]
async fn webhook_requests_need_the_secret_and_are_processed_once() {
    let h = Harness::start_with(|s| {
        s.telegram.mode = TelegramMode::Webhook;
        s.telegram.webhook_url = Some(URL.into());
        s.telegram.webhook_secret = Some(SECRET.into());
    })
    .await;
    let hook = h.fake.webhook().expect("the webhook is registered");
    assert_eq!(hook.url, URL);
    assert_eq!(hook.secret.as_deref(), Some(SECRET));
    let set = h.fake.calls_of("setWebhook");
    assert_eq!(
        set[0].params["allowed_updates"],
        serde_json::json!(["message", "callback_query"])
    );

    let u = TgUser::new(11101, "Web");
    let id = h.fake.user_says(&u, &TgChat::Private, "/start");
    let update = h.fake.update_json(id);
    for secret in [None, Some("wrong"), Some("s3cret-Token_")] {
        assert_eq!(
            h.post_update(&update, secret).await,
            StatusCode::UNAUTHORIZED,
            "{secret:?}"
        );
    }
    assert!(h.fake.messages_to(u.id).is_empty(), "nothing processed");
    assert!(h.position(&u).await.is_none(), "no turn was taken");

    // The 200 comes once the turn is committed; the reply follows.
    assert_eq!(h.post_update(&update, Some(SECRET)).await, StatusCode::OK);
    h.settled().await;
    assert_eq!(h.fake.messages_to(u.id).len(), 1, "answered");
    // Telegram retries a delivery it thinks failed: still one reply.
    assert_eq!(h.post_update(&update, Some(SECRET)).await, StatusCode::OK);
    h.settled().await;
    assert_eq!(h.fake.messages_to(u.id).len(), 1);

    let press = h.fake.press(&u, "I can't log in");
    assert_eq!(
        h.post_update(&h.fake.update_json(press), Some(SECRET))
            .await,
        StatusCode::OK
    );
    h.settled().await;
    assert_eq!(h.fake.messages_to(u.id).len(), 2);
    assert!(h.fake.callback_answer(press).is_some());
    assert_eq!(
        h.position(&u).await.unwrap(),
        ("wrong_password".into(), "start".into())
    );
    assert!(h.fake.calls_of("getUpdates").is_empty(), "no polling");
    h.assert_spec_clean();
}

#[tokio::test]
async fn polling_removes_a_webhook_left_from_an_earlier_deployment() {
    let mut h = Harness::start().await;
    h.stop().await;
    h.fake.force_webhook(URL);
    h.launch().await;
    assert!(h.fake.webhook().is_none());
    let u = TgUser::new(11201, "Back");
    let r = h.say(&u, "/start").await;
    assert_eq!(r.len(), 1);
    h.assert_spec_clean();
}
