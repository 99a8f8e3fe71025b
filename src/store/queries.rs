//! The SQL both backends run, written once. SQLite and PostgreSQL both
//! accept `$n` placeholders, `ON CONFLICT`, `RETURNING` and `LIMIT $n`.

pub const LOAD_CONVERSATION: &str = "SELECT flow, step, variables, state, flow_version, created_at, updated_at, version \
     FROM conversations WHERE channel = $1 AND chat_id = $2 AND user_id = $3";

pub const INSERT_EVENT: &str = "INSERT INTO processed_events (channel, event_id, processed_at) VALUES ($1, $2, $3) \
     ON CONFLICT (channel, event_id) DO NOTHING";

pub const INSERT_CONVERSATION: &str = "INSERT INTO conversations (channel, chat_id, user_id, flow, step, variables, state, \
     flow_version, created_at, updated_at, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1) \
     ON CONFLICT (channel, chat_id, user_id) DO NOTHING";

pub const UPDATE_CONVERSATION: &str = "UPDATE conversations SET flow = $1, step = $2, variables = $3, state = $4, \
     flow_version = $5, created_at = $6, updated_at = $7, version = version + 1 \
     WHERE channel = $8 AND chat_id = $9 AND user_id = $10 AND version = $11";

pub const INSERT_TRANSCRIPT: &str = "INSERT INTO transcript_entries (channel, chat_id, user_id, direction, text, at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

pub const INSERT_ESCALATION: &str = "INSERT INTO escalation_requests (id, channel, chat_id, user_id, reason, topic, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub const INSERT_FEEDBACK: &str = "INSERT INTO feedback (channel, chat_id, user_id, topic, answer, at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

pub const INSERT_AUDIT: &str =
    "INSERT INTO audit_log (at, actor, action, subject, detail) VALUES ($1, $2, $3, $4, $5)";

pub const PROCESSED_EVENT: &str =
    "SELECT processed_at FROM processed_events WHERE channel = $1 AND event_id = $2";

pub const TRANSCRIPT: &str = "SELECT direction, text, at FROM transcript_entries \
     WHERE channel = $1 AND chat_id = $2 AND user_id = $3 ORDER BY id DESC LIMIT $4";

pub const RECENT_ESCALATIONS: &str = "SELECT id, channel, chat_id, user_id, reason, topic, created_at \
     FROM escalation_requests ORDER BY created_at DESC, id DESC LIMIT $1";

pub const RECENT_FEEDBACK: &str =
    "SELECT channel, chat_id, user_id, topic, answer, at FROM feedback ORDER BY at DESC LIMIT $1";

pub const PURGE_EVENTS: &str = "DELETE FROM processed_events WHERE processed_at < $1";
pub const PURGE_TRANSCRIPT: &str = "DELETE FROM transcript_entries WHERE at < $1";
pub const PURGE_IDEMPOTENCY: &str = "DELETE FROM idempotency_records WHERE created_at < $1";
pub const PURGE_OUTBOX: &str =
    "DELETE FROM outbox WHERE state IN ('delivered', 'failed') AND updated_at < $1";
pub const PURGE_RATE_LIMITS: &str = "DELETE FROM rate_limits WHERE tat < $1";

/// One GCRA hit: $1 bucket, $2 now + T (a new bucket), $3 now, $4 T.
pub const RATE_LIMIT_HIT: &str = "INSERT INTO rate_limits (bucket, tat) VALUES ($1, $2) \
     ON CONFLICT (bucket) DO UPDATE SET \
     tat = CASE WHEN rate_limits.tat > $3 THEN rate_limits.tat ELSE $3 END + $4 \
     RETURNING tat";

/// A GCRA hit that counts only if allowed: $1 bucket, $2 now + T, $3 now,
/// $4 T, $5 the window (ms). No row comes back when it is refused.
pub const RATE_LIMIT_HIT_WITHIN: &str = "INSERT INTO rate_limits (bucket, tat) VALUES ($1, $2) \
     ON CONFLICT (bucket) DO UPDATE SET \
     tat = CASE WHEN rate_limits.tat > $3 THEN rate_limits.tat ELSE $3 END + $4 \
     WHERE CASE WHEN rate_limits.tat > $3 THEN rate_limits.tat ELSE $3 END + $4 - $3 <= $5 \
     RETURNING tat";

pub const RATE_LIMIT_TAT: &str = "SELECT tat FROM rate_limits WHERE bucket = $1";

pub const INSERT_IDEMPOTENCY: &str = "INSERT INTO idempotency_records (scope, idempotency_key, created_at) \
     VALUES ($1, $2, $3) ON CONFLICT (scope) DO NOTHING";

pub const IDEMPOTENCY: &str =
    "SELECT idempotency_key, response FROM idempotency_records WHERE scope = $1";

pub const RECORD_RESPONSE: &str =
    "UPDATE idempotency_records SET response = $1, completed_at = $2 WHERE scope = $3";

pub const RECENT_AUDIT: &str =
    "SELECT at, actor, action, subject, detail FROM audit_log ORDER BY id DESC LIMIT $1";

// The outbox. Columns of an entry, in the order the row mappers read them.
const OUTBOX_COLUMNS: &str = "id, channel, chat_id, seq, lane, op, state, attempts, event_id, \
     message_ref, error, created_at, updated_at";

/// Reserves `$3` sequence numbers in a chat; returns the last of them.
pub const OUTBOX_RESERVE: &str = "INSERT INTO outbox_chats (channel, chat_id, last_seq) VALUES ($1, $2, $3) \
     ON CONFLICT (channel, chat_id) DO UPDATE SET last_seq = outbox_chats.last_seq + $3 \
     RETURNING last_seq";

pub const OUTBOX_INSERT: &str = "INSERT INTO outbox (channel, chat_id, seq, lane, op, logical_key, state, \
     attempts, event_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $8)";

/// Proof of arrival: the oldest attempted send of the chat takes the
/// message id a later event referred to, unless some entry already has it.
/// (Parameters are numbered in the order they first appear: SQLite takes
/// `$n` as a name and numbers names by appearance.)
pub const OUTBOX_BIND_SEEN: &str = "UPDATE outbox SET state = 'delivered', message_ref = $1, updated_at = $2 \
     WHERE id = (SELECT id FROM outbox WHERE channel = $3 AND chat_id = $4 AND state = 'attempted' \
     AND op LIKE '{\"kind\":\"message\"%' ORDER BY seq LIMIT 1) \
     AND NOT EXISTS (SELECT 1 FROM outbox WHERE channel = $3 AND chat_id = $4 AND message_ref = $1)";

pub const OUTBOX_OPEN_CHATS: &str = "SELECT DISTINCT channel, chat_id FROM outbox \
     WHERE state IN ('pending', 'attempted') LIMIT $1";

pub static OUTBOX_OPEN_ENTRIES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE channel = $1 AND chat_id = $2 \
         AND state IN ('pending', 'attempted') ORDER BY seq LIMIT $3"
    )
});

