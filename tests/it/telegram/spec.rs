//! The part of the Telegram Bot API that the fake server speaks, transcribed
//! from the machine-readable spec in the public repository
//! PaulSonOfLars/telegram-bot-api-spec (`api.json`, MIT; "Bot API 7.2",
//! March 31, 2024, commit f6ae227f9358ef2684e302be6761ae5cc600e730), which
//! is scraped from core.telegram.org/bots/api.
//!
//! For each method: its parameters, which are required, their types, and
//! the result type. For each type the fake produces: its fields, which are
//! required, their types. The fake checks every request against
//! [`METHODS`] and every object it answers with against [`TYPES`]; tests
//! assert that no violation was recorded.
//!
//! Newer than 7.2, added by hand: `User.has_main_web_app` (Bot API 8.0; teloxide
//! 0.17 requires it in getMe) and `User.can_connect_to_business` (7.2
//! already; listed for completeness).

use serde_json::Value;

pub struct Field {
    pub name: &'static str,
    pub required: bool,
    /// As the spec writes it: `Integer`, `String`, `Boolean`,
    /// `Array of X`, a type name, or alternatives joined by `|`.
    pub ty: &'static str,
}

const fn req(name: &'static str, ty: &'static str) -> Field {
    Field {
        name,
        required: true,
        ty,
    }
}

const fn opt(name: &'static str, ty: &'static str) -> Field {
    Field {
        name,
        required: false,
        ty,
    }
}

pub struct Method {
    pub name: &'static str,
    pub params: &'static [Field],
    pub returns: &'static str,
}

pub const METHODS: &[Method] = &[
    Method {
        name: "getUpdates",
        params: &[
            opt("offset", "Integer"),
            opt("limit", "Integer"),
            opt("timeout", "Integer"),
            opt("allowed_updates", "Array of String"),
        ],
        returns: "Array of Update",
    },
    Method {
        name: "setWebhook",
        params: &[
            req("url", "String"),
            opt("certificate", "InputFile"),
            opt("ip_address", "String"),
            opt("max_connections", "Integer"),
            opt("allowed_updates", "Array of String"),
            opt("drop_pending_updates", "Boolean"),
            opt("secret_token", "String"),
        ],
        returns: "Boolean",
    },
    Method {
        name: "deleteWebhook",
        params: &[opt("drop_pending_updates", "Boolean")],
        returns: "Boolean",
    },
    Method {
        name: "getMe",
        params: &[],
        returns: "User",
    },
    Method {
        name: "sendMessage",
        params: &[
            opt("business_connection_id", "String"),
            req("chat_id", "Integer|String"),
            opt("message_thread_id", "Integer"),
            req("text", "String"),
            opt("parse_mode", "String"),
            opt("entities", "Array of MessageEntity"),
            opt("link_preview_options", "LinkPreviewOptions"),
            opt("disable_notification", "Boolean"),
            opt("protect_content", "Boolean"),
            opt("reply_parameters", "ReplyParameters"),
            opt(
                "reply_markup",
                "InlineKeyboardMarkup|ReplyKeyboardMarkup|ReplyKeyboardRemove|ForceReply",
            ),
        ],
        returns: "Message",
    },
    Method {
        name: "editMessageText",
        params: &[
            opt("business_connection_id", "String"),
            opt("chat_id", "Integer|String"),
            opt("message_id", "Integer"),
            opt("inline_message_id", "String"),
            req("text", "String"),
            opt("parse_mode", "String"),
            opt("entities", "Array of MessageEntity"),
            opt("link_preview_options", "LinkPreviewOptions"),
            opt("reply_markup", "InlineKeyboardMarkup"),
        ],
        returns: "Message|Boolean",
    },
    Method {
        name: "editMessageReplyMarkup",
        params: &[
            opt("chat_id", "Integer|String"),
            opt("message_id", "Integer"),
            opt("inline_message_id", "String"),
            opt("reply_markup", "InlineKeyboardMarkup"),
        ],
        returns: "Message|Boolean",
    },
    Method {
        name: "deleteMessage",
        params: &[
            req("chat_id", "Integer|String"),
            req("message_id", "Integer"),
        ],
        returns: "Boolean",
    },
    Method {
        name: "answerCallbackQuery",
        params: &[
            req("callback_query_id", "String"),
            opt("text", "String"),
            opt("show_alert", "Boolean"),
            opt("url", "String"),
            opt("cache_time", "Integer"),
        ],
        returns: "Boolean",
    },
    Method {
        name: "setMyCommands",
        params: &[
            req("commands", "Array of BotCommand"),
            opt("scope", "BotCommandScope"),
            opt("language_code", "String"),
        ],
        returns: "Boolean",
    },
];

