-- Chat platforms (issue 13): spec C1's "new conversations per day per sending line".
--
-- A channel is one sending line (a bot, a phone number). channel_conversations remembers every
-- thread the channel has written to (or that wrote to it first), so a reply into a known thread
-- is never counted again; channel_daily_starts counts the threads first written to per UTC day,
-- and its guarded increment (started < limit) is what keeps the count at the limit when
-- several workers start conversations at once.
CREATE TABLE channel_conversations (
    channel     TEXT NOT NULL,
    thread_id   TEXT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (channel, thread_id)
);

CREATE TABLE channel_daily_starts (
    channel  TEXT    NOT NULL,
    day      BIGINT NOT NULL,            -- days since 1970-01-01 (UTC)
    started  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, day)
);
