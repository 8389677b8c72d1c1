/* The store: calls and moves in SQLite or PostgreSQL, synchronously or through a worker. */
#ifndef QRXFER_SQL_STORE_H
#define QRXFER_SQL_STORE_H

#include <stddef.h>
#include <stdint.h>

struct su_root_s;
struct sockaddr;
struct store;

#define STORE_ID_MAX     64  /* our ids: a text uuid or 32 hex digits, with the NUL */
#define STORE_CALLID_MAX 256 /* a SIP Call-ID */
#define STORE_TAG_MAX    128 /* a From or To tag */
#define STORE_URI_MAX    512 /* a SIP URI */
#define STORE_SOURCE_MAX 128 /* who asked: an address key such as "ip:127.0.0.1" */
#define STORE_TEXT_MAX   256 /* a reason or an event's detail */
#define STORE_HASH_LEN   32  /* SHA-256 */
#define STORE_HASHES_MAX 8   /* a numeric code is looked up under this many keys at most */

/* Times are milliseconds since the epoch; 0 means "not yet". The synchronous functions may be
 * called from any thread and block (on the network with PostgreSQL): the SIP loop uses
 * store_submit(). */

/* One SIP dialog as seen from qrxfer. */
struct store_dialog {
	char call_id[STORE_CALLID_MAX];
	char from_tag[STORE_TAG_MAX];
	char to_tag[STORE_TAG_MAX];
	char uri[STORE_URI_MAX];
};

enum store_call_state {
	STORE_CALL_SETUP,  /* INVITE relayed, no answer yet */
	STORE_CALL_EARLY,  /* a provisional response with a tag */
	STORE_CALL_ACTIVE, /* answered */
	STORE_CALL_ENDED,
};

struct store_call {
	char id[STORE_ID_MAX];
	struct store_dialog near;
	struct store_dialog far;
	enum store_call_state state;
	int64_t created_at;
	int64_t answered_at;
	int64_t ended_at;
	char node[STORE_URI_MAX]; /* the SIP URI of the node holding the dialogs */
	/* out: the call's dialog state as the SIP core wrote it (store_call_dialogs_set), or
	 * NULL when it has none; owned by the store, valid during the callback or until the job
	 * is freed (a job's done callback may take it: it then frees it, and leaves NULL), except
	 * from store_call_take, where it is from malloc and the caller's */
	char *dialogs;
	/* out (store_call_take): until when the node serving it holds its lease (ms since the
	 * epoch); 0 when it has no lease row */
	int64_t lease_until;
};

enum store_move_state {
	STORE_MOVE_OFFERED,    /* code shown, waiting for a device */
	STORE_MOVE_REDEEMED,   /* a device presented the code: it is used up */
	STORE_MOVE_CONFIRMING, /* waiting for A and/or C to say yes */
	STORE_MOVE_MOVING,     /* re-INVITE towards the far leg in flight */
	STORE_MOVE_DONE,
	STORE_MOVE_FAILED,
};

struct store_move {
	char id[STORE_ID_MAX];
	char call_id[STORE_ID_MAX];
	uint8_t token_hash[STORE_HASH_LEN];
	uint8_t code_hash[STORE_HASH_LEN];
	enum store_move_state state;
	int64_t created_at;
	int64_t expires_at;
	int64_t redeemed_at;
	int64_t updated_at;
	int64_t finished_at;
	char redeemed_by[STORE_SOURCE_MAX];
	char reason[STORE_TEXT_MAX]; /* why it failed */
	int failures;                /* wrong guesses against this move */
	int locked;                  /* 1 once failures reached the limit: it never redeems */
	/* in (insert): the numeric code's hash under the keyring's older keys, so that no code on
	 * offer, whatever key hashed it, has the same digits (EEXIST) */
	uint8_t code_alt[STORE_HASHES_MAX - 1][STORE_HASH_LEN];
	unsigned ncode_alt;
};

struct store_move_event {
	char move_id[STORE_ID_MAX];
	int seq; /* 1, 2, ... in the order they were recorded */
	int64_t at;
	char step[32];
	char detail[STORE_TEXT_MAX];
};

