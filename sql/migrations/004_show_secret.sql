-- The show page is keyed by a 128-bit secret sent only to A; the store keeps its SHA-256 (hex).
ALTER TABLE moves ADD COLUMN show_hash TEXT NOT NULL DEFAULT '';
CREATE INDEX moves_show ON moves (show_hash);
