/* The stack, calls and legs: internal to sip/, and the leg API features above it use. */
#ifndef QRXFER_SIP_B2BUA_H
#define QRXFER_SIP_B2BUA_H

#define NUA_MAGIC_T          struct sip
#define NUA_HMAGIC_T         struct bound
#define SU_TIMER_ARG_T       void
#define NTA_OUTGOING_MAGIC_T struct txn

#include <sys/queue.h>
#include <sys/socket.h>

#include <sofia-sip/nua.h>
#include <sofia-sip/nua_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tag_io.h>
#include <sofia-sip/nta.h>

#include "sip/sip.h"
#include "sip/hook.h"
#include "metrics/metrics.h"
#include "util/log.h"

/* What a handle's magic points to; the kind tells which struct it heads. */
struct bound {
	enum { BOUND_LEG, BOUND_TXN, BOUND_HOOK, BOUND_ZOMBIE } kind;
	int hook_kind; /* BOUND_HOOK: which of its own structs the feature that bound it means */
};

/* One in-dialog request relayed to the other leg, waiting for its answer. */
struct relay {
	STAILQ_ENTRY(relay) link;
	nua_event_t method;    /* nua_i_message, nua_i_info or nua_i_update */
	nua_handle_t *from_nh; /* answered here; saved events lose their handle */
	nua_saved_event_t saved[1];
};

/* One dialog of a call. Owned by its call. */
struct leg {
	struct bound b;
	struct call *call;
	nua_handle_t *nh;
	unsigned near : 1;       /* faces the device the user holds */
	unsigned answered : 1;   /* its initial INVITE got a 2xx */
	unsigned terminated : 1; /* the stack has let go of the dialog */
	unsigned ending : 1;     /* we sent BYE or CANCEL on it */
	unsigned incoming : 1;   /* the peer sent the initial INVITE */
	SLIST_ENTRY(leg) link;   /* in the call's list of every leg it has */
	char dtmf[12];           /* the last DTMF digits from this leg, for the feature code */
	size_t dtmf_len;
	long long dtmf_at;
	STAILQ_HEAD(, relay) relays; /* in request order */
	char *call_id;               /* in the call's home */
	char *ltag, *rtag;           /* our tag and the peer's in this dialog, once confirmed */
	unsigned pending;            /* our requests on it still without a final answer */
	char *uri;
};

/* A near leg bridged to a far leg. Owned by the sip's call list; memory in home. */
struct call {
	su_home_t home[1];
	TAILQ_ENTRY(call) link; /* in the sip's list, in creation order */
	struct call *hnext;     /* in the sip's table by id */
	struct sip *sip;
	char id[33];
	struct leg *near, *far; /* NULL until made */
	SLIST_HEAD(, leg) legs; /* near, far, and legs joining or leaving in a move */
	struct leg *in, *out;   /* the leg the INVITE came in on, the one we made */
	void *feature;          /* what a hooked feature keeps for this call (a move), or NULL */
	enum sip_call_state state;
	unsigned ack_pending : 1;  /* out's 2xx waits for in's ACK */
	unsigned offer_busy : 1;   /* a re-INVITE or UPDATE is in flight */
	unsigned reinvite_ack : 1; /* the relayed re-INVITE's 2xx waits for an ACK */
	struct leg *reinvite_from;
	su_timer_t *max_timer;
	time_t created, answered;
	char *far_origin;      /* the far party's o= line: user and session id */
	char *far_origin_tail; /* and nettype, addrtype, address; the version is far_version */
	unsigned long long far_version;
	char *far_body;        /* the last SDP sent to far, as it came */
	char *near_sdp;        /* the last SDP the near device sent, for a rollback */
	unsigned recorded : 1; /* its row is in the store (the records' hooks say so) */
};

/* An out-of-dialog request relayed on a fresh handle (MESSAGE, REGISTER). */
struct txn {
	struct bound b;
	struct sip *sip;
	nua_handle_t *in_nh, *out_nh;
	nta_outgoing_t *orq;
	nua_saved_event_t saved[1];
	LIST_ENTRY(txn) link;
};

struct sip {
	su_root_t *root;
	su_home_t home[1];
	nua_t *nua;
	nta_agent_t *nta;     /* client side for REGISTER forwarding */
	struct sip_conf conf; /* strings in home */
	url_t *upstream;
	char *upstream_route; /* <sip:upstream;lr> */
	char *path;           /* <sip:us;lr> for REGISTER */
	url_t *self;          /* conf.listen, parsed once */
	char *node;           /* sip:host:port: how other nodes reach this one */
	struct sockaddr_storage upstream_addr;
	socklen_t upstream_addrlen;
	TAILQ_HEAD(, call) calls;
	struct call **call_table; /* CALL_BUCKETS chains by id */
	LIST_HEAD(, txn) txns;
	LIST_HEAD(, zombie) zombies; /* handles of ended calls still waiting for answers */
	struct sip_work *work;       /* a worker for slow jobs (image decoding) */
	struct {
		const struct sip_call_hooks *h;
		void *arg;
	} hooks[SIP_HOOKS_MAX]; /* what features registered, in order */
	unsigned nhooks;
	sip_done_h *done;
	void *done_arg;
	su_timer_t *shutdown_timer;
	unsigned shutting_down : 1;
	unsigned detached : 1; /* the store is closing: its callbacks touch nothing */
	unsigned shutdown_sent : 1;
};

