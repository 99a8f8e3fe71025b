-- A transactional outbox for replies: the reply of a turn is stored with its
-- event, and marked delivered once the channel has sent it. A redelivered
-- event whose reply never went out (a crash between commit and send) gets
-- that reply again instead of silence.
ALTER TABLE processed_events ADD COLUMN reply TEXT;
ALTER TABLE processed_events ADD COLUMN delivered_at BIGINT;
