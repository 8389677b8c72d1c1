/* Internal to move/: what the move's files share. */
#ifndef QRXFER_MOVE_INT_H
#define QRXFER_MOVE_INT_H

#include <stdint.h>
#include <sys/queue.h>
#include <time.h>

#include "codes/code.h"
#include "sql/store.h"
#include "sip/b2bua.h"
#include "move/move.h"
#include "move/pool.h"

#define MOVE_LINGER_MS  60000 /* an ended move stays readable this long */
#define MOVE_RETRY_MS   20    /* waiting for the far leg to be free */
#define MOVE_RETRY_MAX  250
#define MOVE_491_TRIES  3
#define MOVE_REFER_HOLD 64000 /* how long we wait for a referred phone's final NOTIFY */
#define MOVE_SILENT_MS  16000 /* a re-INVITE with no answer at all in this time: C is gone */
#define MOVE_CODE_TRIES 8     /* numeric codes made before giving up on a unique one */
#define MOVE_NONCE_LEN  8     /* digits an answer out of dialog must carry */
#define MOVE_BUCKETS    16384
#define MOVE_QR_PX      6 /* pixels a QR module in the code MESSAGE's image */

/* The move's part of one stack. Owned by the move's hooks on it: freed by their stop. */
struct move_stack {
	struct move **move_table;        /* MOVE_BUCKETS chains by id64 */
	struct move **code_table;        /* MOVE_BUCKETS chains by numeric code */
	LIST_HEAD(, move) moves;         /* moves of this node, live and recently ended */
	LIST_HEAD(, redeem) redeems;     /* INVITEs waiting for the store to redeem their code */
	LIST_HEAD(, refer_out) refers;   /* REFERs sent to phones, until their last NOTIFY */
	LIST_HEAD(, code_msg) code_msgs; /* code MESSAGEs until delivered or given up */
	LIST_HEAD(, early_ask) early;    /* moves asked before the caller's ACK came */
	struct scan_limit *scan;         /* images in the decoder, and each source's rate */
	unsigned long sms_seq;           /* reference of the last SMS asked of the module */
	char sms_seen[64][40];           /* the gateway's ids of the last SMS answers, taken once */
	unsigned sms_seen_next;
	struct log_limit refused_log; /* refused codes: 10 lines a second at most */
	struct move_pool *pool;       /* codes made ahead, or NULL ([codes] pool = 0) */
	unsigned pool_said : 1;       /* the log said once that a code was made on the loop */
	struct sip *sip;
	struct dtmf_code *dtmf; /* the features' DTMF codes (dtmf.c) */
	unsigned ndtmf;
	LIST_HEAD(, dtmf_wait) dtmf_waits; /* codes heard that a longer one may still extend */
	struct {
		const struct move_observer *o;
		void *arg;
	} observers[MOVE_OBSERVERS_MAX]; /* move_observer_add */
	unsigned nobservers;
};

/*
 * A move's phase: one state machine. Only move_to() (move.c) changes it, and only along the
 * transitions it knows. The API and the store see the coarser enum sip_move_state (move_state()).
 */
enum move_phase {
	MOVE_STORING,      /* the code is being written to the store */
	MOVE_OFFERED,      /* the code is out, waiting for a device */
	MOVE_REDEEMED,     /* a device presented the code */
	MOVE_CONFIRMING,   /* waiting for yes from A and/or C, or for images */
	MOVE_DIALING,      /* RFC 3725: our INVITE without an offer is out to B */
	MOVE_REINVITING,   /* the re-INVITE with B's media is out to C */
	MOVE_GLARE,        /* C answered 491: waiting to re-INVITE again (RFC 3261 14.1) */
	MOVE_ANSWERING,    /* C took B's media; B is being answered (our 200, its ACK) */
	MOVE_DONE,         /* B holds the near leg; A got a BYE */
	MOVE_FAILED,       /* A keeps the call (or the call ended) */
	MOVE_ROLLING_BACK, /* failed after C took B's media: the re-INVITE with A's media is out */
	MOVE_VERIFYING,    /* anchored: B has the near leg, A is on hold, B's media not seen yet */
	MOVE_UNDONE,       /* anchored: A took the call back in the undo window */
};

