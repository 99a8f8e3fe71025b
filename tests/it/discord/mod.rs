//! The Discord channel end to end: the real serenity client (gateway and
//! events) and the channel's REST sender, against a fake Discord
//! ([`fake`]) on loopback, with a full bot behind them (real flows, SQLite,
//! the account simulator).

mod fake;

mod conversation;
mod endpoint;
mod guild;
mod reliability;
mod status;

use crate::support::bot::TestBot;
use fake::{FakeDiscord, dm_channel_of};
use recoverbot::channels::discord;
use recoverbot::config::Settings;
use recoverbot::domain::{ChannelKind, EventId};
use recoverbot::shutdown::ShutdownTrigger;
use std::time::Duration;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(15);

/// A bot on Discord: the fake, the bot (engine, simulator), the channel.
pub struct Rig {
    pub fake: FakeDiscord,
    pub bot: TestBot,
    trigger: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<()>>,
    delivery: JoinHandle<()>,
}

impl Rig {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let fake = FakeDiscord::start().await;
        let url = fake.url.clone();
        let bot = TestBot::start_with(|s| {
            s.discord.enabled = true;
            s.discord.token = Some(fake::TOKEN.into());
            s.discord.api_url = url;
            tweak(s);
        })
        .await;
        let (trigger, shutdown) = recoverbot::shutdown::channel();
        let delivery = bot.app.spawn_delivery(shutdown.clone());
        bot.app.spawn_status(shutdown.clone());
        let task = tokio::spawn(discord::run(
            bot.app.engine.clone(),
            bot.app.delivery.clone(),
            bot.app.settings.discord.clone(),
            shutdown,
        ));
        fake.wait_ready().await;
        Self {
            fake,
            bot,
            trigger,
            task,
            delivery,
        }
    }

    /// Stops the channel; it must stop cleanly, and no REST call may have
    /// been malformed, unauthorised or sent to a route Discord lacks.
    pub async fn stop(self) {
        let broken: Vec<String> = self
            .fake
            .calls()
            .iter()
            .filter(|c| matches!(c.status, 400 | 401 | 404 | 405))
            .map(|c| format!("{} {} -> {}: {}", c.method, c.path, c.status, c.body))
            .collect();
        assert!(broken.is_empty(), "calls Discord would refuse: {broken:#?}");
        self.trigger.fire();
        let outcome = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the channel stops within 10 s")
            .expect("the channel task does not panic");
        outcome.expect("the channel stops without an error");
        let _ = self.delivery.await;
    }

    /// Waits until `event` was processed and everything queued was sent.
    pub async fn wait_delivered(&self, event: u64) {
        let id = EventId::new(event.to_string());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let store = &self.bot.app.store;
            let seen = store
                .processed_event(ChannelKind::Discord, &id)
                .await
                .unwrap();
            if seen.is_some() && store.open_chats(1).await.unwrap().is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the reply to event {event} was not delivered; calls: {:#?}",
                self.fake
                    .calls()
                    .iter()
                    .map(|c| format!("{} {} -> {}", c.method, c.path, c.status))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// One user talking to the bot in their DM.
    pub fn user(&self, id: u64) -> User<'_> {
        User { rig: self, id }
    }
}

pub struct User<'a> {
    pub rig: &'a Rig,
    pub id: u64,
}

impl User<'_> {
    pub fn dm(&self) -> u64 {
        dm_channel_of(self.id)
    }

    /// The bot's messages in this user's DM so far.
    pub fn messages(&self) -> Vec<fake::Msg> {
        self.rig.fake.messages_in(self.dm())
    }

    /// Sends a DM and waits for the bot's answer; returns the new messages.
    pub async fn say(&self, text: &str) -> Vec<fake::Msg> {
        let before = self.messages().len();
        let id = self.rig.fake.new_id();
        self.rig
            .fake
            .dispatch("MESSAGE_CREATE", fake::dm_message(id, self.id, text));
        self.rig.wait_delivered(id).await;
        self.messages()[before..].to_vec()
    }

    /// Presses the button labelled `label` on the newest message that has
    /// it; waits for the answer; returns the new messages.
    pub async fn press(&self, label: &str) -> Vec<fake::Msg> {
        let message = self.rig.fake.message_with_button(self.dm(), label);
        let custom_id = message.custom_id(label).unwrap();
        let before = self.messages().len();
        let id = self.rig.fake.new_id();
        self.rig.fake.press(id, self.id, &message, &custom_id);
        self.rig.wait_delivered(id).await;
        self.messages()[before..].to_vec()
    }
}

/// The text of messages, joined.
pub fn text(msgs: &[fake::Msg]) -> String {
    msgs.iter()
        .map(|m| m.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The button labels of the last message.
pub fn labels(msgs: &[fake::Msg]) -> Vec<String> {
    msgs.last().map(|m| m.labels()).unwrap_or_default()
}
