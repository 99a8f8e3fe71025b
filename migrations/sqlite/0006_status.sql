-- Status announcements (kept in step with the other backend's 0006).
--
-- The watcher's view of the status page: one row, the tracked incidents and
-- components as JSON, the page's validators for conditional requests, and
-- a version: a watcher pass commits only if the version it read is still
-- there, so two instances never announce one change twice.
CREATE TABLE status_page (
    id            BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    state         TEXT   NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    version       BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- "Tell me when it's fixed": one row per chat and incident. On resolution
-- the rows become bulk outbox entries in the same transaction, so a crash
-- mid-broadcast neither loses nor repeats a notice.
CREATE TABLE status_subscriptions (
    channel     TEXT   NOT NULL,
    chat_id     TEXT   NOT NULL,
    incident_id TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (incident_id, channel, chat_id)
) WITHOUT ROWID;
CREATE INDEX status_subscriptions_by_chat ON status_subscriptions (channel, chat_id);
CREATE INDEX status_subscriptions_by_expiry ON status_subscriptions (expires_at);

-- Leader leases for jobs one instance runs at a time (the status watcher):
-- held while renewed, taken over once expired.
CREATE TABLE leases (
    name       TEXT   NOT NULL PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
) WITHOUT ROWID;
