//! The slash commands, registered at start-up, globally or in the guilds of
//! `discord.guild_ids`: the flows' `[commands]` table as offered on Discord
//! (`/recover [topic]`, `/status`, `/help` in the shipped flows).

use super::Core;
use crate::domain::ChannelKind;
use crate::engine::Input;
use crate::flow::FlowSet;
use serenity::builder::{CreateCommand, CreateCommandOption};
use serenity::model::application::{
    CommandData, CommandOptionType, InstallationContext, InteractionContext,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const HELP: &str = "help";
/// The option of a `fresh` command (`/recover [topic]`): the topic to start.
const TOPIC: &str = "topic";
/// Discord's limit on an option's choices.
const MAX_CHOICES: usize = 25;

/// Shown by `/help` in a server, above "I've sent you a DM".
pub const HELP_TEXT: &str = "I help you get back into your account, privately in a DM:\n\
• `/recover`: start (optionally pick a topic)\n\
• `/status`: is the platform down?\n\
• `/stop`: stop status notifications\n\
• `/help`: this help and the menu";

/// The commands: usable in servers and in the bot's DM. A `fresh` command
/// gets an optional topic, with the topic flows as choices.
pub fn definitions(flows: &FlowSet) -> Vec<CreateCommand> {
    let mut topic =
        CreateCommandOption::new(CommandOptionType::String, TOPIC, "What's wrong? (optional)")
            .required(false);
    for id in flows.trigger_order.iter().take(MAX_CHOICES) {
        if let Some(flow) = flows.flow(id).filter(|f| !f.utility) {
            let name: String = flow.title.chars().take(100).collect();
            topic = topic.add_string_choice(name, flow.id.clone());
        }
    }
    flows
        .commands_on(ChannelKind::Discord)
        .map(|c| {
            let mut command = CreateCommand::new(c.name.clone())
                .description(c.description.clone())
                .contexts(vec![InteractionContext::Guild, InteractionContext::BotDm])
                .integration_types(vec![InstallationContext::Guild]);
            if c.fresh {
                command = command.add_option(topic.clone());
            }
            command
        })
        .collect()
}

/// The engine input a command stands for: the command, with its topic
/// option as the argument. The engine answers names it does not know.
pub fn input_for(data: &CommandData) -> Option<Input> {
    let topic = data
        .options
        .iter()
        .find(|o| o.name == TOPIC)
        .and_then(|o| o.value.as_str())
        .map(str::to_string);
    Some(Input::Command {
        name: data.name.to_ascii_lowercase(),
        args: topic,
    })
}

/// Registers the commands once per run (READY may come again after a full
/// reconnect), retrying a few times.
pub async fn register(core: &Core) {
    if core.commands_registered.swap(true, Ordering::SeqCst) {
        return;
    }
    let Some(app) = core.app_id.get().copied() else {
        tracing::warn!("no application id yet; slash commands not registered");
        core.commands_registered.store(false, Ordering::SeqCst);
        return;
    };
    let commands = definitions(&core.engine.flows());
    let targets: Vec<_> = if core.guilds.is_empty() {
        vec![None]
    } else {
        core.guilds.iter().copied().map(Some).collect()
    };
    for guild in targets {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=4 {
            match core.rest.set_commands(app, guild, &commands).await {
                Ok(()) => {
                    match guild {
                        Some(g) => tracing::info!(guild = %g, "slash commands registered"),
                        None => tracing::info!("slash commands registered globally"),
                    }
                    break;
                }
                Err(e) if attempt < 4 => {
                    tracing::warn!(error = %e, "registering slash commands failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => tracing::error!(error = %e, "could not register the slash commands"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped_flows() -> FlowSet {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
        crate::flow::load_dir(&dir).unwrap()
    }

    #[test]
    fn the_slash_commands_come_from_the_flows() {
        let flows = shipped_flows();
        let names: Vec<String> = definitions(&flows)
            .iter()
            .map(|c| serde_json::to_value(c).unwrap()["name"].to_string())
            .collect();
        assert_eq!(names, ["\"recover\"", "\"help\"", "\"status\"", "\"stop\""]);
        let recover = serde_json::to_value(&definitions(&flows)[0]).unwrap();
        assert_eq!(recover["options"][0]["name"], TOPIC);
        assert!(
            !recover["options"][0]["choices"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_server_help_names_every_slash_command() {
        for c in shipped_flows().commands_on(ChannelKind::Discord) {
            assert!(HELP_TEXT.contains(&format!("`/{}`", c.name)), "{}", c.name);
        }
    }
}
