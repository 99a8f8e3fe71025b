-- The engine's records: escalation requests (the staff desk builds on them)
-- and answers to "did this solve it?". Same text for SQLite and PostgreSQL.

CREATE TABLE escalation_requests (
    id         TEXT   NOT NULL PRIMARY KEY,
    channel    TEXT   NOT NULL,
    chat_id    TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    topic      TEXT,
    status     TEXT   NOT NULL DEFAULT 'open',
    created_at BIGINT NOT NULL
);
CREATE INDEX escalation_requests_by_time ON escalation_requests (created_at);
CREATE INDEX escalation_requests_by_conversation ON escalation_requests (channel, chat_id, user_id);

CREATE TABLE feedback (
    channel TEXT   NOT NULL,
    chat_id TEXT   NOT NULL,
    user_id TEXT   NOT NULL,
    topic   TEXT   NOT NULL,
    answer  TEXT   NOT NULL CHECK (answer IN ('solved', 'not_solved')),
    at      BIGINT NOT NULL
);
CREATE INDEX feedback_by_time ON feedback (at);
CREATE INDEX feedback_by_topic ON feedback (topic);
