-- The outbox: every outgoing message, addressed (channel + chat) and
-- written in the same transaction as the change that caused it; delivery
-- drains it in `seq` order per chat. Kept in step with postgres/0004_outbox.sql.
-- The reply columns of processed_events (0003) are no longer written: a
-- redelivered event's reply is the outbox entries its turn queued.

CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel     TEXT   NOT NULL,
    chat_id     TEXT   NOT NULL,
    seq         BIGINT NOT NULL,
    lane        TEXT   NOT NULL CHECK (lane IN ('interactive', 'bulk')),
    op          TEXT   NOT NULL,
    logical_key TEXT,
    state       TEXT   NOT NULL CHECK (state IN ('pending', 'attempted', 'delivered', 'failed')),
    attempts    BIGINT NOT NULL DEFAULT 0,
    event_id    TEXT,
    message_ref TEXT,
    error       TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (channel, chat_id, seq)
);
CREATE INDEX outbox_open ON outbox (channel, chat_id, seq) WHERE state IN ('pending', 'attempted');
-- Only the open entries are indexed beyond the chat's sequence: every
-- state change would otherwise rewrite more index pages. The proof-of-
-- arrival check walks one chat's entries (the unique index), and the hourly
-- purge scans the table.

-- The next sequence number of each chat: bumped in the writing transaction,
-- so concurrent writers to one chat are ordered by their commits.
CREATE TABLE outbox_chats (
    channel  TEXT   NOT NULL,
    chat_id  TEXT   NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (channel, chat_id)
) WITHOUT ROWID;

-- Messages sent under a logical key (`announcement:<incident>`), kept after
-- their outbox entry is purged so later edits still find them.
CREATE TABLE keyed_messages (
    channel     TEXT   NOT NULL,
    chat_id     TEXT   NOT NULL,
    logical_key TEXT   NOT NULL,
    message_ref TEXT   NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (channel, chat_id, logical_key)
) WITHOUT ROWID;