enum store_key {
	STORE_KEY_TOKEN, /* the hash of the QR token */
	STORE_KEY_CODE,  /* the hash of the numeric code */
};

/* A redemption: what to look for and, on success, what was won. */
struct store_redeem {
	enum store_key key;
	uint8_t hash[STORE_HASH_LEN];
	/* a numeric code's hash under the keyring's older keys: any of them may match */
	uint8_t alt[STORE_HASHES_MAX - 1][STORE_HASH_LEN];
	unsigned nalt;
	int64_t now;
	char by[STORE_SOURCE_MAX]; /* the source presenting the code (store_source_key) */
	char named[STORE_ID_MAX];  /* the move a signed token names, if any: a miss counts there */
	char move_id[STORE_ID_MAX];
	char call_id[STORE_ID_MAX];
	int64_t wait_ms; /* when refused (EAGAIN, EBUSY): how long to wait */
};

/* After a wrong guess, or when asking about a source: the counts and the penalty. */
struct store_failure {
	int move_failures;    /* -1 when no move was named */
	int move_locked;      /* the named move is now locked */
	int source_failures;  /* failures from the source within the window */
	int64_t wait_ms;      /* how long the source must still wait before trying again */
	int numeric_failures; /* wrong numeric codes node-wide within the budget's window */
	int64_t
	    budget_wait_ms; /* how long numeric codes stay refused node-wide (0: they are not) */
};

/* Guess limiting; see store_limits_set(). */
struct store_limits {
	int max_failures;     /* a move locks and a source slows down after this many (5) */
	int64_t window_ms;    /* failures older than this are forgotten (600000) */
	int64_t slow_base_ms; /* the first wait once a source reached the limit, doubling after
	                         (60000) */
	int64_t slow_max_ms;  /* the longest wait (900000) */
	int numeric_budget; /* wrong numeric codes node-wide per budget window before numeric codes
	                       are refused (30) */
	int64_t budget_window_ms; /* (60000) */
};

/* Visits one row of a listing; returning non-zero stops it. Must not call the store. */
typedef int(store_call_h)(const struct store_call *call, void *arg);
typedef int(store_move_h)(const struct store_move *move, void *arg);
typedef int(store_event_h)(const struct store_move_event *ev, void *arg);

#define STORE_TIMEOUT_MS 5000 /* store_open's bound on a PostgreSQL server's answers */

/* Opens the store at url (sqlite:///abs.db, sqlite://rel.db, sqlite::memory:, postgresql://...) and
 * migrates it. */
int store_open(struct store **sp, const char *url, char *err, size_t errlen);

/* store_open, where a PostgreSQL server must connect, and answer each statement, within
 * timeout_ms (0: no bound); if not, that operation fails with ETIMEDOUT, the connection is
 * dropped and the next operation connects again. */
int store_open_timeout(struct store **sp, const char *url, int timeout_ms, char *err,
                       size_t errlen);

/* Stops the worker after it ran every queued job, delivers pending completions, and frees the
 * store; on the loop thread, never from inside a completion callback. */
void store_close(struct store *s);

/* Returns "sqlite" or "postgresql". */
const char *store_backend(const struct store *s);

/* Returns the schema version the database is at. */
int store_schema_version(struct store *s, int *versionp);

/* Replaces the guess-limiting settings; fields <= 0 keep their defaults. */
void store_limits_set(struct store *s, const struct store_limits *lim);

/* Returns the current time in milliseconds since the epoch. */
int64_t store_now(void);

/* Returns the name stored for a call state ("setup", ...). */
const char *store_call_state_name(enum store_call_state st);

/* Returns the name stored for a move state ("offered", ...). */
const char *store_move_state_name(enum store_move_state st);

/* Inserts a new call; EEXIST when the id is taken. */
int store_call_insert(struct store *s, const struct store_call *call);