pub struct Type {
    pub name: &'static str,
    pub fields: &'static [Field],
}

pub const TYPES: &[Type] = &[
    Type {
        name: "Update",
        fields: &[
            req("update_id", "Integer"),
            opt("message", "Message"),
            opt("edited_message", "Message"),
            opt("channel_post", "Message"),
            opt("edited_channel_post", "Message"),
            opt("business_connection", "BusinessConnection"),
            opt("business_message", "Message"),
            opt("edited_business_message", "Message"),
            opt("deleted_business_messages", "BusinessMessagesDeleted"),
            opt("message_reaction", "MessageReactionUpdated"),
            opt("message_reaction_count", "MessageReactionCountUpdated"),
            opt("inline_query", "InlineQuery"),
            opt("chosen_inline_result", "ChosenInlineResult"),
            opt("callback_query", "CallbackQuery"),
            opt("shipping_query", "ShippingQuery"),
            opt("pre_checkout_query", "PreCheckoutQuery"),
            opt("poll", "Poll"),
            opt("poll_answer", "PollAnswer"),
            opt("my_chat_member", "ChatMemberUpdated"),
            opt("chat_member", "ChatMemberUpdated"),
            opt("chat_join_request", "ChatJoinRequest"),
            opt("chat_boost", "ChatBoostUpdated"),
            opt("removed_chat_boost", "ChatBoostRemoved"),
        ],
    },
    Type {
        name: "User",
        fields: &[
            req("id", "Integer"),
            req("is_bot", "Boolean"),
            req("first_name", "String"),
            opt("last_name", "String"),
            opt("username", "String"),
            opt("language_code", "String"),
            opt("is_premium", "Boolean"),
            opt("added_to_attachment_menu", "Boolean"),
            opt("can_join_groups", "Boolean"),
            opt("can_read_all_group_messages", "Boolean"),
            opt("supports_inline_queries", "Boolean"),
            opt("can_connect_to_business", "Boolean"),
            opt("has_main_web_app", "Boolean"),
        ],
    },
    Type {
        name: "Chat",
        fields: &[
            req("id", "Integer"),
            req("type", "String"),
            opt("title", "String"),
            opt("username", "String"),
            opt("first_name", "String"),
            opt("last_name", "String"),
            opt("is_forum", "Boolean"),
        ],
    },
    Type {
        // The fields the fake uses, and every required one.
        name: "Message",
        fields: &[
            req("message_id", "Integer"),
            opt("message_thread_id", "Integer"),
            opt("from", "User"),
            opt("sender_chat", "Chat"),
            req("date", "Integer"),
            req("chat", "Chat"),
            opt("is_topic_message", "Boolean"),
            opt("reply_to_message", "Message"),
            opt("via_bot", "User"),
            opt("edit_date", "Integer"),
            opt("has_protected_content", "Boolean"),
            opt("author_signature", "String"),
            opt("text", "String"),
            opt("entities", "Array of MessageEntity"),
            opt("photo", "Array of PhotoSize"),
            opt("link_preview_options", "LinkPreviewOptions"),
            opt("caption", "String"),
            opt("caption_entities", "Array of MessageEntity"),
            opt("reply_markup", "InlineKeyboardMarkup"),
        ],
    },
    Type {
        name: "PhotoSize",
        fields: &[
            req("file_id", "String"),
            req("file_unique_id", "String"),
            req("width", "Integer"),
            req("height", "Integer"),
            opt("file_size", "Integer"),
        ],
    },
    Type {
        name: "MessageEntity",
        fields: &[
            req("type", "String"),
            req("offset", "Integer"),
            req("length", "Integer"),
            opt("url", "String"),
            opt("user", "User"),
            opt("language", "String"),
            opt("custom_emoji_id", "String"),
        ],
    },
    Type {
        name: "CallbackQuery",
        fields: &[
            req("id", "String"),
            req("from", "User"),
            opt("message", "Message"),
            opt("inline_message_id", "String"),
            req("chat_instance", "String"),
            opt("data", "String"),
            opt("game_short_name", "String"),
        ],
    },
    Type {
        name: "InlineKeyboardMarkup",
        fields: &[req(
            "inline_keyboard",
            "Array of Array of InlineKeyboardButton",
        )],
    },
    Type {
        name: "InlineKeyboardButton",
        fields: &[
            req("text", "String"),
            opt("url", "String"),
            opt("callback_data", "String"),
            opt("web_app", "WebAppInfo"),
            opt("login_url", "LoginUrl"),
            opt("switch_inline_query", "String"),
            opt("switch_inline_query_current_chat", "String"),
            opt(
                "switch_inline_query_chosen_chat",
                "SwitchInlineQueryChosenChat",
            ),
            opt("callback_game", "CallbackGame"),
            opt("pay", "Boolean"),
        ],
    },
    Type {
        name: "LinkPreviewOptions",
        fields: &[
            opt("is_disabled", "Boolean"),
            opt("url", "String"),
            opt("prefer_small_media", "Boolean"),
            opt("prefer_large_media", "Boolean"),
            opt("show_above_text", "Boolean"),
        ],
    },
    Type {
        name: "BotCommand",
        fields: &[req("command", "String"), req("description", "String")],
    },
];

