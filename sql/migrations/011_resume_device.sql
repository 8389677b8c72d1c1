-- Resume codes by digits and by link, meetings that survive a restart (issue 13): a resume code has a second row keyed by the
-- HMAC of its digits (only the hash, as the move's numeric codes), and both rows name the device
-- the code went to (its Contact), which the link's POST calls back. Using either row uses both.
ALTER TABLE resumes ADD COLUMN device TEXT NOT NULL DEFAULT '';
-- A meeting's bridge legs (move/bridge.c): their dialogs, so that a restart serves them again
-- and the call's end still ends them ('' when the call has none).
ALTER TABLE contexts ADD COLUMN bridge TEXT NOT NULL DEFAULT '';
