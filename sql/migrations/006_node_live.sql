-- A restart reads its live calls back a page at a time, oldest first: this index serves those
-- pages in order without visiting the node's ended calls (kept for the retention period).
CREATE INDEX calls_node_live ON calls (node, created_at, call_id) WHERE state <> 'ended';
