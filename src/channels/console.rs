//! The local console: `recoverbot chat`.
//!
//! Interactive on a terminal (buttons are numbered; type the number or the
//! label; `/help`, `/cancel` and the other commands of the flows work), one
//! message per line when piped, and `--jsonl` for scripts (text as typed):
//! input lines `{"text": "..."}` or `{"press": "<label>"}`, one output line
//! per reply `{"text", "buttons", "flow", "step", ...}`.
//!
//! Like every channel it only hands turns to the engine; what it prints
//! comes back through delivery ([`ConsoleTransport`](super::console_transport::ConsoleTransport)),
//! collected per turn so each reply prints as one block (or one line).

use super::console_transport::Shown;
use crate::domain::{ChannelKind, ConversationKey, MessageRef};
use crate::engine::{Engine, Inbound, Input, OutButton, Outbound, Reply};
use crate::flow::model::valid_command_name;
use crate::simulator::SimMail;
use serde::Deserialize;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc};

/// How long a turn's messages may take to come back from delivery.
const DELIVERY_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    Interactive,
    Lines,
    Jsonl,
}

impl ConsoleMode {
    pub fn detect(jsonl: bool) -> Self {
        if jsonl {
            Self::Jsonl
        } else if std::io::stdin().is_terminal() {
            Self::Interactive
        } else {
            Self::Lines
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonInput {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    press: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct JsonReply<'a> {
    text: &'a str,
    buttons: Vec<&'a str>,
    flow: &'a str,
    step: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notice: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted_your_message: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

pub struct Console {
    engine: Arc<Engine>,
    /// What delivery sent to this console, in order.
    shown: mpsc::UnboundedReceiver<Shown>,
    /// Mails of the in-process account simulator, shown after each reply.
    sim_mail: Option<broadcast::Receiver<SimMail>>,
    key: ConversationKey,
    mode: ConsoleMode,
    buttons: Vec<OutButton>,
    line_no: u64,
}

impl Console {
    pub fn new(
        engine: Arc<Engine>,
        shown: mpsc::UnboundedReceiver<Shown>,
        user: &str,
        mode: ConsoleMode,
    ) -> Self {
        Self {
            engine,
            shown,
            sim_mail: None,
            key: ConversationKey::new(ChannelKind::Console, "console", user),
            mode,
            buttons: Vec::new(),
            line_no: 0,
        }
    }

    /// Shows the simulator's mails in the conversation, clearly marked.
    pub fn with_simulated_mail(mut self, mails: broadcast::Receiver<SimMail>) -> Self {
        self.sim_mail = Some(mails);
        self
    }

    /// Reads stdin until EOF (or `shutdown`), writing replies to stdout.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let mut out = tokio::io::stdout();
        let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
        let mut number = 0usize;
        if self.mode == ConsoleMode::Interactive {
            out.write_all(
                b"recoverbot console. Describe your problem (e.g. \"I forgot my password\"), or type \"menu\". Ctrl-D quits.\n",
            )
            .await?;
            self.prompt(&mut out).await?;
        }
        tokio::pin!(shutdown);
        loop {
            let line = tokio::select! {
                line = lines.next_segment() => line?,
                () = &mut shutdown => None,
            };
            let Some(bytes) = line else { break };
            number += 1;
            // A bad line is reported with its number; the next one is read.
            let line = match String::from_utf8(bytes) {
                Ok(line) => line,
                Err(_) => {
                    let problem = format!("line {number}: not valid UTF-8");
                    self.write_error(&mut out, &problem).await?;
                    if self.mode == ConsoleMode::Interactive {
                        self.prompt(&mut out).await?;
                    }
                    continue;
                }
            };
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.trim().is_empty() {
                // One answer per line, so a script stays in step.
                self.write_error(&mut out, BLANK_LINE).await?;
                if self.mode == ConsoleMode::Interactive {
                    self.prompt(&mut out).await?;
                }
                continue;
            }
            match self
                .input_from(line)
                .map_err(|problem| format!("line {number}: {problem}"))
            {
                Ok(input) => self.turn(&mut out, input).await?,
                Err(problem) => {
                    self.write_error(&mut out, &problem).await?;
                }
            }
            if self.mode == ConsoleMode::Interactive {
                self.prompt(&mut out).await?;
            }
        }
        out.flush().await?;
        Ok(())
    }

    async fn prompt<W: AsyncWrite + Unpin>(&self, out: &mut W) -> std::io::Result<()> {
        out.write_all(b"you> ").await?;
        out.flush().await
    }

    /// Turns a line into engine input: a button number or label becomes a
    /// press of that button of the latest reply.
    fn input_from(&self, line: &str) -> Result<Input, String> {
        let (text, press) = if self.mode == ConsoleMode::Jsonl {
            let parsed: JsonInput = serde_json::from_str(line).map_err(|e| {
                format!("not JSON: bad input line (expected {{\"text\": ...}} or {{\"press\": ...}}): {e}")
            })?;
            match (parsed.text, parsed.press) {
                (Some(t), None) => (Some(t), None),
                (None, Some(p)) => (None, Some(p)),
                _ => return Err("give exactly one of \"text\" or \"press\"".into()),
            }
        } else {
            (Some(line.trim().to_string()), None)
        };
        if let Some(label) = press {
            let wanted = label.trim().to_lowercase();
            return self
                .buttons
                .iter()
                .find(|b| b.label.to_lowercase() == wanted)
                .map(|b| Input::Button(b.payload.clone()))
                .ok_or_else(|| format!("no button {label:?} in the latest reply"));
        }
        let text = text.unwrap_or_default();
        if self.mode != ConsoleMode::Jsonl {
            if let Ok(n) = text.parse::<usize>()
                && let Some(b) = n.checked_sub(1).and_then(|i| self.buttons.get(i))
            {
                return Ok(Input::Button(b.payload.clone()));
            }
            if let Some(b) = self
                .buttons
                .iter()
                .find(|b| b.label.eq_ignore_ascii_case(&text))
            {
                return Ok(Input::Button(b.payload.clone()));
            }
            if let Some(command) = command_input(&text) {
                return Ok(command);
            }
        }
        Ok(Input::Text(text))
    }

    async fn turn<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut W,
        input: Input,
    ) -> anyhow::Result<()> {
        self.line_no += 1;
        let inbound = Inbound {
            key: self.key.clone(),
            event_id: None,
            message_id: Some(MessageRef::new(format!("line-{}", self.line_no))),
            locale: None,
            input,
        };
        match self.engine.handle(inbound).await {
            Ok(reply) => {
                let shown = self.delivered(&reply).await;
                if !shown.buttons().is_empty() || shown.text().is_some() {
                    self.buttons = shown.buttons().to_vec();
                }
                self.write_reply(out, &reply, &shown).await?;
                self.write_mails(out).await?;
            }
            Err(e) => {
                tracing::error!(error = %e, "turn failed");
                self.write_error(out, "something went wrong on my side; please try again")
                    .await?;
            }
        }
        Ok(())
    }

    /// The turn's messages as delivery sent them: one item per queued
    /// action (every action but the notice, which is the console's own
    /// acknowledgement).
    async fn delivered(&mut self, reply: &Reply) -> Delivered {
        let expected = reply
            .actions
            .iter()
            .filter(|a| !matches!(a, Outbound::Notice { .. }))
            .count();
        let mut items = Vec::with_capacity(expected);
        while items.len() < expected {
            match tokio::time::timeout(DELIVERY_WAIT, self.shown.recv()).await {
                Ok(Some(item)) => items.push(item),
                _ => {
                    tracing::warn!("a reply did not come back from delivery in time");
                    break;
                }
            }
        }
        Delivered(items)
    }

    async fn write_reply<W: AsyncWrite + Unpin>(
        &self,
        out: &mut W,
        reply: &Reply,
        shown: &Delivered,
    ) -> std::io::Result<()> {
        let notice = reply.notice();
        let deleted = shown.0.contains(&Shown::Deleted);
        let mut s = String::new();
        match self.mode {
            ConsoleMode::Jsonl => {
                let line = JsonReply {
                    text: shown.text().unwrap_or_default(),
                    buttons: shown.buttons().iter().map(|b| b.label.as_str()).collect(),
                    flow: &reply.flow,
                    step: &reply.step,
                    notice,
                    deleted_your_message: deleted,
                    error: None,
                };
                s = serde_json::to_string(&line).unwrap_or_default();
                s.push('\n');
            }
            ConsoleMode::Interactive | ConsoleMode::Lines => {
                if deleted {
                    s.push_str("(your message was removed from the transcript)\n");
                }
                if let Some(n) = notice {
                    s.push_str(&format!("[{n}]\n"));
                }
                if let Some(text) = shown.text() {
                    for (i, line) in text.lines().enumerate() {
                        s.push_str(if i == 0 { "bot> " } else { "     " });
                        s.push_str(line);
                        s.push('\n');
                    }
                }
                for (i, b) in shown.buttons().iter().enumerate() {
                    s.push_str(&format!("     [{}] {}\n", i + 1, b.label));
                }
            }
        }
        out.write_all(s.as_bytes()).await?;
        out.flush().await
    }

    async fn write_mails<W: AsyncWrite + Unpin>(&mut self, out: &mut W) -> std::io::Result<()> {
        let Some(rx) = &mut self.sim_mail else {
            return Ok(());
        };
        let mut s = String::new();
        while let Ok(mail) = rx.try_recv() {
            if self.mode == ConsoleMode::Jsonl {
                s.push_str(&serde_json::json!({ "simulator_mail": mail }).to_string());
                s.push('\n');
            } else {
                s.push_str("  ┌─ SIMULATED MAIL (from the built-in account simulator; no real e-mail was sent)\n");
                s.push_str(&format!(
                    "  │ To: {}\n  │ Subject: {}\n",
                    mail.to, mail.subject
                ));
                for line in mail.body.lines() {
                    s.push_str(&format!("  │ {line}\n"));
                }
                s.push_str("  └─\n");
            }
        }
        out.write_all(s.as_bytes()).await?;
        out.flush().await
    }

    async fn write_error<W: AsyncWrite + Unpin>(
        &self,
        out: &mut W,
        problem: &str,
    ) -> std::io::Result<()> {
        let s = match self.mode {
            ConsoleMode::Jsonl => {
                let line = JsonReply {
                    text: "",
                    buttons: Vec::new(),
                    flow: "",
                    step: "",
                    notice: None,
                    deleted_your_message: false,
                    error: Some(problem),
                };
                format!("{}\n", serde_json::to_string(&line).unwrap_or_default())
            }
            _ => format!("[{problem}]\n"),
        };
        out.write_all(s.as_bytes()).await?;
        out.flush().await
    }
}

/// The answer to an empty line.
const BLANK_LINE: &str =
    "that line was empty: describe your problem in a few words, or type \"menu\"";

/// What delivery showed for one turn.
struct Delivered(Vec<Shown>);

impl Delivered {
    /// The text of the first message.
    fn text(&self) -> Option<&str> {
        self.0.iter().find_map(|s| match s {
            Shown::Message { text, .. } => Some(text.as_str()),
            Shown::Notice(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// The buttons of the last message.
    fn buttons(&self) -> &[OutButton] {
        self.0
            .iter()
            .rev()
            .find_map(|s| match s {
                Shown::Message { buttons, .. } => Some(buttons.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// `/name [args]` as a command, when `name` could be one.
fn command_input(text: &str) -> Option<Input> {
    let rest = text.trim().strip_prefix('/')?;
    let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let name = name.to_ascii_lowercase();
    valid_command_name(&name).then(|| Input::Command {
        name,
        args: Some(args.trim().to_string()).filter(|a| !a.is_empty()),
    })
}
