/*
 * The names of the store's operations, for the log lines of jobs that failed.
 */
#include "sql/store.h"
#include "sql/store_int.h"

const char *store_op_name(enum store_op op)
{
	static const char *const names[] = {
	    [STORE_OP_CALL_INSERT] = "insert call",
	    [STORE_OP_CALL_STATE] = "set call state",
	    [STORE_OP_CALL_NEAR] = "set near leg",
	    [STORE_OP_CALL_GET] = "get call",
	    [STORE_OP_CALL_FIND] = "find call",
	    [STORE_OP_CALL_LIST_LIVE] = "list calls",
	    [STORE_OP_PURGE] = "purge",
	    [STORE_OP_MOVE_INSERT] = "insert move",
	    [STORE_OP_MOVE_REDEEM] = "redeem",
	    [STORE_OP_MOVE_STATE] = "set move state",
	    [STORE_OP_MOVE_EVENT] = "add move event",
	    [STORE_OP_MOVE_GET] = "get move",
	    [STORE_OP_MOVE_LIST] = "list moves",
	    [STORE_OP_MOVE_EVENTS] = "list move events",
	    [STORE_OP_FAILURE_ADD] = "count failure",
	    [STORE_OP_SOURCE_CHECK] = "check source",
	    [STORE_OP_MOVE_NODE] = "find a code's node",
	    [STORE_OP_NODE_RESET] = "reset the node's calls",
	    [STORE_OP_MOVE_SHOW_SET] = "set show secret",
	    [STORE_OP_MOVE_BY_SHOW] = "find a move by its show secret",
	    [STORE_OP_CALL_DIALOGS] = "set call dialogs",
	    [STORE_OP_NODE_BEAT] = "renew the node's lease",
	    [STORE_OP_CALL_LIST_NODE] = "list the node's calls",
	    [STORE_OP_NODE_ADOPT] = "adopt a dead node's calls",
	    [STORE_OP_NOOP] = "wait for the jobs before",
	    [STORE_OP_CALL_TAKE] = "take a call over",
	    [STORE_OP_CONTEXT_PUT] = "write a call's context",
	    [STORE_OP_NOTE_ADD] = "add a note",
	    [STORE_OP_CONTEXT_END] = "end a call's context",
	    [STORE_OP_CONTEXT_GET] = "read a call's context",
	    [STORE_OP_RESUME_INSERT] = "keep a resume code",
	    [STORE_OP_RESUME_TAKE] = "use a resume code",
	    [STORE_OP_CONTEXT_BRIDGE_SET] = "keep a meeting's bridge legs",
	    [STORE_OP_CONTEXT_BRIDGE_GET] = "read a meeting's bridge legs",
	    [STORE_OP_BINDING_PUT] = "write a binding",
	    [STORE_OP_BINDING_FLOW] = "find a flow's binding",
	    [STORE_OP_BINDING_LIST] = "list an AOR's bindings",
	    [STORE_OP_CALL_AOR] = "set a call's near AOR",
	    [STORE_OP_PULL_FIND] = "find a pull's binding and call",
	    [STORE_OP_HINT_PUT] = "keep a proximity hint",
	    [STORE_OP_BINDING_ON_FLOW] = "list a flow's bindings",
	    [STORE_OP_BINDING_SYNC] = "remove the bindings a registrar no longer lists",
	};

	return (unsigned)op < sizeof(names) / sizeof(names[0]) && names[op] ? names[op] : "job";
}