pub static OUTBOX_ENTRY: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"));

pub static OUTBOX_CHAT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE channel = $1 AND chat_id = $2 ORDER BY seq")
});

pub const OUTBOX_CLAIM: &str = "UPDATE outbox SET state = 'attempted', attempts = attempts + 1, updated_at = $1 \
     WHERE id = $2 AND attempts = $3 AND state IN ('pending', 'attempted')";

pub const OUTBOX_DELIVERED: &str = "UPDATE outbox SET state = 'delivered', message_ref = $1, updated_at = $2 \
     WHERE id = $3 RETURNING channel, chat_id, logical_key";

pub const OUTBOX_FAILED: &str =
    "UPDATE outbox SET state = 'failed', error = $1, updated_at = $2 WHERE id = $3";

pub const KEYED_MESSAGE_UPSERT: &str = "INSERT INTO keyed_messages (channel, chat_id, logical_key, message_ref, updated_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel, chat_id, logical_key) \
     DO UPDATE SET message_ref = $4, updated_at = $5";

pub const KEYED_MESSAGE: &str = "SELECT message_ref FROM keyed_messages \
     WHERE channel = $1 AND chat_id = $2 AND logical_key = $3";

// Status announcements and subscriptions (0006).

pub const STATUS_RECORD: &str =
    "SELECT state, etag, last_modified, version, updated_at FROM status_page WHERE id = 1";

pub const STATUS_INSERT: &str = "INSERT INTO status_page (id, state, etag, last_modified, version, updated_at) \
     VALUES (1, $1, $2, $3, 1, $4) ON CONFLICT (id) DO NOTHING";

pub const STATUS_UPDATE: &str = "UPDATE status_page SET state = $1, etag = $2, last_modified = $3, \
     version = version + 1, updated_at = $4 WHERE id = 1 AND version = $5";

pub const SUBSCRIBE: &str = "INSERT INTO status_subscriptions (channel, chat_id, incident_id, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (incident_id, channel, chat_id) \
     DO UPDATE SET expires_at = excluded.expires_at";

pub const UNSUBSCRIBE_CHAT: &str =
    "DELETE FROM status_subscriptions WHERE channel = $1 AND chat_id = $2";

pub const SUBSCRIBERS: &str = "SELECT channel, chat_id, created_at, expires_at FROM status_subscriptions \
     WHERE incident_id = $1 AND expires_at > $2 ORDER BY created_at, channel, chat_id";

pub const END_SUBSCRIPTIONS: &str = "DELETE FROM status_subscriptions WHERE incident_id = $1";

pub const PURGE_SUBSCRIPTIONS: &str = "DELETE FROM status_subscriptions WHERE expires_at <= $1";

/// Takes the lease if it is free, expired or already ours.
pub const TRY_LEASE: &str = "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.holder = excluded.holder OR leases.expires_at <= $4";

pub const RELEASE_LEASE: &str = "DELETE FROM leases WHERE name = $1 AND holder = $2";