/* One move. Owned by its stack's list (move_stack.moves) until its record lingers out. */
struct move {
	LIST_ENTRY(move) link;
	struct move *hnext, *cnext; /* in the sip's tables by id64 and by numeric code */
	struct sip *sip;
	struct call *call; /* NULL once the move has let go of it */
	char id[17];
	char call_id[33]; /* the call's id, kept after the move lets go of it */
	uint64_t id64;
	char token[CODE_TOKEN_LEN + 1];
	char code[12];
	uint8_t show_hash[CODE_HASH_LEN]; /* of the show page's secret */
	char show[CODE_SECRET_LEN + 1];   /* the secret itself, only until it is sent */
	char qr_uri[512];
	char reason[128];
	char *taken_by;
	char taken_from[STORE_SOURCE_MAX]; /* the source that presented the code */
	char *target;                      /* the device we dial (RFC 3725), or NULL */
	char nonce[MOVE_NONCE_LEN + 1];    /* what an answer sent out of dialog must repeat */
	unsigned code_tries;               /* numeric codes made: each must be unique on offer */
	time_t created, expires;
	enum move_phase phase; /* changed only by move_to() */
	struct leg *b;         /* the new near leg while it joins */
	/* Facts, not phases: how B came, who left, what the policy asks, what came in. */
	unsigned third_party : 1; /* we dial B (RFC 3725: landing page, images) */
	unsigned b_offered : 1; /* B's INVITE carried an offer (else C offers, B answers in ACK) */
	unsigned b_gone : 1;    /* B left while C had the re-INVITE: finish, then roll back */
	unsigned a_gone : 1;    /* A hung up while B was on its way: the call goes on for B */
	unsigned linger : 1;    /* the record's time is up: freed once its store jobs are done */
	unsigned need_near : 1, need_far : 1, need_scans : 1;            /* what the policy asks */
	unsigned yes_near : 1, yes_far : 1, scan_near : 1, scan_new : 1; /* what came in */
	unsigned answered_near : 1, answered_far : 1; /* each side answers once */
	char *b_sdp;           /* B's offer (or its answer, in RFC 3725 order) */
	struct leg *refer_leg; /* the leg whose REFER asked for the move: NOTIFYs go there */
	char *refer_event;
	su_timer_t *timer;
	unsigned tries;       /* waits for the far leg to be free */
	unsigned glare_tries; /* re-INVITEs C answered 491 */
	unsigned jobs;        /* store jobs that will call back with this move */
	long long t_redeem, t_reinvite, t_answer; /* monotonic microseconds */
	sip_move_h *cb;
	void *cb_arg;
	unsigned long sms_ref[2]; /* near, far */
	char near_number[32], far_number[32];
	struct move_code *made; /* the code as made (its images), while it may be sent again */
	/* Anchored moves (verify.c): A on hold until B's media is seen, then for the undo. */
	struct leg *held;         /* A's leg, kept on hold */
	char *a_sdp;              /* A's own SDP, to point rtpengine at it again */
	char *a_sdp_out;          /* what A last got from us (rtpengine's), for its hold */
	unsigned counted : 1;     /* the counters' baseline is taken */
	unsigned undoing : 1;     /* A's resume is being served: the undo window's end waits */
	unsigned taking_back : 1; /* rtpengine is pointing the near side at A again */
	struct leg *redial;       /* A's new INVITE with the code again, taking the call back */
	int back_status;          /* why the call goes back to A: the move's failure */
	char back_why[96];
	long long base_b, base_c, base_rtcp, t_verified;
	/* Unanchored moves proved by B's RTCP-XR reports (xr.c). */
	unsigned xr : 1; /* A on hold until B's report or the deadline */
	char b_flow[80]; /* B's flow (sip_flow_key) when it dialled in: its reports come on it */
};

