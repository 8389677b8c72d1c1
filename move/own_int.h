/* Internal to own devices (own.c, own_move.c). */
#ifndef QRXFER_MOVE_OWN_INT_H
#define QRXFER_MOVE_OWN_INT_H

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
};

/* A call's near party as an AOR key, for the leg it was read from. In the call's home. */
struct own_aor {
	const struct leg *leg;
	char key[OWN_KEY_MAX];
};

/* A pull or a push waiting for the store to say which bindings count. */
struct own_ask {
	LIST_ENTRY(own_ask) link;
	struct own *own;
	nta_incoming_t *irq; /* pull: the device's INVITE */
	msg_t *req;
	char flow[STORE_SOURCE_MAX];
	char source[STORE_SOURCE_MAX];
	char call_id[33]; /* push: the call; pull: the store's newest call of the AOR */
	char near_contact[STORE_URI_MAX];
	struct leg *refer_leg; /* push asked by REFER: NOTIFYs go there */
	char refer_event[40];
	long long arrived;
	unsigned cancelled : 1;
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
	struct store_binding *later; /* rung once the nearest had near_ring seconds alone */
	size_t nlater;
	su_timer_t *timer, *give_up;
	unsigned done : 1;
};

/* own.c */
/* A push that cannot go answered: 491 a move under way (EBUSY), 480 no other device (ENODEV),
 * 488 otherwise. */
void own_push_refused(nta_incoming_t *irq, int err);
struct own *own_of(struct sip *s);
int own_aor_key(const url_t *u, char *out, size_t len);
int own_leg_aor(struct leg *leg, char *out, size_t len);
const char *own_call_aor(struct own *o, struct call *c);
void own_ask_free(struct own_ask *a);

/* own_hint.c: hints are in the store (h: the AOR's, read with its bindings) */
int own_hint_rank(struct own *o, const struct store_hint *h, size_t nh, const char *aor,
                  const struct store_binding *b, const char *near_flow);

/* own_node.c: across nodes */
/* Hears of finished moves (a new near AOR). ENOSPC. */
int own_node_init(struct own *o);
/* Writes c's near AOR with its row (batched), for a pull on any node to find it. */
void own_node_call_aor(struct own *o, struct call *c);
/* The AOR's newest call (job: PULL_FIND) is on another node: a's INVITE is bridged there, a
 * freed; 1. 0: serve it here. */
int own_node_pull(struct own_ask *a, const struct store_job *job);
/* The call call_id (the store's newest of aor) when it is here, aor's and may move now. */
struct call *own_node_local_call(struct own *o, const char *call_id, const char *aor);
/* An INVITE another node bridged here for a pull (sip:<pull_code>.<call>.<token>@): 1 when it
 * is one (answered or pulled), 0 when not. */
int own_node_invite(struct own *o, struct sip *s, nta_incoming_t *irq, const sip_t *sip,
                    msg_t *req);

/* own_move.c */
void own_pull_found(struct own_ask *a, const struct store_binding *b);
void own_push_found(struct own_ask *a, struct store_binding *v, size_t n,
                    const struct store_hint *h, size_t nh);
int own_push_response(struct own *o, struct call *c, struct leg *leg, int status, const sip_t *sip);
void own_push_free(struct own_push *p);

#endif
