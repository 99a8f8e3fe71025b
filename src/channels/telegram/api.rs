//! The Bot API as the channel uses it: the real teloxide client, every call
//! paced by the [`Pacer`], 429s honoured for the whole bot, and errors
//! turned into words that never contain the request URL (it holds the
//! token) nor a response body (it may hold user text).

use super::pacing::{Pace, Pacer};
use crate::delivery::LaneCaps;
use crate::engine::Lane;
use crate::shutdown::Shutdown;
use secrecy::{ExposeSecret, SecretString};
use std::future::IntoFuture;
use std::time::Duration;
use teloxide::payloads::setters::*;
use teloxide::requests::Requester;
use teloxide::types::{
    AllowedUpdate, BotCommand, CallbackQueryId, ChatId, InlineKeyboardMarkup, LinkPreviewOptions,
    Me, MessageId, ParseMode, Update,
};
use teloxide::{ApiError, Bot, RequestError};

/// Calls that fail this many times in a row (429s included) give up.
const MAX_ATTEMPTS: u32 = 5;
/// The longest `retry_after` honoured in place; longer waits give up the
/// call (the update is retried later) rather than block a caller for long.
const MAX_IN_PLACE_WAIT: Duration = Duration::from_secs(120);

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Worth trying again later (network, Telegram overloaded, 429s).
    #[error("{0} (temporary)")]
    Transient(String),
    /// Will fail the same way again (chat gone, bot blocked, bad request).
    #[error("{0}")]
    Permanent(String),
    /// Harmless: the message is already gone, unchanged, or the callback
    /// query already answered.
    #[error("{0} (ignored)")]
    Ignorable(String),
    /// The token is wrong: nothing will work.
    #[error("Telegram rejected the bot token: check RECOVERBOT__TELEGRAM__TOKEN")]
    BadToken,
    /// Another process polls with this token, or a webhook is set.
    #[error("{0}")]
    Conflict(String),
    #[error("stopping")]
    Stopped,
}

impl CallError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_) | Self::Stopped | Self::Conflict(_))
    }
}

/// Maps a teloxide error to our words. The URL inside network errors is
/// dropped on purpose.
fn classify(e: &RequestError) -> CallError {
    match e {
        RequestError::RetryAfter(s) => {
            CallError::Transient(format!("rate limited for {} s", s.seconds()))
        }
        RequestError::Network(err) => CallError::Transient(
            if err.is_timeout() {
                "the request to Telegram timed out"
            } else if err.is_connect() {
                "cannot connect to the Telegram API"
            } else {
                "network error talking to Telegram"
            }
            .into(),
        ),
        RequestError::Io(_) => CallError::Transient("I/O error talking to Telegram".into()),
        RequestError::InvalidJson { .. } => {
            CallError::Transient("Telegram sent a response that could not be read".into())
        }
        RequestError::MigrateToChatId(_) => {
            CallError::Permanent("the group was upgraded to a supergroup".into())
        }
        RequestError::Api(api) => match api {
            ApiError::InvalidToken => CallError::BadToken,
            ApiError::MessageNotModified
            | ApiError::MessageCantBeDeleted
            | ApiError::MessageToDeleteNotFound
            | ApiError::MessageToEditNotFound
            | ApiError::MessageCantBeEdited
            | ApiError::InvalidQueryId => CallError::Ignorable(short(&api.to_string())),
            ApiError::TerminatedByOtherGetUpdates | ApiError::CantGetUpdates => {
                CallError::Conflict(short(&api.to_string()))
            }
            ApiError::Unknown(desc) => {
                let lower = desc.to_ascii_lowercase();
                if lower.starts_with("conflict") {
                    CallError::Conflict(short(desc))
                } else if lower.contains("internal server error")
                    || lower.contains("bad gateway")
                    || lower.contains("gateway timeout")
                    || lower.contains("service unavailable")
                    || lower.starts_with("too many requests")
                {
                    CallError::Transient(short(desc))
                } else {
                    CallError::Permanent(short(desc))
                }
            }
            other => CallError::Permanent(short(&other.to_string())),
        },
        // `RequestError` is non-exhaustive.
        #[allow(unreachable_patterns)]
        _ => CallError::Transient("error talking to Telegram".into()),
    }
}

/// Telegram's error descriptions are short; cap them anyway.
fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