/* An INVITE or a dial request waiting for the store to redeem its code. */
struct redeem {
	LIST_ENTRY(redeem) link;
	struct sip *sip;
	nta_incoming_t *irq; /* the new device's INVITE, or NULL when we are to dial */
	msg_t *req;          /* and its message, while we ask which node has the call */
	char source[STORE_SOURCE_MAX];
	char *sdp, *from_uri, *call_id, *target;
	long long arrived;
	unsigned cancelled : 1;
	enum store_key key;
	uint8_t hash[CODE_HASH_LEN];
	uint8_t alt[STORE_HASHES_MAX - 1][CODE_HASH_LEN]; /* numeric: under older keys */
	unsigned nalt;
	char named[17]; /* the move a signed token names */
	sip_move_h *cb;
	void *cb_arg;
};

/* A move asked in a call whose caller's ACK has not come yet (a proxy's parallel workers let
 * the request overtake it): it waits for the ACK rather than fail. */
struct early_ask {
	LIST_ENTRY(early_ask) link;
	struct call *call;
	struct leg *leg;     /* the near leg it came on */
	nta_incoming_t *irq; /* the MESSAGE or REFER, answered once the call is up */
	unsigned refer : 1;
	char event[40]; /* a REFER's Event for its NOTIFYs */
	char source[STORE_SOURCE_MAX];
};

/* An out-of-dialog REFER asking a known phone to dial a code. */
struct refer_out {
	LIST_ENTRY(refer_out) link; /* in the sip's list, so shutdown frees it */
	struct sip *sip;
	nta_leg_t *dlg;      /* the REFER's dialog: its NOTIFYs come to it */
	nta_outgoing_t *orq; /* the REFER, until answered */
	su_timer_t *timer;
	sip_move_h *cb;
	void *cb_arg;
	char move_id[17];
};

