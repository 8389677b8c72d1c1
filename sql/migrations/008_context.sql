-- Context that travels with a call (issue 13): who the far party is, when the call started,
-- the notes its users add, and the resume codes a call leaves behind. The context page is keyed
-- by a 128-bit secret of which only the SHA-256 (hex) is kept, as the move's show page.
CREATE TABLE contexts (
	call_id TEXT PRIMARY KEY,
	secret_hash TEXT NOT NULL DEFAULT '',
	far_identity TEXT NOT NULL DEFAULT '',
	far_uri TEXT NOT NULL DEFAULT '',
	near_uri TEXT NOT NULL DEFAULT '',
	started_at BIGINT NOT NULL DEFAULT 0,
	ended_at BIGINT NOT NULL DEFAULT 0,
	resumed_from TEXT NOT NULL DEFAULT ''
);
CREATE INDEX contexts_secret ON contexts (secret_hash);

CREATE TABLE context_notes (
	call_id TEXT NOT NULL,
	seq INTEGER NOT NULL,
	at BIGINT NOT NULL,
	text TEXT NOT NULL,
	PRIMARY KEY (call_id, seq)
);

-- A resume code is used once, before expires_at; used_at is 0 until then.
CREATE TABLE resumes (
	token_hash TEXT PRIMARY KEY,
	call_id TEXT NOT NULL,
	far_uri TEXT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at BIGINT NOT NULL DEFAULT 0
);
