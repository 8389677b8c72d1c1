-- Calls, moves, their event lines and failed guesses. Runs on SQLite and PostgreSQL alike.
-- Times are milliseconds since the epoch; hashes are 64 lowercase hex digits.

CREATE TABLE calls (
	call_id TEXT PRIMARY KEY,
	near_call_id TEXT NOT NULL,
	near_from_tag TEXT NOT NULL,
	near_to_tag TEXT NOT NULL,
	near_uri TEXT NOT NULL,
	far_call_id TEXT NOT NULL,
	far_from_tag TEXT NOT NULL,
	far_to_tag TEXT NOT NULL,
	far_uri TEXT NOT NULL,
	state TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	answered_at BIGINT,
	ended_at BIGINT
);
CREATE INDEX calls_state ON calls (state, created_at);
CREATE INDEX calls_ended ON calls (ended_at);
CREATE INDEX calls_near ON calls (near_call_id);
CREATE INDEX calls_far ON calls (far_call_id);

CREATE TABLE moves (
	move_id TEXT PRIMARY KEY,
	call_id TEXT NOT NULL REFERENCES calls (call_id),
	token_hash TEXT NOT NULL UNIQUE,
	code_hash TEXT NOT NULL,
	state TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	redeemed_at BIGINT,
	redeemed_by TEXT,
	updated_at BIGINT NOT NULL,
	finished_at BIGINT,
	reason TEXT,
	failures INTEGER NOT NULL DEFAULT 0,
	locked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX moves_code ON moves (code_hash, state);
CREATE INDEX moves_call ON moves (call_id, created_at);

CREATE TABLE move_events (
	move_id TEXT NOT NULL REFERENCES moves (move_id),
	seq INTEGER NOT NULL,
	at BIGINT NOT NULL,
	step TEXT NOT NULL,
	detail TEXT NOT NULL,
	PRIMARY KEY (move_id, seq)
);

CREATE TABLE failures (
	source TEXT NOT NULL,
	move_id TEXT,
	at BIGINT NOT NULL
);
CREATE INDEX failures_source ON failures (source, at);
CREATE INDEX failures_at ON failures (at);