/* move.c */
struct move_stack *move_stack(struct sip *s);
long long move_now_us(void);
void move_info_fill(const struct move *m, struct sip_move_info *i);
void move_reply(struct move *m, int err);
void move_event(struct move *m, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
enum sip_move_state move_state(const struct move *m);
int move_to(struct move *m, enum move_phase to, const char *why);
unsigned move_code_bucket(const char *code);
struct move *move_by_id64(struct sip *s, uint64_t id64);
struct move *move_by_id(struct sip *s, const char *id);
struct move *move_by_code(struct sip *s, const char *digits);
void move_index(struct move *m);
void move_unindex(struct move *m);
void move_free(struct move *m);
void move_detach(struct move *m);
void move_notify_refer(struct move *m, int status, const char *phrase, int final);
void move_leg_message(struct leg *leg, const char *ctype, const char *body, size_t len);
/* offer.c: the number in a URI's user part ("+" and digits), or "" (no number there) */
const char *move_uri_number(const char *uri, char *out, size_t len);
void move_code_message(struct move *m, const char *ctype, const char *body, size_t len,
                       const char *text);
void move_code_messages_free(struct move_stack *ms);
/* The call's near party is to from now on (from, held or going, is no longer near). */
void move_swap_near(struct call *c, struct leg *to, struct leg *from);
void move_fail(struct move *m, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void move_offer_expired(su_root_magic_t *rm, su_timer_t *t, void *arg);

/* store.c */
enum store_move_state move_store_state(enum sip_move_state st);
void move_store_job(struct move *m, struct store_job *job);
void move_source_of(msg_t *req, char *out, size_t len);
void move_guess_failed(struct sip *s, const char *source, enum store_key kind, const char *named);

/* offer.c */
void move_pool_conf_of(struct sip *s, struct move_pool_conf *pc);
int move_start_on(struct call *c, const char *source, sip_move_h *cb, void *arg);
void move_revive(struct call *c, const struct store_move *sm);

/* survive.c */
int move_survive_init(struct sip *s);

/* media.c */
/* The observers' header lines for the new device of c, into out (NUL-terminated, may be ""). */
void move_new_device_headers(struct call *c, char *out, size_t len);
void move_rollback(struct move *m);
void move_go(struct move *m);

/* confirm.c */
void move_after_redeem(struct move *m);
void move_check_confirmed(struct move *m);
int move_answer(struct move *m, int near, const char *body, size_t len, int in_dialog);

/* redeem.c */
void move_redeem_free(struct redeem *r);
int move_for_us(struct sip *s, const url_t *u);

/* ask.c */
void move_early_asks_run(struct sip *s, struct call *c, int up);

/* dtmf.c */
void move_dtmf_free(struct move_stack *ms);

/* refer.c */
void move_refer_out_free(struct refer_out *ro);

/* scan.c */
int move_scan_submit(struct sip *s, const void *image, size_t len, const char *who,
                     const char *target, const char *call_id, const uint8_t *show_hash,
                     const struct sockaddr *peer, nta_incoming_t *irq, sip_move_h *cb, void *arg);

/* The move under way on c, if any. */
static inline struct move *call_move(const struct call *c)
{
	return c->feature;
}

/* The hooks' work, by phase (each file's own). */
int move_invite(struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
int move_invite_response(struct move *m, struct leg *leg, int status, const char *phrase,
                         const sip_t *sip);
int move_ack(struct move *m, struct leg *leg, const sip_t *sip);
int move_leg_left(struct move *m, struct leg *leg);
int move_leg_terminated(struct move *m, struct leg *leg);
void move_call_ending(struct move *m);
void move_call_gone(struct move *m);
int move_refer(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
/*
 * A REFER in a call whose Refer-To is sip:<user>@ of ours: 0 when it is not (relay it), -1 when
 * it was answered (403: not from a call's near device; our URI is never passed on), 1 with the
 * sender's address key in source and the NOTIFYs' Event (RFC 3515 2.4.6) in event.
 */
int move_refer_ours(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip,
                    msg_t *req, const char *user, char source[STORE_SOURCE_MAX], char event[40]);
int move_message(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
int move_info(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req);
/* Where a code holder may have us call: out is the URI, *direct says not through the upstream;
 * EPERM for a target outside our domain and [move] dial_domains, EINVAL for a malformed one. */
int move_dial_target(struct sip *s, const char *target, char *out, size_t len, int *direct);

/* anchor.c: the media anchor (rtpengine), when [media] rtpengine is set */
struct benc;
typedef void move_anchor_h(void *arg, int err, const char *sdp, size_t len,
                           const struct benc *reply);
int move_anchored(struct call *c);
const char *move_anchor_near_sdp(struct call *c);
int move_anchor_repoint(struct call *c, const char *sdp, move_anchor_h *cb, void *arg);
int move_anchor_query(struct call *c, move_anchor_h *cb, void *arg);
int move_anchor_reinvite(struct call *c, struct leg *leg, const char *sdp);
unsigned move_anchor_verify_ms(void);
unsigned move_anchor_undo_secs(void);
char *move_sdp_with(const char *sdp, const char *dir);
/* sdp as the near-side party leg is to get it from us (our one origin toward it, RFC 3264 8):
 * free() it; NULL: send sdp as it is. */
char *move_anchor_for_near(struct call *c, struct leg *leg, const char *sdp, size_t len,
                           size_t *outlen);
/* The call goes on without rtpengine: each side is re-INVITEd with the other's own SDP. */
int move_anchor_unanchor(struct call *c, const char *why);

/* xr.c: unanchored moves proved by the new device's RFC 6035 reports ([media] verify_xr) */
int move_xr_start(struct move *m, struct leg *a);
int move_xr_b_left(struct move *m, struct leg *leg);
void move_xr_rolled_back(struct move *m, const sip_t *sip);

/* verify.c: make-before-break and undo of anchored moves */
void move_verify_start(struct move *m, struct leg *a);
int move_verify_b_left(struct move *m, struct leg *leg);
int move_verify_reinvite(struct move *m, struct leg *leg, nta_incoming_t *irq, const sip_t *sip);
/* An INVITE presenting a code (token, or numeric digits) whose move is in its undo window, from
 * the held near device: 1 when taken (the call comes back to it on this new dialog). */
int move_verify_redial(struct sip *s, nta_incoming_t *irq, const sip_t *sip, uint64_t id64,
                       const char *digits);

/* record.c: the calls' rows in the store */
int move_record_init(struct sip *s);
void move_record_near(struct call *c);

#endif