/* Sets a call's state; answered_at is set on ACTIVE and ended_at on ENDED, once, to at. */
int store_call_state_set(struct store *s, const char *id, enum store_call_state st, int64_t at);

/* Replaces a call's near dialog (after a move the new device is the near leg). */
int store_call_near_set(struct store *s, const char *id, const struct store_dialog *near);

/* Reads one call; ENOENT when there is none. */
int store_call_get(struct store *s, const char *id, struct store_call *call);

/* Reads the newest call with a leg (near or far) whose SIP Call-ID is sip_call_id; ENOENT if none.
 */
int store_call_find(struct store *s, const char *sip_call_id, struct store_call *call);

/* Visits every call not ENDED, oldest first. */
int store_call_list_live(struct store *s, store_call_h *each, void *arg);

/* Deletes calls ended before now - retention_ms with their moves, and forgotten failures. */
int store_purge(struct store *s, int64_t now, int64_t retention_ms, int *ncallsp);

/* Inserts a move in state offered (its counters and later times are ignored), or redeemed by
 * redeemed_by when its state is STORE_MOVE_REDEEMED (a move without a code: own devices). */
int store_move_insert(struct store *s, const struct store_move *move);

/* Uses a code once: 0 and r->move_id/call_id for exactly one caller, ENOENT when expired, wrong,
 * used or locked (a failure is then counted against r->by, and against r->named if set),
 * EAGAIN when r->by must wait, EBUSY when numeric codes are refused node-wide (the budget of
 * wrong numeric codes is spent); r->wait_ms says for how long. */
int store_move_redeem(struct store *s, struct store_redeem *r);

/* Finds the offered move r->key/hash names, without using it: r->move_id and the SIP URI of the
 * node holding its call in node; ENOENT when no such code is on offer. */
int store_move_node(struct store *s, struct store_redeem *r, char *node, size_t len);

/* Moves a move to st if its state allows it (EALREADY if not, ENOENT if no such move), with an
 * event. */
int store_move_state_set(struct store *s, const char *id, enum store_move_state st, int64_t at,
                         const char *reason);

/* Adds an event line to a move. */
int store_move_event_add(struct store *s, const char *id, int64_t at, const char *step,
                         const char *detail);

/* Reads one move; ENOENT when there is none. */
int store_move_get(struct store *s, const char *id, struct store_move *move);

/* Sets the hash of a move's show page secret (SHA-256; the secret is never stored). */
int store_move_show_set(struct store *s, const char *id, const uint8_t hash[STORE_HASH_LEN]);

/* Reads the move whose show secret hashes to hash; ENOENT when there is none. */
int store_move_by_show(struct store *s, const uint8_t hash[STORE_HASH_LEN],
                       struct store_move *move);

/* Visits the moves of one call (or all moves when call_id is NULL), oldest first. */
int store_move_list(struct store *s, const char *call_id, store_move_h *each, void *arg);

/* Visits a move's events in order. */
int store_move_events(struct store *s, const char *id, store_event_h *each, void *arg);

/* Counts a wrong guess from source, against move_id too unless it is NULL; fills f if not NULL. */
int store_failure_add(struct store *s, const char *move_id, const char *source, int64_t now,
                      struct store_failure *f);

/* The same for a guess of a kind: a wrong numeric code (STORE_KEY_CODE) also spends the
 * node-wide budget. */
int store_guess_failed(struct store *s, const char *move_id, const char *source,
                       enum store_key kind, int64_t now, struct store_failure *f);

/* Tells how many recent failures came from source and how long it must still wait. */
int store_source_check(struct store *s, const char *source, int64_t now, struct store_failure *f);

/* The same, and for a numeric code (STORE_KEY_CODE) whether the node-wide budget is spent. */
int store_guess_check(struct store *s, const char *source, enum store_key kind, int64_t now,
                      struct store_failure *f);

/* Marks this node's calls made before now still live in the store without a dialog state as
 * ended (at now) and their unfinished moves as failed (a start after a stop or a crash: those
 * dialogs cannot be served again); calls with a dialog state are left to store_call_list_node,
 * calls made since now to the run that made them. n gets the calls ended. */
