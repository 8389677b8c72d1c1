/* Internal to own devices (own.c, own_move.c). */
#ifndef QRXFER_MOVE_OWN_INT_H
#define QRXFER_MOVE_OWN_INT_H

#include "move/lookups.h"
#include "move/move_int.h"
#include "move/own.h"

#define OWN_RING_MAX 16  /* devices one push rings at most */
#define OWN_KEY_MAX  320 /* an AOR as user@host */

/* Own devices on one stack. Owned by its hooks: freed by their stop. */
struct own {
	struct sip *sip;
	struct own_conf conf; /* pull_code, push_code: strdup'd */
	int slot;             /* the calls' place for a push (struct own_push) */
	int aor_slot;         /* the calls' place for their near party's AOR (struct own_aor) */
	LIST_HEAD(, own_ask) asks; /* waiting for the store's bindings */
	struct lookups *pulls;     /* the budget of *11 INVITEs' store lookups */
};

/*
 * Who owns a call: the AOR of a live binding on the near device's flow (never From/To alone),
 * for the near leg it was found for. In the call's home (the call's aor_slot).
 */
struct own_aor {
	const struct leg *leg; /* the near leg it is for */
	enum { OWN_AOR_UNKNOWN, OWN_AOR_ASKING, OWN_AOR_VERIFIED, OWN_AOR_NONE } state;
	unsigned gen;            /* which lookup's answer counts */
	char key[STORE_URI_MAX]; /* VERIFIED: the AOR */
	/* the leg a pull or push brings in, whose AOR is known already: it becomes leg once it is
	 * the near leg */
	const struct leg *next;
	char next_key[STORE_URI_MAX];
};

/* A pull, a push or a call's AOR check waiting for the store to say which bindings count. */
struct own_ask {
	LIST_ENTRY(own_ask) link;
	struct own *own;
	enum { OWN_ASK_PULL, OWN_ASK_PUSH, OWN_ASK_VERIFY } kind;
	nta_incoming_t *irq; /* pull: the device's INVITE; push: the MESSAGE or REFER */
	msg_t *req;
	char flow[STORE_SOURCE_MAX]; /* the device's flow: the puller's, the near device's */
	char claim[OWN_KEY_MAX];     /* the AOR its From/To names: picks one of a flow's AORs */
	char aor[STORE_URI_MAX];     /* push: the call's verified AOR */
	char source[STORE_SOURCE_MAX];
	char call_id[33]; /* push, verify: the call; pull: the AOR's newest */
	unsigned gen;     /* verify: the own_aor lookup it answers */
	/* push asked by REFER: the dialog of the leg it came on (NOTIFYs go there), found again
	 * by these when the store answers: the leg may be gone by then */
	char refer_call_id[128], refer_ltag[64], refer_rtag[64];
	char refer_event[40];
	long long arrived;
	unsigned cancelled : 1;
	unsigned by_refer : 1;
	sip_move_h *cb;
	void *cb_arg;
};

/* A push ringing the user's devices: the call's slot while it rings. */
struct own_push {
	struct own *own;
	struct call *call;
	struct move *m;
	struct leg *ring[OWN_RING_MAX];
	unsigned nring, nfailed;
	char aor[STORE_URI_MAX];     /* the verified AOR whose devices ring */
	struct store_binding *later; /* rung once the nearest had near_ring seconds alone */
	size_t nlater;
	su_timer_t *timer, *give_up;
	unsigned done : 1;
};

/* own.c */
/* A push that cannot go answered: 491 a move under way (EBUSY), 480 no other device (ENODEV),
 * 403 no verified AOR (EPERM: the near device has no live binding on its flow), 488 otherwise. */
void own_push_refused(nta_incoming_t *irq, int err);
struct own *own_of(struct sip *s);
int own_aor_key(const url_t *u, char *out, size_t len);
int own_leg_aor(struct leg *leg, char *out, size_t len);
struct own_ask *own_ask_new(struct own *o, const char *source);

/* own_aor.c */
/* The call's verified AOR, or NULL (none, or still being looked up: then a lookup is asked). */
const char *own_call_aor(struct own *o, struct call *c);
/* The same without asking the store anything (a pull looks at every call). */
const char *own_call_aor_peek(struct own *o, struct call *c);
/* Who owns the call as far as known now for its near leg (a lookup asked if not yet); NULL
 * only without memory or a near leg. */
struct own_aor *own_call_who(struct own *o, struct call *c);
/* The near device's AOR was found (by a push's own lookup). */
void own_call_aor_set(struct own *o, struct call *c, const char *aor);
/* leg (a pull's or a push's device) is of aor: it counts once it is the call's near leg. */
void own_call_aor_next(struct own *o, struct call *c, const struct leg *leg, const char *aor);
/* Which of a flow's bindings is the device's: the one of the AOR it claims, else the only AOR
 * on that flow; -1 when none or several others. */
long own_binding_pick(const struct store_binding *v, size_t n, const char *claim);
/* A registered flow as the URI we send to ("udp:192.0.2.1:5060" -> sip:192.0.2.1:5060;
 * transport=udp), in home; NULL (and why) when it is not an address we may send to. */
url_t *own_flow_url(su_home_t *home, const char *flow, const char **why);
void own_ask_free(struct own_ask *a);

/* own_hint.c: hints are in the store (h: the AOR's, read with its bindings) */
int own_hint_rank(struct own *o, const struct store_hint *h, size_t nh, const char *aor,
                  const struct store_binding *b, const char *near_flow);

/* own_node.c: across nodes */
/* Hears of finished moves (a new near AOR). ENOSPC. */
int own_node_init(struct own *o);
/* Writes c's near AOR with its row (batched), for a pull on any node to find it. */
void own_node_call_aor(struct own *o, struct call *c);
/* The AOR's newest call (job: PULL_FIND; b: the device's binding, of that AOR) is on another
 * node: a's INVITE is bridged there, a freed; 1. 0: serve it here. */
int own_node_pull(struct own_ask *a, const struct store_job *job, const struct store_binding *b);
/* The call call_id (the store's newest of aor) when it is here, aor's and may move now. */
struct call *own_node_local_call(struct own *o, const char *call_id, const char *aor);
/* An INVITE another node bridged here for a pull (sip:<pull_code>.<call>.<token>@): 1 when it
 * is one (answered or pulled), 0 when not. */
int own_node_invite(struct own *o, struct sip *s, nta_incoming_t *irq, const sip_t *sip,
                    msg_t *req);

/* own_move.c */
void own_pull_found(struct own_ask *a, const struct store_binding *b);
/* Answers what asked for a push (its MESSAGE/REFER, its callback) and frees a. */
void own_push_answer(struct own_ask *a, int err, struct move *m);
void own_push_found(struct own_ask *a, struct store_binding *v, size_t n,
                    const struct store_hint *h, size_t nh);
int own_push_response(struct own *o, struct call *c, struct leg *leg, int status, const sip_t *sip);
void own_push_free(struct own_push *p);

#endif