pub fn method(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

fn type_def(name: &str) -> Option<&'static Type> {
    TYPES.iter().find(|t| t.name == name)
}

/// Problems with `value` as the spec type `ty` (empty when it conforms).
/// Types not transcribed here only need to be objects.
pub fn check_value(value: &Value, ty: &str, at: &str) -> Vec<String> {
    let alternatives: Vec<&str> = ty.split('|').collect();
    let mut best: Option<Vec<String>> = None;
    for alt in alternatives {
        let problems = check_one(value, alt, at);
        if problems.is_empty() {
            return problems;
        }
        if best.as_ref().is_none_or(|b| problems.len() < b.len()) {
            best = Some(problems);
        }
    }
    best.unwrap_or_default()
}

fn check_one(value: &Value, ty: &str, at: &str) -> Vec<String> {
    if let Some(inner) = ty.strip_prefix("Array of ") {
        return match value.as_array() {
            Some(items) => items
                .iter()
                .enumerate()
                .flat_map(|(i, v)| check_value(v, inner, &format!("{at}[{i}]")))
                .collect(),
            None => vec![format!("{at}: expected {ty}")],
        };
    }
    let ok = match ty {
        "Integer" => value.is_i64() || value.is_u64(),
        "String" => value.is_string(),
        "Boolean" => value.is_boolean(),
        "Float" => value.is_number(),
        "InputFile" => true,
        _ => value.is_object(),
    };
    if !ok {
        return vec![format!("{at}: expected {ty}, got {value}")];
    }
    match (type_def(ty), value.as_object()) {
        (Some(def), Some(obj)) => check_fields(obj, def.fields, at),
        _ => Vec::new(),
    }
}

/// Checks an object's keys against a field list: required ones present,
/// no unknown ones, each of its type.
pub fn check_fields(
    obj: &serde_json::Map<String, Value>,
    fields: &[Field],
    at: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    for f in fields {
        match obj.get(f.name) {
            None | Some(Value::Null) if f.required => {
                problems.push(format!("{at}: missing required `{}`", f.name))
            }
            Some(v) if !v.is_null() => {
                problems.extend(check_value(v, f.ty, &format!("{at}.{}", f.name)))
            }
            _ => {}
        }
    }
    for key in obj.keys() {
        if !fields.iter().any(|f| f.name == key) {
            problems.push(format!("{at}: unknown field `{key}`"));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_checker_catches_missing_unknown_and_mistyped_fields() {
        let ok = json!({"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}});
        assert!(check_value(&ok, "Message", "m").is_empty());
        let bad = json!({"message_id": "1", "chat": {"id": 1}, "colour": 3});
        let p = check_value(&bad, "Message", "m");
        assert!(
            p.iter().any(|s| s.contains("missing required `date`")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|s| s.contains("missing required `type`")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|s| s.contains("unknown field `colour`")),
            "{p:?}"
        );
        assert!(p.iter().any(|s| s.contains("expected Integer")), "{p:?}");
    }
}