int store_node_reset(struct store *s, const char *node, int64_t now, int *np);

/*
 * Survival: a live call's dialogs in the store, and which node serves it. Each node renews a
 * lease (store_node_beat); a node whose lease ran out is dead and its calls go to a live one,
 * exactly once. A restart reads the node's own calls back (store_call_list_node).
 */

/* Writes a live call's dialog state (an opaque text the SIP core makes and reads: JSON); the
 * last write wins. ENOENT when there is no such call or it ended. */
int store_call_dialogs_set(struct store *s, const char *id, const char *dialogs, int64_t at);

/* Renews node's lease to now + lease_ms (creating its row the first time) and records whether
 * it is draining. */
int store_node_beat(struct store *s, const char *node, int64_t now, int64_t lease_ms, int draining);

/* A live call as a restart or a take-over reads it back: which, how old, and its state. */
struct store_live {
	char id[STORE_ID_MAX];
	int64_t created_at;
	char *dialogs; /* from malloc; NULL when the call has none (it cannot be served again) */
};

/* Frees a list of them (and their dialogs). */
void store_live_free(struct store_live *v, size_t n);

/*
 * Lists up to limit of the live calls node serves that have a dialog state, oldest first (by
 * created_at, then id), starting after the call (after_at, after_id): after_id "" (or NULL)
 * starts at the first. A restart reads its calls back a page at a time, so the loop serves one
 * page while the worker reads the next. *vp is from malloc (store_live_free), *np its
 * length; NULL and 0 when there is none.
 */
int store_call_list_node(struct store *s, const char *node, int64_t after_at, const char *after_id,
                         size_t limit, struct store_live **vp, size_t *np);

/*
 * Takes over the live calls of one node other than me whose lease ran out before now: from
 * then on they are me's (calls.node), and no other node gets them (a node that renewed its
 * lease before the take keeps them; two nodes adopting at once: one wins). *vp gets the calls
 * taken (from malloc, oldest first, *np of them), each with its dialog state (NULL for a call
 * that has none: it cannot be served again); dead gets the dead node's name. ENOENT when no node is
 * dead (or its calls are gone, or it renewed meanwhile: no other node is tried). A node with live
 * calls and no lease row at all counts as dead (so me beats before it adopts); calls with no node
 * ("") are never adopted.
 */
int store_node_adopt(struct store *s, const char *me, int64_t now, char *dead, size_t len,
                     struct store_live **vp, size_t *np);

/*
 * The live call one of whose legs has the SIP Call-ID sip_call_id, for me to serve: 0 and the
 * call (its dialogs set) when me serves it already or just took it over (its node's lease ran
 * out, or it has no lease row, or no node: calls.node is me from then on); EBUSY when a node
 * with a live lease serves it (call->node names it); ENOENT when there is none. On 0,
 * call->dialogs is from malloc (NULL when the call has no state) and the caller frees it; on
 * an error it is NULL. In a job (STORE_OP_CALL_TAKE) the store frees it with the job.
 */
int store_call_take(struct store *s, const char *sip_call_id, const char *me, int64_t now,
                    struct store_call *call);

/*
 * The key guesses are counted under: "ip:" and the address, an IPv6 address as its /64
 * ("ip:2001:db8:1:2::/64"), an IPv4-mapped IPv6 address as IPv4. Ports never count: a new
 * socket is the same source. EAFNOSUPPORT for other families.
 */
int store_source_key(const struct sockaddr *sa, char *out, size_t len);

/*
 * Context that travels with a call (sql/store_context.c): the far party's identity, when the
 * call started, its notes and moves, keyed by the call's id or by its page's secret (hashed),
 * and the resume codes an ended call leaves (used once, before they expire, counted as guesses
 * like codes when wrong).
 */
#define STORE_NOTES_MAX 32  /* notes one context keeps at most */
#define STORE_NOTE_MAX  241 /* a note's text, with its NUL */
#define STORE_CTX_MOVES 16  /* moves a context read lists at most */

