//! Commands and mentions: what a text addressed to the bot asks for.

use crate::domain::ChannelKind;
use crate::engine::Input;
use crate::flow::FlowSet;
use teloxide::types::{Message, MessageEntityKind, UserId};

/// The commands registered with `setMyCommands` at start-up: the flows'
/// `[commands]` table, as offered on Telegram.
pub fn menu(flows: &FlowSet) -> Vec<(String, String)> {
    flows
        .commands_on(ChannelKind::Telegram)
        .map(|c| (c.name.clone(), c.description.clone()))
        .collect()
}

/// A `/command[@bot] [args]` at the start of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command<'a> {
    /// Lowercased, without the slash and the `@bot` suffix.
    pub name: String,
    /// The bot the command names (`/help@recover_bot`), if any.
    pub target: Option<&'a str>,
    /// The rest of the text, trimmed; `None` when empty.
    pub args: Option<&'a str>,
}

impl Command<'_> {
    /// Whether this command is for this bot: it names it, or no bot.
    pub fn is_for(&self, bot_username: &str) -> bool {
        self.target
            .is_none_or(|t| t.eq_ignore_ascii_case(bot_username))
    }
}

pub fn parse_command(text: &str) -> Option<Command<'_>> {
    let text = text.trim_start();
    let rest = text.strip_prefix('/')?;
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let (head, args) = rest.split_at(end);
    let (name, target) = match head.split_once('@') {
        Some((n, t)) => (n, Some(t)),
        None => (head, None),
    };
    if name.is_empty()
        || name.len() > 32
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let args = args.trim();
    Some(Command {
        name: name.to_ascii_lowercase(),
        target,
        args: (!args.is_empty()).then_some(args),
    })
}

/// A deep-link payload (`/start reset`) as an engine topic: a flow id, or
/// words its triggers match.
pub fn start_topic(payload: Option<&str>) -> Option<String> {
    let p = payload?.trim().to_ascii_lowercase();
    let topic = match p.as_str() {
        "" | "help" | "menu" | "start" => return None,
        "reset" | "password" | "forgot" | "forgot_password" | "password_reset" => "password_reset",
        "2fa" | "twofa" | "mfa" | "otp" | "authenticator" | "two_factor" | "lost_phone" => {
            "two_factor"
        }
        "login" | "locked" | "cant_login" | "wrong_password" => "wrong_password",
        "status" | "down" => "status",
        "human" | "support" | "agent" => "human",
        "security" | "phishing" | "hacked" => "security",
        "signup" | "verify" | "verify_email" => "signup",
        other => other,
    };
    Some(topic.to_string())
}

/// What a text in a private chat means to the engine: `/start [payload]`
/// is a (deep-link) start, any other command goes to the flows' command
/// table, the rest is text.
pub fn private_input(text: &str, bot_username: &str) -> Input {
    match parse_command(text) {
        Some(cmd) if cmd.is_for(bot_username) => match cmd.name.as_str() {
            "start" => Input::Start(start_topic(cmd.args)),
            _ => Input::Command {
                args: cmd.args.map(str::to_string),
                name: cmd.name,
            },
        },
        _ => Input::Text(text.to_string()),
    }
}

/// How a group message addresses the bot, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressed {
    /// `/name` or `/name@bot` (lowercased name).
    Command(String),
    /// `@bot` somewhere in the text, or a text mention of the bot.
    Mention,
}

/// Whether a group message is for this bot: a command (for no bot or for
/// this one) at the start, or a mention. Everything else is chatter.
pub fn addressed(msg: &Message, bot_username: &str, bot_id: UserId) -> Option<Addressed> {
    let text = msg.text().or_else(|| msg.caption())?;
    if let Some(cmd) = parse_command(text) {
        return cmd
            .is_for(bot_username)
            .then(|| Addressed::Command(cmd.name.clone()));
    }
    let entities = msg
        .parse_entities()
        .or_else(|| msg.parse_caption_entities())
        .unwrap_or_default();
    let mentioned = entities.iter().any(|e| match e.kind() {
        MessageEntityKind::Mention => e
            .text()
            .trim_start_matches('@')
            .eq_ignore_ascii_case(bot_username),
        MessageEntityKind::TextMention { user } => user.id == bot_id,
        _ => false,
    });
    // Without entities (an older client), a plain `@bot` still counts.
    let plain = entities.is_empty()
        && text
            .split(|c: char| c.is_whitespace() || c == ',' || c == ':')
            .any(|w| {
                w.strip_prefix('@')
                    .is_some_and(|n| n.eq_ignore_ascii_case(bot_username))
            });
    (mentioned || plain).then_some(Addressed::Mention)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_and_without_a_bot_name() {
        let c = parse_command("/start reset").unwrap();
        assert_eq!(
            (c.name.as_str(), c.target, c.args),
            ("start", None, Some("reset"))
        );
        let c = parse_command("/Help@Recover_Bot").unwrap();
        assert_eq!(c.name, "help");
        assert!(c.is_for("recover_bot"));
        assert!(
            !parse_command("/help@other_bot")
                .unwrap()
                .is_for("recover_bot")
        );
        assert!(parse_command("hello /help").is_none());
        assert!(parse_command("/").is_none());
        assert!(parse_command("/ä").is_none());
    }

    #[test]
    fn private_commands_map_to_engine_inputs() {
        let bot = "recover_bot";
        assert_eq!(private_input("/start", bot), Input::Start(None));
        assert_eq!(
            private_input("/start reset", bot),
            Input::Start(Some("password_reset".into()))
        );
        assert_eq!(
            private_input("/start 2fa", bot),
            Input::Start(Some("two_factor".into()))
        );
        let command = |name: &str, args: Option<&str>| Input::Command {
            name: name.into(),
            args: args.map(str::to_string),
        };
        for name in ["help", "status", "cancel", "human", "menu", "nonsense"] {
            assert_eq!(private_input(&format!("/{name}"), bot), command(name, None));
        }
        assert_eq!(
            private_input("/Human@Recover_Bot  please ", bot),
            command("human", Some("please"))
        );
        assert_eq!(
            private_input("/help@other_bot", bot),
            Input::Text("/help@other_bot".into())
        );
        assert_eq!(
            private_input("my password is hunter2", bot),
            Input::Text("my password is hunter2".into())
        );
    }

    #[test]
    fn the_command_menu_comes_from_the_flows_in_their_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
        let flows = crate::flow::load_dir(&dir).unwrap();
        let names: Vec<String> = menu(&flows).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            ["start", "help", "status", "stop", "cancel", "human"]
        );
        assert!(menu(&flows).iter().all(|(_, d)| !d.is_empty()));
    }
}
