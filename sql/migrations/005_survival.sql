-- Survival: a live call's dialog state (opaque to the store: the SIP core's JSON), and the
-- nodes' leases. A node renews its row; one whose lease ran out is dead and its calls move.
-- lease_until -1: the node was declared dead and its calls taken (a later beat renews it).
ALTER TABLE calls ADD COLUMN dialogs TEXT NOT NULL DEFAULT '';
CREATE TABLE nodes (
	node TEXT PRIMARY KEY,
	lease_until BIGINT NOT NULL,
	draining INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX calls_node ON calls (node, state);