struct store_note {
	int seq;
	int64_t at;
	char text[STORE_NOTE_MAX];
};

struct store_context {
	char call_id[STORE_ID_MAX];
	char far_identity[STORE_URI_MAX]; /* P-Asserted-Identity or From of the far party */
	char far_uri[STORE_URI_MAX];      /* what a resume calls again */
	char near_uri[STORE_URI_MAX];
	char resumed_from[STORE_ID_MAX]; /* the call this one continues, or "" */
	int64_t started_at, ended_at;
	struct store_note notes[STORE_NOTES_MAX];
	size_t nnotes;
	struct store_move moves[STORE_CTX_MOVES];
	size_t nmoves;
};

/* Writes a call's context (its notes stay); an empty hash keeps the page secret it had. */
int store_context_put(struct store *s, const struct store_context *ctx,
                      const uint8_t hash[STORE_HASH_LEN]);

/*
 * A note as it is kept: n bytes of text trimmed, control characters as spaces, into out (len
 * bytes). EINVAL when empty or not UTF-8, EMSGSIZE over STORE_NOTE_MAX - 1 bytes.
 */
int store_note_clean(const char *text, size_t n, char *out, size_t len);

/* Adds a note (store_note_clean: EINVAL, EMSGSIZE); ENOSPC when the context holds max notes,
 * ENOENT when there is no context for call_id. */
int store_note_add(struct store *s, const char *call_id, int64_t at, const char *text, size_t max);

/* Sets a context's end. */
int store_context_end(struct store *s, const char *call_id, int64_t at);

/* Reads a context by its call's id (hash NULL) or by its page secret's hash; ENOENT if none. */
int store_context_get(struct store *s, const char *call_id, const uint8_t *hash,
                      struct store_context *ctx);

/* A meeting's bridge legs as text (the feature's own format), kept with the call's context. */
int store_context_bridge_set(struct store *s, const char *call_id, const char *text);
/* Reads them back: *text from malloc ("" when none); ENOENT when the call has no context. */
int store_context_bridge_get(struct store *s, const char *call_id, char **text);

/* Keeps a resume code (its token's hash) for call_id, to call far_uri again until expires. */
int store_resume_insert(struct store *s, const uint8_t hash[STORE_HASH_LEN], const char *call_id,
                        const char *far_uri, int64_t expires);

/* The same with the HMAC of its digits as a second row (digits NULL: none; *digits_kept says
 * whether it went in: not when another code has that hash) and the device it went to. */
int store_resume_keep(struct store *s, const uint8_t token[STORE_HASH_LEN], const uint8_t *digits,
                      const char *call_id, const char *far_uri, const char *device, int64_t expires,
                      int *digits_kept);

/* Uses a resume code once (peek: only reads it) by the first of n hashes that names a live one
 * (a token's hash, or its digits' HMAC under each key): 0 with call_id, far_uri and device
 * (NULL: not wanted); using either form of a code uses both. ENOENT when none is live (a wrong
 * guess of kind is counted against source: STORE_KEY_CODE spends the node-wide budget too),
 * EAGAIN when source must wait, EBUSY when numeric codes are paused node-wide (*wait_ms). */
int store_resume_use(struct store *s, const uint8_t (*hashes)[STORE_HASH_LEN], unsigned n,
                     enum store_key kind, int peek, const char *source, int64_t now, char *call_id,
                     char *far_uri, char *device, int64_t *wait_ms);

/* Uses a resume code once: 0 with call_id and far_uri (STORE_ID_MAX, STORE_URI_MAX) for exactly
 * one caller; ENOENT when unknown, expired or used (a failure is then counted against source),
 * EAGAIN when source must wait (*wait_ms). */
int store_resume_take(struct store *s, const uint8_t hash[STORE_HASH_LEN], const char *source,
                      int64_t now, char *call_id, char *far_uri, int64_t *wait_ms);

/*
 * Own devices: a binding (AOR -> contact) as the registrar's 2xx to a REGISTER we relayed gave
 * it, with the flow (transport:address:port) that REGISTER came on: the device's identity.
 */
