//! The status watcher against a scripted status page (wiremock): it sends
//! the page's validators back and a 304 changes nothing; a failing page
//! stores nothing; a first look at an open incident announces it and tells
//! the engine's board.

use recoverbot::config::{AnnounceTarget, Impact};
use recoverbot::domain::{ChannelKind, ChatRef};
use recoverbot::engine::ports::{OutboxWaker, Store};
use recoverbot::engine::status::StatusBoard;
use recoverbot::status::{PageUrls, Status, StatusConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[derive(Default)]
struct Woken(Mutex<Vec<ChatRef>>);

impl OutboxWaker for Woken {
    fn wake(&self, chat: &ChatRef) {
        self.0.lock().unwrap().push(chat.clone());
    }
}

const SUMMARY: &str = r#"{
  "page": {"id": "p1", "name": "Example", "url": "https://status.example.com", "updated_at": "2026-12-01T10:00:00Z"},
  "status": {"indicator": "major", "description": "Partial System Outage"},
  "components": [{"id": "c1", "name": "Login", "status": "major_outage"}, {"id": "c2", "name": "API", "status": "operational"}],
  "incidents": [{"id": "inc1", "name": "Login failures", "status": "investigating", "impact": "major",
                 "shortlink": "https://stspg.io/x", "components": [{"id": "c1", "name": "Login", "status": "major_outage"}],
                 "incident_updates": [{"id": "u1", "status": "investigating", "body": "Logins fail.", "display_at": "2026-12-01T10:00:00Z"}]}],
  "scheduled_maintenances": []
}"#;

const CHANNEL: &str = "-100123";

fn watcher(
    page: &MockServer,
    store: Arc<dyn Store>,
) -> (Arc<Status>, Arc<StatusBoard>, Arc<Woken>) {
    let board = StatusBoard::new();
    let woken = Arc::new(Woken::default());
    let config = StatusConfig {
        urls: Some(PageUrls::new(&page.uri()).unwrap()),
        poll: Duration::from_secs(1),
        targets: vec![AnnounceTarget {
            channel: ChannelKind::Telegram,
            chat_id: CHANNEL.into(),
            components: Vec::new(),
            min_impact: Impact::Minor,
        }],
        login_components: vec!["Login".into()],
        holder: "test".into(),
    };
    let status = Status::new(store, board.clone(), woken.clone(), config).unwrap();
    (status, board, woken)
}

#[tokio::test]
async fn the_watcher_sends_the_pages_validators_and_a_304_changes_nothing() {
    let page = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .and(header("if-none-match", "\"v1\""))
        .respond_with(ResponseTemplate::new(304))
        .with_priority(1)
        .mount(&page)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v2/summary.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("ETag", "\"v1\"")
                .insert_header("Content-Type", "application/json")
                .set_body_string(SUMMARY),
        )
        .with_priority(2)
        .mount(&page)
        .await;
    let store: Arc<dyn Store> = Arc::new(recoverbot::store::MemoryStore::new());
    let (status, board, woken) = watcher(&page, store.clone());
    assert_eq!(board.condition(), "unknown");

    status.poll_once().await.unwrap();
    let record = store.status_record().await.unwrap().unwrap();
    assert_eq!(
        (record.version, record.etag.as_deref()),
        (1, Some("\"v1\""))
    );
    assert_eq!(board.condition(), "login_incident");
    assert_eq!(
        board.login_incident().unwrap().latest_update,
        "Logins fail."
    );
    let channel = ChatRef::new(ChannelKind::Telegram, CHANNEL);
    assert_eq!(
        store.chat_outbox(&channel).await.unwrap().len(),
        1,
        "announced"
    );
    assert_eq!(*woken.0.lock().unwrap(), vec![channel.clone()]);

    status.poll_once().await.unwrap();
    let requests = page.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1]
            .headers
            .get("if-none-match")
            .map(|v| v.to_str().unwrap()),
        Some("\"v1\"")
    );
    assert_eq!(
        store.status_record().await.unwrap().unwrap().version,
        1,
        "304: nothing new"
    );
    assert_eq!(store.chat_outbox(&channel).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_failing_page_stores_nothing_and_says_why() {
    let page = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&page)
        .await;
    let store: Arc<dyn Store> = Arc::new(recoverbot::store::MemoryStore::new());
    let (status, board, _) = watcher(&page, store.clone());
    let e = status.poll_once().await.unwrap_err();
    assert_eq!(e.to_string(), "the status page answered HTTP 503");
    assert_eq!(store.status_record().await.unwrap(), None);
    assert_eq!(board.condition(), "unknown");
}
