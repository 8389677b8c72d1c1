-- What a wrong guess was aimed at: 0 a token (or anything else), 1 a numeric code. Wrong
-- numeric codes are also counted node-wide (cluster-wide: every node shares the table).
ALTER TABLE failures ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;
CREATE INDEX failures_kind ON failures (kind, at);