struct store_binding {
	char aor[STORE_URI_MAX];
	char contact[STORE_URI_MAX];
	char flow[STORE_SOURCE_MAX];
	int64_t expires_at;
	int64_t updated_at;
};

/* Writes a binding (insert or refresh); one whose expires_at is not after now is removed. */
int store_binding_put(struct store *s, const struct store_binding *b, int64_t now);

/* The newest live binding registered on flow; ENOENT when there is none. */
int store_binding_by_flow(struct store *s, const char *flow, int64_t now, struct store_binding *b);

/* The live bindings of aor, newest first: *vp from malloc (free()), *np of them. */
int store_binding_list(struct store *s, const char *aor, int64_t now, struct store_binding **vp,
                       size_t *np);

/*
 * Own devices across nodes (sql/store_own.c, migration 009): a live call's near party as an
 * AOR, so that a pull reaching any node finds the AOR's newest call and its node; and the
 * proximity hints every node reads, each counting until its expires_at.
 */
struct store_hint {
	char aor[STORE_URI_MAX];
	char device[STORE_URI_MAX]; /* a registered contact URI or flow */
	int64_t seen_at;            /* seconds since the epoch */
	int64_t expires_at;         /* ms since the epoch */
};

/* Sets a call's near AOR (user@host, "" for none); ENOENT when there is no such call. */
int store_call_aor_set(struct store *s, const char *id, const char *aor);

/*
 * The newest live call whose near AOR is aor, served by a node whose lease holds at now (or
 * by me, or by a node with no lease row yet): its id and node in call (only those). ENOENT
 * when there is none.
 */
int store_call_by_aor(struct store *s, const char *aor, const char *me, int64_t now,
                      struct store_call *call);

/* Keeps a hint (a newer one for the same aor and device replaces it); EINVAL for an empty or
 * unterminated field. */
int store_hint_put(struct store *s, const struct store_hint *h);

/* The hints of aor still counting at now, newest first (64 at most): *vp from malloc (free()),
 * *np of them; NULL and 0 when there is none. */
int store_hint_list(struct store *s, const char *aor, int64_t now, struct store_hint **vp,
                    size_t *np);

/* The live bindings registered on flow, newest first (*vp from malloc, *np of them); ENOENT
 * when there is none. A device's flow may carry several AORs (a phone with two accounts):
 * with aor (the one it claims; NULL or "": none) only its binding when it has one there. */
int store_binding_on_flow(struct store *s, const char *flow, const char *aor, int64_t now,
                          struct store_binding **vp, size_t *np);

/* Removes the bindings of aor registered on flow (NULL: on any flow) whose contact is not a
 * line of keep (contacts, '\n' between them; NULL or "": none kept): a registrar's 2xx lists
 * what remains (RFC 3261 10.3 step 8). *removed: how many went. */
int store_binding_sync(struct store *s, const char *aor, const char *flow, const char *keep,
                       size_t *removed);

/* The asynchronous side: jobs run in order on the store's worker thread. */