#define CALL_BUCKETS 16384

/* b2bua.c */
void b2bua_stop(struct sip *s);
/* No call, relayed request or waiting handle left: a shutdown can finish. */
static inline int b2bua_idle(const struct sip *s)
{
	return TAILQ_EMPTY(&s->calls) && LIST_EMPTY(&s->txns) && LIST_EMPTY(&s->zombies);
}

/* call.c */
int call_alloc(struct call **cp, struct sip *s);
struct call *call_find(struct sip *s, const char *id);
struct leg *call_leg_new(struct call *c, int near, int incoming);
void call_end(struct call *c, int status, const char *reason);
void call_leg_terminated(struct leg *leg);
void call_leg_end(struct leg *leg, const char *reason);
void call_leg_tags(struct leg *leg, const sip_t *sip);
void call_zombie_event(struct sip *s, nua_event_t ev, int status, nua_handle_t *nh,
                       struct bound *b);
void call_zombies_forget(struct sip *s);
void call_zombies_drop(struct sip *s);
struct leg *call_other(struct leg *leg);
const char *call_side(const struct leg *leg);
char *call_copy_phrase(struct call *c, int status, const char *phrase);

/* work.c: jobs run on a worker thread; done runs on the loop afterwards */
struct sip_work;
typedef void sip_work_h(void *arg);
int sip_work_alloc(struct sip_work **wp, su_root_t *root);
int sip_work_submit(struct sip_work *w, sip_work_h *run, sip_work_h *done, void *arg);
void sip_work_free(struct sip_work *w);

/* hook.c: the core's calls into the hooks features registered (sip/hook.h) */
int hook_invite(struct sip *s, nua_handle_t *nh, const sip_t *sip, msg_t *req);
int hook_invite_response(struct call *c, struct leg *leg, int status, const char *phrase,
                         const sip_t *sip);
int hook_ack(struct call *c, struct leg *leg, const sip_t *sip);
int hook_leg_left(struct call *c, struct leg *leg);
int hook_leg_terminated(struct call *c, struct leg *leg);
void hook_call_active(struct call *c);
void hook_call_ending(struct call *c);
void hook_call_gone(struct call *c);
int hook_refer(struct sip *s, struct leg *leg, nua_handle_t *nh, const sip_t *sip, tagi_t tags[]);
int hook_message(struct sip *s, struct leg *leg, nua_handle_t *nh, const sip_t *sip);
void hook_info(struct sip *s, struct leg *leg, const sip_t *sip);
void hook_bound_event(struct sip *s, nua_event_t ev, int status, const char *phrase,
                      nua_handle_t *nh, struct bound *b, const sip_t *sip, tagi_t tags[]);
void hook_stop(struct sip *s);

/* sdp.c */
sip_payload_t *sdp_to_far(struct call *c, const sip_payload_t *pl);
sip_payload_t *body_for(struct leg *dst, const sip_t *sip);

/* Tags for a body already chosen with body_for(). */
#define BODY_TAGS_PL(sip, pl)                                                                      \
	TAG_IF(pl &&body_ct(sip), SIPTAG_CONTENT_TYPE(body_ct(sip))), TAG_IF(pl, SIPTAG_PAYLOAD(pl))

/* route.c */
int route_from_upstream(struct sip *s, msg_t *req);
int route_is_self(struct sip *s, const url_t *url);

/* invite.c */
sip_addr_t *invite_addr_untagged(su_home_t *home, const sip_addr_t *a);
void invite_note_near_sdp(struct leg *from, const sip_t *sip);
void invite_new(struct sip *s, nua_handle_t *nh, const sip_t *sip);
void invite_bridge(struct sip *s, nua_handle_t *nh, const sip_t *sip, int from_up,
                   const url_t *target, int via_upstream);
void invite_again(struct leg *leg, const sip_t *sip);
void invite_response(struct leg *leg, int status, const char *phrase, const sip_t *sip);
void invite_ack(struct leg *leg, const sip_t *sip);
void invite_cancel(struct leg *leg);
void invite_bye(struct leg *leg);

/* message.c: MESSAGE, INFO and UPDATE, in dialog and out of it */
void message_request(struct sip *s, nua_event_t ev, nua_handle_t *nh, struct bound *b,
                     const sip_t *sip);
void message_response(struct sip *s, nua_event_t ev, struct bound *b, int status,
                      const char *phrase, const sip_t *sip);
struct txn *txn_new(struct sip *s, nua_handle_t *nh);
void txn_free(struct txn *t);

/* register.c */
int register_init(struct sip *s);
void register_request(struct sip *s, nua_handle_t *nh, const sip_t *sip);

static inline sip_content_type_t *body_ct(const sip_t *sip)
{
	return sip && sip->sip_payload ? sip->sip_content_type : NULL;
}

static inline sip_payload_t *body_pl(const sip_t *sip)
{
	return sip ? sip->sip_payload : NULL;
}

/* Tags that copy a message's body, if it has one. */
#define BODY_TAGS(sip)                                                                             \
	TAG_IF(body_ct(sip), SIPTAG_CONTENT_TYPE(body_ct(sip))),                                   \
	    TAG_IF(body_pl(sip), SIPTAG_PAYLOAD(body_pl(sip)))

#endif
