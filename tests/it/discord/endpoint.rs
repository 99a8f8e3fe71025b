//! The HTTP interactions endpoint: Ed25519 signatures over
//! timestamp || body; PING gets PONG; commands work as over the gateway.

use super::Rig;
use super::fake::{self, dm_channel_of};
use ed25519_dalek::{Signer, SigningKey};
use recoverbot::channels::discord::conversation_key;
use serde_json::{Value, json};

const TIMESTAMP: &str = "1735689600";

fn sign(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
    hex::encode(key.sign(&[timestamp.as_bytes(), body].concat()).to_bytes())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("X-Signature-Ed25519", s);
    }
    if let Some(t) = timestamp {
        req = req.header("X-Signature-Timestamp", t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_interactions_endpoint_checks_signatures_and_answers() {
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let port = free_port();
    let public = hex::encode(key.verifying_key().to_bytes());
    let rig = Rig::start_with(|s| {
        s.discord.interactions_endpoint = true;
        s.discord.interactions_listen = format!("127.0.0.1:{port}");
        s.discord.public_key = Some(public);
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/interactions");
    let http = reqwest::Client::new();

    let ping = json!({"id": "31", "application_id": fake::APP_ID.to_string(), "type": 1,
                      "token": "ping-token", "version": 1})
    .to_string()
    .into_bytes();
    let good = sign(&key, TIMESTAMP, &ping);

    // A valid signature: PONG.
    let (status, body) = post(&http, &url, Some(&good), Some(TIMESTAMP), &ping).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"type": 1})
    );

    // One flipped byte in the signature, in the body, in the timestamp.
    let mut bad = hex::decode(&good).unwrap();
    bad[10] ^= 0x01;
    let (status, _) = post(
        &http,
        &url,
        Some(&hex::encode(&bad)),
        Some(TIMESTAMP),
        &ping,
    )
    .await;
    assert_eq!(status, 401);
    let mut tampered = ping.clone();
    tampered[2] ^= 0x01;
    let (status, _) = post(&http, &url, Some(&good), Some(TIMESTAMP), &tampered).await;
    assert_eq!(status, 401);
    let (status, _) = post(&http, &url, Some(&good), Some("1735689601"), &ping).await;
    assert_eq!(status, 401);

    // A missing header.
    let (status, _) = post(&http, &url, None, Some(TIMESTAMP), &ping).await;
    assert_eq!(status, 401);
    let (status, _) = post(&http, &url, Some(&good), None, &ping).await;
    assert_eq!(status, 401);
    let (status, _) = post(&http, &url, Some("not hex"), Some(TIMESTAMP), &ping).await;
    assert_eq!(status, 401);

    // A signed /recover from a server: the ephemeral answer is the HTTP
    // response, the conversation goes to the DM.
    let id = rig.fake.new_id();
    let (_, payload) = rig
        .fake
        .command_payload(id, 1070, "recover", Some((4001, 2002)));
    let bytes = payload.to_string().into_bytes();
    let (status, body) = post(
        &http,
        &url,
        Some(&sign(&key, TIMESTAMP, &bytes)),
        Some(TIMESTAMP),
        &bytes,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["type"], 4, "{answer}");
    assert_eq!(answer["data"]["flags"], 64, "{answer}");
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .contains("direct message")
    );
    rig.wait_delivered(id).await;
    assert_eq!(rig.fake.messages_in(dm_channel_of(1070)).len(), 1);

    // A forged signature on the same command changes nothing.
    let id = rig.fake.new_id();
    let (_, payload) = rig
        .fake
        .command_payload(id, 1071, "recover", Some((4001, 2002)));
    let bytes = payload.to_string().into_bytes();
    let (status, _) = post(&http, &url, Some(&good), Some(TIMESTAMP), &bytes).await;
    assert_eq!(status, 401);
    // Refused before anything ran: no turn, no DM.
    assert!(
        rig.bot
            .engine()
            .position(&conversation_key(1071u64))
            .await
            .unwrap()
            .is_none()
    );
    assert!(rig.fake.messages_in(dm_channel_of(1071)).is_empty());
    rig.stop().await;
}