enum store_op {
	STORE_OP_CALL_INSERT,    /* in: call */
	STORE_OP_CALL_STATE,     /* in: id, call_state, at */
	STORE_OP_CALL_NEAR,      /* in: id, call.near */
	STORE_OP_CALL_GET,       /* in: id; out: call */
	STORE_OP_CALL_FIND,      /* in: text (a SIP Call-ID); out: call */
	STORE_OP_CALL_LIST_LIVE, /* out: calls, n */
	STORE_OP_PURGE,          /* in: at (now), retention_ms; out: n */
	STORE_OP_MOVE_INSERT,    /* in: move */
	STORE_OP_MOVE_REDEEM,    /* in/out: redeem */
	STORE_OP_MOVE_STATE,     /* in: id, move_state, at, text (reason) */
	STORE_OP_MOVE_EVENT,     /* in: id, at, step, text (detail) */
	STORE_OP_MOVE_GET,       /* in: id; out: move */
	STORE_OP_MOVE_LIST,      /* in: id (call id, or "" for all); out: moves, n */
	STORE_OP_MOVE_EVENTS,    /* in: id; out: events, n */
	STORE_OP_FAILURE_ADD, /* in: id (move id or ""), source, redeem.key (kind), at; out: failure
	                       */
	STORE_OP_SOURCE_CHECK,   /* in: source, redeem.key (kind), at; out: failure */
	STORE_OP_MOVE_NODE,      /* in: redeem.key, hash, alt, by, now; out: redeem.move_id, text
	                            (node); EAGAIN/EBUSY as for a redeem */
	STORE_OP_NODE_RESET,     /* in: text (node), at; out: n */
	STORE_OP_MOVE_SHOW_SET,  /* in: id, hash (of the show secret) */
	STORE_OP_MOVE_BY_SHOW,   /* in: hash (of the show secret); out: move */
	STORE_OP_BATCH,          /* in: jobs, n: run in one transaction (store_submit_later) */
	STORE_OP_CALL_DIALOGS,   /* in: id, blob (the state), at */
	STORE_OP_NODE_BEAT,      /* in: node, at, lease_ms, draining */
	STORE_OP_CALL_LIST_NODE, /* in: node, at + id (the page starts after that call; id "":
	                            at the first), limit; out: states, n */
	STORE_OP_NODE_ADOPT,     /* in: node (me), at; out: text (the dead node), states, n */
	STORE_OP_CALL_TAKE,      /* in: text (a SIP Call-ID), node (me), at; out: call */
	STORE_OP_NOOP,           /* nothing: done once the jobs before it ran (err: the writes
	                            kept for an unreachable store are still waiting) */
	STORE_OP_CONTEXT_PUT,    /* in: context (from malloc), hash (all zero: keep) */
	STORE_OP_NOTE_ADD,       /* in: id (call id), at, blob (the text), limit (max notes) */
	STORE_OP_CONTEXT_END,    /* in: id, at */
	STORE_OP_CONTEXT_GET,    /* in: id (call id) or, with id "", hash; out: context */
	STORE_OP_RESUME_INSERT,  /* in: hash, id (call id), call.far.uri, at (expires); with
	                            redeem.key CODE, redeem.hash (the digits' HMAC) and
	                            call.near.uri (the device); out: n (1: the digits were kept) */
	STORE_OP_RESUME_TAKE,    /* in: hash, redeem.alt (nalt more), redeem.key (kind), source,
	                            at, limit (1: peek); out: id, call.far.uri, call.near.uri (the
	                            device), redeem.wait_ms */
	STORE_OP_BINDING_PUT,    /* in: binding (expires_at <= at: removed), at */
	STORE_OP_BINDING_FLOW,   /* in: text (a flow), at; out: binding */
	STORE_OP_CONTEXT_BRIDGE_SET, /* in: id (call id), blob (the bridge legs' state) */
	STORE_OP_CONTEXT_BRIDGE_GET, /* in: id; out: blob (from malloc, freed with the job; "":
	                                none) */
	STORE_OP_BINDING_LIST,       /* in: binding.aor, at; out: bindings, n, and the AOR's
	                                hints counting at at: hints, nhints */
	STORE_OP_CALL_AOR,           /* in: id, binding.aor (the near AOR) */
	STORE_OP_PULL_FIND,       /* in: binding.flow, binding.aor (claimed, or ""), node (me), at;
	                             out: bindings, n (as BINDING_ON_FLOW), and when they name one
	                             AOR, its newest live call: call.id, call.node ("": none) */
	STORE_OP_HINT_PUT,        /* in: binding.aor, binding.contact (the device),
	                             binding.updated_at (seen_at, s), binding.expires_at */
	STORE_OP_BINDING_ON_FLOW, /* in: binding.flow, binding.aor (claimed, or ""), at; out:
	                             bindings, n */
	STORE_OP_BINDING_SYNC,    /* in: binding.aor, binding.flow ("": any), blob (the contacts
	                             kept, or NULL); out: n (removed) */
};

