-- Own devices across nodes (issue 13): a call's near party as an AOR (user@host), so that a
-- pull reaching any node finds the AOR's newest live call and the node serving it; and the
-- proximity hints, shared by every node, each counting until expires_at (then purged).
ALTER TABLE calls ADD COLUMN near_aor TEXT NOT NULL DEFAULT '';
CREATE INDEX calls_aor_live ON calls (near_aor, created_at) WHERE state <> 'ended';
CREATE TABLE near_hints (
	aor TEXT NOT NULL,
	device TEXT NOT NULL,
	seen_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	PRIMARY KEY (aor, device)
);
CREATE INDEX near_hints_expires ON near_hints (expires_at);
