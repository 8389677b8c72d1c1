-- A restart reads its live calls back a page at a time, oldest first: this index serves those
-- pages in order without visiting the node's ended calls (kept for the retention period), and
-- every other look-up by node of live calls (the reset at start, a dead node's take-over), so
-- calls_node (node, state), which could not skip the ended ones, goes: one index fewer to write
-- per call.
CREATE INDEX calls_node_live ON calls (node, created_at, call_id) WHERE state <> 'ended';
DROP INDEX calls_node;