/* One queued operation: the caller fills op and its inputs, the worker the result. */
struct store_job {
	enum store_op op;
	char id[STORE_ID_MAX];
	char source[STORE_SOURCE_MAX];
	char step[32];
	char text[STORE_TEXT_MAX];
	int64_t at;
	int64_t retention_ms;
	enum store_call_state call_state;
	enum store_move_state move_state;
	struct store_call call;
	struct store_move move;
	struct store_redeem redeem;
	int err;                         /* out: what the synchronous function returned */
	struct store_failure failure;    /* out */
	size_t n;                        /* out: rows listed, or calls purged */
	struct store_call *calls;        /* out: owned by the store, valid during the callback */
	struct store_move *moves;        /* out: likewise */
	struct store_move_event *events; /* out: likewise */
	/* out: LIST_NODE, ADOPT; owned by the store, but a done callback may take it (and set it
	 * NULL): then it is the callback's to free (store_live_free) */
	struct store_live *states;
	size_t limit;                 /* in: LIST_NODE (0: no limit) */
	uint8_t hash[STORE_HASH_LEN]; /* in: MOVE_SHOW_SET, MOVE_BY_SHOW */
	struct store_job *jobs;       /* in: BATCH (owned by the store) */
	char node[STORE_URI_MAX];     /* in: this node (NODE_BEAT, LIST_NODE, ADOPT, TAKE) */
	int64_t lease_ms;             /* in: NODE_BEAT */
	int draining;                 /* in: NODE_BEAT */
	/* in: CALL_DIALOGS: the state, from malloc; the store owns it once submitted (it is
	 * freed with the job, also when a submit fails) */
	char *blob;
	/* in: CONTEXT_PUT (from malloc, the store owns it once submitted); out: CONTEXT_GET
	 * (owned by the store, valid during the callback) */
	struct store_context *context;
	struct store_binding binding;   /* in/out: BINDING_* */
	struct store_binding *bindings; /* out: BINDING_LIST; owned by the store */
	struct store_hint *hints;       /* out: BINDING_LIST; owned by the store */
	size_t nhints;
};

/* Receives a finished job on the loop thread; the job is freed when it returns. */
typedef void(store_done_h)(struct store_job *job, void *arg);

/* Starts the worker and reports completions to root's thread; call on that thread. */
int store_attach(struct store *s, struct su_root_s *root);

/* Queues a copy of job; done (may be NULL: fire and forget) runs on the loop thread afterwards.
 * Jobs run in order, except that redeems (MOVE_REDEEM, MOVE_NODE) overtake queued jobs: submit
 * them only once the move's insert has completed. */
int store_submit(struct store *s, const struct store_job *job, store_done_h *done, void *arg);

/* The same for a read that need not see the writes store_submit_later still holds (up to 50
 * ms of them): it does not push them out as a transaction of their own, so reads made for
 * every call (own devices' check of who owns it) leave the batches whole. */
int store_submit_read(struct store *s, const struct store_job *job, store_done_h *done, void *arg);

/*
 * Queues a copy of a fire-and-forget write of one row (CALL_INSERT, CALL_STATE, CALL_NEAR,
 * CALL_DIALOGS, NODE_BEAT, BINDING_PUT, BINDING_SYNC, CALL_AOR; EINVAL for the others) to go with
 * others: within 50 ms, or at 256 of them, or before the next store_submit (order is kept), they
 * run on the worker as one job in one transaction. One wake-up of the worker and one commit for
 * many calls. A write that fails for its own reason is logged and dropped (the others still land);
 * writes the store cannot take (PostgreSQL unreachable, SQLite locked) are kept, in order, and
 * tried again after 0.2 s, doubling to 5 s; until they land, any later job fails at once with the
 * store's error (up to 20000 are kept: beyond, the oldest are dropped and logged).
 */
int store_submit_later(struct store *s, const struct store_job *job);

/* Queue the writes store_submit_later holds now. */
void store_flush(struct store *s);

#endif
