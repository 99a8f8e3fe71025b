//! Groups and supergroups: the bot answers only its commands and mentions,
//! never discusses an account there, and points to a private chat (deep
//! links) for anything personal. No conversation is involved: the answer
//! is queued for delivery with the update's id (so it survives a restart
//! and is never sent twice).

use super::commands::Addressed;
use super::render::deep_link;
use crate::engine::OutButton;

const INTRO: &str = "I help people who can't get into their account. Account problems are personal, so I only handle them in a private chat with you: tap a button below.";
const STATUS: &str =
    "To check whether the site is down, or why you can't log in, open a private chat with me:";
const HUMAN: &str =
    "To reach a person from the support team, open a private chat with me and I'll hand you over:";
const CANCEL: &str = "There is nothing to cancel here: I only hold conversations in private chats.";
const PRIVACY: &str = "Please keep passwords, codes and other personal details out of this group.";
const SECRET_WARNING: &str = "⚠️ That message looked like it held a password or a code. I tried to remove it. If it was real, change it now.";

/// The reply to a group message addressed to the bot: plain text and deep
/// links into a private chat.
pub fn reply(
    addressed: &Addressed,
    bot_username: &str,
    pasted_secret: bool,
) -> (String, Vec<OutButton>) {
    let (lead, links): (&str, &[(&str, &str)]) = match addressed {
        Addressed::Command(c) if c == "status" => (
            STATUS,
            &[
                ("Is the site down?", "status"),
                ("Open a private chat", "help"),
            ],
        ),
        Addressed::Command(c) if c == "human" => (
            HUMAN,
            &[
                ("Talk to a person", "human"),
                ("Open a private chat", "help"),
            ],
        ),
        Addressed::Command(c) if c == "cancel" => (CANCEL, &[("Open a private chat", "help")]),
        _ => (
            INTRO,
            &[
                ("Open a private chat", "help"),
                ("Reset my password", "reset"),
                ("2FA code problems", "2fa"),
            ],
        ),
    };
    let mut text = String::new();
    if pasted_secret {
        text.push_str(SECRET_WARNING);
        text.push_str("\n\n");
    }
    text.push_str(lead);
    text.push_str("\n\n");
    text.push_str(PRIVACY);
    let buttons = links
        .iter()
        .filter_map(|(label, payload)| {
            deep_link(bot_username, payload).map(|u| OutButton::link(*label, u.as_str()))
        })
        .collect();
    (text, buttons)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_replies_link_to_a_private_chat_and_ask_for_nothing() {
        for a in [
            Addressed::Mention,
            Addressed::Command("help".into()),
            Addressed::Command("status".into()),
            Addressed::Command("human".into()),
            Addressed::Command("cancel".into()),
        ] {
            let (text, buttons) = reply(&a, "recover_bot", false);
            assert!(!text.to_lowercase().contains("e-mail"), "{text}");
            assert!(!buttons.is_empty());
            assert!(buttons.iter().all(|b| b.link_url().is_some()));
        }
    }
}
