-- recoverbot initial schema (SQLite). Kept in step with postgres/0001_initial.sql:
-- the same tables, columns and indexes. Differences are storage only: the
-- auto-increment syntax, and WITHOUT ROWID on the small-row tables looked
-- up by their primary key (one b-tree instead of two).
-- Times are milliseconds since the Unix epoch (BIGINT); JSON is TEXT.

CREATE TABLE conversations (
    channel      TEXT   NOT NULL,
    chat_id      TEXT   NOT NULL,
    user_id      TEXT   NOT NULL,
    flow         TEXT   NOT NULL,
    step         TEXT   NOT NULL,
    variables    TEXT   NOT NULL DEFAULT '{}',
    state        TEXT   NOT NULL DEFAULT '{}',
    flow_version TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    version      BIGINT NOT NULL,
    PRIMARY KEY (channel, chat_id, user_id)
);
CREATE INDEX conversations_by_updated_at ON conversations (updated_at);

CREATE TABLE processed_events (
    channel      TEXT   NOT NULL,
    event_id     TEXT   NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (channel, event_id)
);
CREATE INDEX processed_events_by_time ON processed_events (processed_at);

CREATE TABLE transcript_entries (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    channel   TEXT   NOT NULL,
    chat_id   TEXT   NOT NULL,
    user_id   TEXT   NOT NULL,
    direction TEXT   NOT NULL CHECK (direction IN ('in', 'out')),
    text      TEXT   NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX transcript_by_conversation ON transcript_entries (channel, chat_id, user_id, id);
CREATE INDEX transcript_by_time ON transcript_entries (at);

CREATE TABLE rate_limit_counters (
    bucket       TEXT   NOT NULL,
    window_start BIGINT NOT NULL,
    window_end   BIGINT NOT NULL,
    hits         BIGINT NOT NULL,
    PRIMARY KEY (bucket, window_start)
) WITHOUT ROWID;
CREATE INDEX rate_limit_counters_by_end ON rate_limit_counters (window_end);

CREATE TABLE idempotency_records (
    scope           TEXT   NOT NULL PRIMARY KEY,
    idempotency_key TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    response        TEXT,
    completed_at    BIGINT
) WITHOUT ROWID;
CREATE INDEX idempotency_records_by_time ON idempotency_records (created_at);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    subject TEXT   NOT NULL,
    detail  TEXT   NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_time ON audit_log (at);
