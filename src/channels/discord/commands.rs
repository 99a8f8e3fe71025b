//! The slash commands: `/recover [topic]`, `/status`, `/help`, registered at
//! start-up, globally or in the guilds of `discord.guild_ids`.

use super::Core;
use crate::engine::Input;
use crate::flow::FlowSet;
use serenity::builder::{CreateCommand, CreateCommandOption};
use serenity::model::application::{
    CommandData, CommandOptionType, InstallationContext, InteractionContext,
};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub const RECOVER: &str = "recover";
pub const STATUS: &str = "status";
pub const HELP: &str = "help";
const TOPIC: &str = "topic";
/// Discord's limit on an option's choices.
const MAX_CHOICES: usize = 25;

/// Shown by `/help` in a server, above "I've sent you a DM".
pub const HELP_TEXT: &str = "I help you get back into your account, privately in a DM:\n\
• `/recover`: start (optionally pick a topic)\n\
• `/status`: is the platform down?\n\
• `/help`: this help and the menu";

/// The commands: usable in servers and in the bot's DM.
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
    let everywhere = |c: CreateCommand| {
        c.contexts(vec![InteractionContext::Guild, InteractionContext::BotDm])
            .integration_types(vec![InstallationContext::Guild])
    };
    vec![
        everywhere(
            CreateCommand::new(RECOVER)
                .description("Get back into your account (we continue privately, in a DM)")
                .add_option(topic),
        ),
        everywhere(CreateCommand::new(STATUS).description("Is the platform down right now?")),
        everywhere(CreateCommand::new(HELP).description("What I can help with")),
    ]
}

/// The engine input a command stands for; `None` for a command we don't know.
pub fn input_for(data: &CommandData) -> Option<Input> {
    match data.name.as_str() {
        RECOVER => {
            let topic = data
                .options
                .iter()
                .find(|o| o.name == TOPIC)
                .and_then(|o| o.value.as_str())
                .map(str::to_string);
            Some(Input::Start(topic))
        }
        STATUS => Some(Input::Text("status".into())),
        HELP => Some(Input::Text("menu".into())),
        _ => None,
    }
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
