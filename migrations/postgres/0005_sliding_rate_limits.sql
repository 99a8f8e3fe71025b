-- Rate limits slide (GCRA): one theoretical arrival time per bucket instead
-- of counters per clock-aligned window, which let a burst through on each
-- side of a window's edge. Counts in flight are dropped: limits start afresh.
DROP TABLE rate_limit_counters;
CREATE TABLE rate_limits (
    bucket TEXT   NOT NULL PRIMARY KEY,
    tat    BIGINT NOT NULL
);
CREATE INDEX rate_limits_by_tat ON rate_limits (tat);