pub struct Api {
    bot: Bot,
    pacer: Pacer,
    shutdown: Shutdown,
}

impl Api {
    /// `api_url` is the Bot API base (`https://api.telegram.org`, a local
    /// Bot API server, a test fake). The HTTP timeout outlasts a long poll.
    pub fn new(
        token: &SecretString,
        api_url: &str,
        poll_timeout_secs: u64,
        caps: LaneCaps,
        shutdown: Shutdown,
    ) -> anyhow::Result<Self> {
        // teloxide appends `/bot<token>/<Method>`; a trailing slash would
        // double it.
        let base = api_url.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(base)
            .map_err(|e| anyhow::anyhow!("telegram.api_url is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") {
            anyhow::bail!("telegram.api_url must be an http(s) URL");
        }
        let client = teloxide::net::default_reqwest_settings()
            .timeout(Duration::from_secs(poll_timeout_secs + 15))
            .build()
            .map_err(|_| anyhow::anyhow!("cannot build the HTTP client for Telegram"))?;
        let bot = Bot::with_client(token.expose_secret(), client).set_api_url(url);
        Ok(Self {
            bot,
            pacer: Pacer::with_caps(caps),
            shutdown,
        })
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// Runs one request with pacing and 429 handling, retrying temporary
    /// failures a few times.
    async fn call<T, F, Fut>(&self, what: &'static str, pace: Pace, make: F) -> Result<T, CallError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, RequestError>>,
    {
        let mut shutdown = self.shutdown.clone();
        let mut last = CallError::Transient("not tried".into());
        for attempt in 1..=MAX_ATTEMPTS {
            if let Some(until) = self.pacer.frozen_until()
                && until - tokio::time::Instant::now() > MAX_IN_PLACE_WAIT
            {
                return Err(CallError::Transient(format!(
                    "{what}: Telegram asked to wait too long"
                )));
            }
            tokio::select! {
                // A reply that may go now goes, even while stopping.
                biased;
                () = self.pacer.ready(pace) => {}
                () = shutdown.wait() => return Err(CallError::Stopped),
            }
            let err = match make().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if let RequestError::RetryAfter(s) = &err {
                let wait = s.duration().max(Duration::from_secs(1));
                let chat = match pace {
                    Pace::Message { chat, .. } => Some(chat),
                    Pace::Other => None,
                };
                tracing::warn!(
                    method = what,
                    retry_after_s = wait.as_secs(),
                    "Telegram flood limit: holding back the chat"
                );
                self.pacer.freeze(wait, chat);
                last = classify(&err);
                continue;
            }
            last = classify(&err);
            match &last {
                CallError::Transient(reason) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(method = what, %reason, attempt, "retrying");
                    let backoff = Duration::from_millis(250 << attempt.min(5));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.wait() => return Err(CallError::Stopped),
                    }
                }
                _ => return Err(last),
            }
        }
        Err(last)
    }

    pub async fn get_me(&self) -> Result<Me, CallError> {
        self.call("getMe", Pace::Other, || self.bot.get_me().into_future())
            .await
    }

    pub async fn set_my_commands(&self, commands: Vec<BotCommand>) -> Result<(), CallError> {
        self.call("setMyCommands", Pace::Other, || {
            self.bot.set_my_commands(commands.clone()).into_future()
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_webhook(&self) -> Result<(), CallError> {
        self.call("deleteWebhook", Pace::Other, || {
            self.bot.delete_webhook().into_future()
        })
        .await
        .map(|_| ())
    }

    pub async fn set_webhook(&self, url: &reqwest::Url, secret: &str) -> Result<(), CallError> {
        self.call("setWebhook", Pace::Other, || {
            self.bot
                .set_webhook(url.clone())
                .secret_token(secret.to_string())
                .allowed_updates(allowed_updates())
                .into_future()
        })
        .await
        .map(|_| ())
    }

    /// One long poll. Not retried here: the polling loop decides.
    pub async fn get_updates(
        &self,
        offset: Option<i32>,
        timeout_secs: u32,
        limit: u8,
    ) -> Result<Vec<Update>, CallError> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = self.pacer.ready(Pace::Other) => {}
            () = shutdown.wait() => return Err(CallError::Stopped),
        }
        let mut req = self
            .bot
            .get_updates()
            .timeout(timeout_secs)
            .limit(limit)
            .allowed_updates(allowed_updates());
        if let Some(o) = offset {
            req = req.offset(o);
        }
        match req.await {
            Ok(v) => Ok(v),
            Err(e) => {
                if let RequestError::RetryAfter(s) = &e {
                    self.pacer
                        .freeze(s.duration().max(Duration::from_secs(1)), None);
                }
                Err(classify(&e))
            }
        }
    }

    /// Tells Telegram that every update below `offset` is done, at
    /// shutdown: a short call that ignores the shutdown signal and returns
    /// at most one update, which stays unconfirmed.
    pub async fn confirm_offset(&self, offset: i32) {
        if self.pacer.frozen_until().is_some() {
            return;
        }
        let req = self.bot.get_updates().offset(offset).timeout(0).limit(1);
        if let Err(e) = req.await {
            tracing::debug!(error = %classify(&e), "could not confirm the last updates");
        }
    }

    pub async fn send_message(
        &self,
        chat: ChatId,
        group: bool,
        lane: Lane,
        html: &str,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<MessageId, CallError> {
        let pace = Pace::Message {
            chat: chat.0,
            group,
            lane,
        };
        self.call("sendMessage", pace, || {
            let mut req = self
                .bot
                .send_message(chat, html.to_string())
                .parse_mode(ParseMode::Html)
                .link_preview_options(LinkPreviewOptions {
                    is_disabled: true,
                    url: None,
                    prefer_small_media: false,
                    prefer_large_media: false,
                    show_above_text: false,
                });
            if let Some(kb) = &keyboard {
                req = req.reply_markup(kb.clone());
            }
            req.into_future()
        })
        .await
        .map(|m| m.id)
    }

    /// Replaces the text and keyboard of one of the bot's messages.
    pub async fn edit_message_text(
        &self,
        chat: ChatId,
        message: MessageId,
        html: &str,
        keyboard: Option<InlineKeyboardMarkup>,
    ) -> Result<(), CallError> {
        self.call("editMessageText", Pace::Other, || {
            let mut req = self
                .bot
                .edit_message_text(chat, message, html.to_string())
                .parse_mode(ParseMode::Html);
            if let Some(kb) = &keyboard {
                req = req.reply_markup(kb.clone());
            }
            req.into_future()
        })
        .await
        .map(|_| ())
    }

    /// Removes the inline keyboard of one of the bot's messages.
    pub async fn clear_keyboard(&self, chat: ChatId, message: MessageId) -> Result<(), CallError> {
        self.call("editMessageReplyMarkup", Pace::Other, || {
            self.bot
                .edit_message_reply_markup(chat, message)
                .reply_markup(InlineKeyboardMarkup::default())
                .into_future()
        })
        .await
        .map(|_| ())
    }

    pub async fn delete_message(&self, chat: ChatId, message: MessageId) -> Result<(), CallError> {
        self.call("deleteMessage", Pace::Other, || {
            self.bot.delete_message(chat, message).into_future()
        })
        .await
        .map(|_| ())
    }

    /// Answers a callback query (clears the spinner), with a short notice
    /// when given.
    pub async fn answer_callback(&self, id: &str, text: Option<&str>) -> Result<(), CallError> {
        self.call("answerCallbackQuery", Pace::Other, || {
            let mut req = self
                .bot
                .answer_callback_query(CallbackQueryId(id.to_string()));
            if let Some(t) = text {
                req = req.text(t.chars().take(200).collect::<String>());
            }
            req.into_future()
        })
        .await
        .map(|_| ())
    }
}

pub fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_classified() {
        let e = RequestError::Api(ApiError::MessageCantBeDeleted);
        assert!(matches!(classify(&e), CallError::Ignorable(_)));
        let e = RequestError::Api(ApiError::BotBlocked);
        assert!(matches!(classify(&e), CallError::Permanent(_)));
        let e = RequestError::Api(ApiError::InvalidToken);
        assert_eq!(classify(&e), CallError::BadToken);
        let e = RequestError::Api(ApiError::Unknown("Internal Server Error".into()));
        assert!(classify(&e).is_transient());
        let e = RequestError::Api(ApiError::Unknown(
            "Conflict: can't use getUpdates method while webhook is active".into(),
        ));
        assert!(matches!(classify(&e), CallError::Conflict(_)));
    }
}
